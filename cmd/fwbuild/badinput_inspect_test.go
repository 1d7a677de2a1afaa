package main

// Bad inputs to `fwbuild inspect`: what cannot be inspected fails at once
// with an error naming the file; what is damaged is listed with a warning
// on its node and on stderr, never as if it were whole.

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fwbuild/fwbuild/hvcore/pe/pesynth"
	"github.com/fwbuild/fwbuild/image"
	"github.com/fwbuild/fwbuild/internal/testdeps"
)

func TestInspectBadInputs(t *testing.T) {
	dir := t.TempDir()
	huge := filepath.Join(dir, "huge.bin")
	if err := os.WriteFile(huge, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(huge, 4<<30); err != nil { // sparse: no disk space
		t.Fatal(err)
	}
	for _, c := range []struct {
		file, want string
	}{
		{"/dev/zero", "fwbuild inspect: image: inspect /dev/zero: a device, not a regular file"},
		{dir, "is a directory"},
		{huge, "fwbuild inspect: image: inspect " + huge + ": 4294967296 bytes, more than the 256 MiB inspect reads"},
	} {
		if code, out, errs := runCLI(t, "inspect", c.file); code != 1 || out != "" || !strings.Contains(errs, c.want) {
			t.Errorf("inspect %s: exit %d, want 1, stderr lacks %q\n%s%s", c.file, code, c.want, out, errs)
		}
	}
}

// A PE payload cut short is listed with its sections as present and
// warnings, in text and in JSON.
func TestInspectTruncatedPayload(t *testing.T) {
	cut := filepath.Join(t.TempDir(), "cut.efi")
	if err := os.WriteFile(cut, pesynth.Image(pesynth.Options{})[:0x900], 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI(t, "inspect", cut)
	wantOut := "  section .data offset 0x800 size 256 (VA 0x10002000, virtual size 0x2000) WARNING: runs past the end of the file: 256 of 512 bytes present\n"
	wantErr := "fwbuild inspect: warning: pe " + cut + " is truncated: 1 of its 2 sections run past the end of the file (copy or download it again)\n" +
		"fwbuild inspect: warning: section .data runs past the end of the file: 256 of 512 bytes present\n"
	if code != 0 || !strings.Contains(out, wantOut) || errs != wantErr {
		t.Errorf("inspect a cut payload: exit %d\n%s%s\nwant stdout with\n%swant stderr\n%s", code, out, errs, wantOut, wantErr)
	}
	code, out, errs = runCLI(t, "--json", "inspect", cut)
	var n image.Node
	if err := json.Unmarshal([]byte(out), &n); code != 0 || err != nil || len(n.Children) != 2 ||
		n.Children[1].Warning != "runs past the end of the file: 256 of 512 bytes present" || errs != wantErr {
		t.Errorf("--json inspect a cut payload: exit %d, %v: %s\n%s", code, err, out, errs)
	}
}

// An FFS1 volume (older AMI and Insyde images) is named as a format whose
// files are not listed, not shown as an empty volume.
func TestInspectFFS1(t *testing.T) {
	code, err := os.ReadFile(testdeps.File(t, "ovmf", "code"))
	if err != nil {
		t.Fatal(err)
	}
	// FVMAIN_COMPACT, at 0, rewritten to file system GUID FFS1.
	ffs1 := []byte{0xD9, 0x54, 0x93, 0x7A, 0x68, 0x04, 0x4A, 0x44, 0x81, 0xCE, 0x0B, 0xF6, 0x17, 0xD8, 0x90, 0xDF}
	copy(code[0x10:], ffs1)
	hl := int(binary.LittleEndian.Uint16(code[0x30:]))
	binary.LittleEndian.PutUint16(code[0x32:], 0)
	var sum uint16
	for i := 0; i < hl; i += 2 {
		sum += binary.LittleEndian.Uint16(code[i:])
	}
	binary.LittleEndian.PutUint16(code[0x32:], -sum)
	p := filepath.Join(t.TempDir(), "ffs1.fd")
	if err := os.WriteFile(p, code, 0o644); err != nil {
		t.Fatal(err)
	}
	exit, out, errs := runCLI(t, "inspect", p)
	want := "\n  fv 48DB5E17-707C-472D-91CD-1613E7EF51B0 [FFS1] offset 0x0 size 3440640 " +
		"(unsupported volume format FFS1 (7A9354D9-0468-444A-81CE-0BF617D890DF): its files are not listed)\n"
	if exit != 0 || !strings.Contains(out, want) || strings.Contains(out, "Shell") {
		t.Errorf("inspect an FFS1 image: exit %d, output lacks %q\n%s%s", exit, want, out, errs)
	}
}
