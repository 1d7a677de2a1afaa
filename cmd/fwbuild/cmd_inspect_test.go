package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fwbuild/fwbuild/hvcore/pe/pesynth"
	"github.com/fwbuild/fwbuild/image"
	"github.com/fwbuild/fwbuild/internal/testdeps"
)

// TestInspect checks what `fwbuild inspect` prints for a PE payload and
// a firmware image, as text and as JSON, and how it fails.
func TestInspect(t *testing.T) {
	dir := t.TempDir()
	app := filepath.Join(dir, "app.efi")
	if err := os.WriteFile(app, pesynth.Image(pesynth.Options{}), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI(t, "inspect", app)
	want := "pe " + app + " offset 0x0 size 2560 (image base 0x10000000, size of image 0x4000, entry 0x1000)\n" +
		"  section .text offset 0x400 size 1024 (VA 0x10001000, virtual size 0x300)\n" +
		"  section .data offset 0x800 size 512 (VA 0x10002000, virtual size 0x2000)\n"
	if code != 0 || out != want {
		t.Errorf("inspect app.efi: exit %d\n%s%s\nwant\n%s", code, out, errs, want)
	}
	code, out, errs = runCLI(t, "--json", "inspect", app)
	var n image.Node
	if err := json.Unmarshal([]byte(out), &n); code != 0 || err != nil || n.Kind != "pe" || len(n.Children) != 2 ||
		n.Children[1].Name != ".data" || n.Children[1].Offset != 0x800 {
		t.Errorf("--json inspect app.efi: exit %d, %v: %+v\n%s", code, err, n, errs)
	}

	code, out, errs = runCLI(t, "inspect", testdeps.File(t, "ovmf", "code"))
	for _, line := range []string{
		"image offset 0x0 size 3653632\n",
		"\n  fv 48DB5E17-707C-472D-91CD-1613E7EF51B0 [FFS2] offset 0x0 size 3440640 free ",
		"\n      fv 7CB8BDC9-F8EB-4F34-AAEA-3EE4AF6516A1 [FFS2] offset 0x0 size 12582912 free ",
		" (in LZMA section)\n",
		"\n        file Shell 7C04A583-9E3E-4F1C-AD65-E05268D0B4D1 [EFI_FV_FILETYPE_APPLICATION] offset ",
	} {
		if code != 0 || !strings.Contains(out, line) {
			t.Errorf("inspect OVMF: exit %d, output lacks %q\n%s%s", code, line, out, errs)
			break
		}
	}

	script := filepath.Join(dir, "script")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"inspect"}, 2, "want exactly one FILE"},
		{[]string{"inspect", script}, 1, "fwbuild inspect: image: inspect " + script + ": not a chip or firmware image"},
		{[]string{"inspect", filepath.Join(dir, "none")}, 1, "no such file or directory"},
	} {
		if code, out, errs := runCLI(t, c.args...); code != c.code || !strings.Contains(out+errs, c.want) {
			t.Errorf("fwbuild %v: exit %d, want %d; output lacks %q?\n%s%s", c.args, code, c.code, c.want, out, errs)
		}
	}
}
