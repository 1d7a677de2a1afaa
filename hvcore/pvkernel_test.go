package hvcore

import (
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// A real bzImage (Debian's stock kernel, the pinned linux-image package)
// becomes a gzip'd ELF kernel with its notes and no section table; a second
// run gives the same bytes.
func TestPVKernel(t *testing.T) {
	if _, err := exec.LookPath("xz"); err != nil {
		t.Fatal("xz not found: apt-get install xz-utils (fwbuild doctor --fix)")
	}
	bz := readFile(t, "linux-image", "bzimage")
	out, err := PVKernel(context.Background(), bz)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := PVKernel(context.Background(), bz)
	if !bytes.Equal(out, again) {
		t.Error("two runs differ")
	}
	zr, err := gzip.NewReader(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.NewFile(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Sections) != 0 || f.Type != elf.ET_EXEC || f.Machine != elf.EM_X86_64 {
		t.Errorf("sections %d type %v machine %v", len(f.Sections), f.Type, f.Machine)
	}
	notes := false
	for _, p := range f.Progs {
		notes = notes || p.Type == elf.PT_NOTE
	}
	if !notes {
		t.Error("no PT_NOTE: the domain builder finds Xen's notes there")
	}
	t.Logf("bzImage %d bytes -> ELF %d bytes, gzip'd %d bytes", len(bz), len(raw), len(out))
}

// What PVKernel cannot take apart goes to the domain builder unchanged; a
// damaged xz payload is an error.
func TestPVKernelLeavesOthers(t *testing.T) {
	hdr := func(payload []byte) []byte {
		b := make([]byte, 5*512)
		copy(b[0x202:], "HdrS")
		b[0x206], b[0x207] = 0x0f, 0x02 // protocol 2.15
		b[0x1f1] = 4
		b = append(b, payload...)
		b[0x24c] = byte(len(payload))
		return b
	}
	for _, in := range [][]byte{[]byte("not a kernel"), hdr(nil), hdr([]byte("\x1f\x8b\x08gzip"))} {
		if out, err := PVKernel(context.Background(), in); err != nil || !bytes.Equal(out, in) {
			t.Errorf("PVKernel(%q...) = %d bytes, %v; want it unchanged", in[:min(len(in), 12)], len(out), err)
		}
	}
	if _, err := PVKernel(context.Background(), hdr([]byte("\xfd7zXZ\x00broken"))); err == nil || !strings.Contains(err.Error(), "xz payload") {
		t.Errorf("damaged xz payload: %v", err)
	}
}
