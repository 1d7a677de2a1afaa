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
	// Every segment the kernel was linked with, byte for byte where its
	// header says, at a page-aligned offset; the padding between them gone.
	payload, err := bzPayload(bz)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("xz", "--decompress", "--stdout", "--single-stream")
	cmd.Stdin = bytes.NewReader(payload)
	vmlinux, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	orig, err := elf.NewFile(bytes.NewReader(vmlinux))
	if err != nil {
		t.Fatal(err)
	}
	if len(orig.Progs) != len(f.Progs) {
		t.Fatalf("%d program headers, the kernel has %d", len(f.Progs), len(orig.Progs))
	}
	notes := false
	var segBytes uint64
	for i, want := range orig.Progs {
		got := f.Progs[i]
		if got.Type != want.Type || got.Vaddr != want.Vaddr || got.Paddr != want.Paddr || got.Filesz != want.Filesz || got.Memsz != want.Memsz || got.Flags != want.Flags {
			t.Errorf("segment %d: %+v, the kernel's %+v", i, got.ProgHeader, want.ProgHeader)
			continue
		}
		if got.Type == elf.PT_LOAD && (got.Off%0x1000 != got.Vaddr%0x1000 || got.Align > 0x1000) {
			t.Errorf("segment %d at offset %#x, address %#x, align %#x", i, got.Off, got.Vaddr, got.Align)
		}
		a, _ := io.ReadAll(got.Open())
		b, _ := io.ReadAll(want.Open())
		if !bytes.Equal(a, b) {
			t.Errorf("segment %d (%v at %#x): bytes differ", i, got.Type, got.Vaddr)
		}
		notes = notes || got.Type == elf.PT_NOTE
		if got.Type == elf.PT_LOAD {
			segBytes += got.Filesz
		}
	}
	if !notes {
		t.Error("no PT_NOTE: the domain builder finds Xen's notes there")
	}
	if uint64(len(raw)) > segBytes+uint64(len(f.Progs)+1)*0x1000 {
		t.Errorf("ELF %d bytes for %d bytes of segments: padding left", len(raw), segBytes)
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
