package launcher

import (
	"bytes"
	"context"
	"debug/pe"
	"strings"
	"testing"

	"github.com/fwbuild/fwbuild/internal/testdeps"
)

func testPin() Pin {
	p := Pin{Source: FromRegion, Address: 0xff000000, Size: 4096, Description: "fwbuild test"}
	p.SHA256[0] = 0xab
	return p
}

// The launcher builds from its sources with the pinned gnu-efi into an EFI
// boot service driver, the same bytes every time, its FFS file within
// MaxFFSSize, and the pin inside.
func TestBuild(t *testing.T) {
	root := testdeps.Root(t, "gnu-efi")
	spec := Spec{Pin: testPin(), GnuEFI: root, TempDir: t.TempDir()}
	a, err := Build(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Build(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("two builds of the same launcher differ")
	}
	f, err := pe.NewFile(bytes.NewReader(a))
	if err != nil {
		t.Fatal(err)
	}
	oh, ok := f.OptionalHeader.(*pe.OptionalHeader64)
	if !ok || oh.Subsystem != pe.IMAGE_SUBSYSTEM_EFI_BOOT_SERVICE_DRIVER || f.Machine != pe.IMAGE_FILE_MACHINE_AMD64 {
		t.Errorf("not an x64 EFI boot service driver: machine %#x, optional header %T", f.Machine, f.OptionalHeader)
	}
	ffs, err := FFS(a)
	if err != nil {
		t.Fatal(err)
	}
	if len(ffs) > MaxFFSSize {
		t.Errorf("launcher FFS is %d bytes, more than MaxFFSSize %d: raise it (fwbuild fit reserves it)", len(ffs), MaxFFSSize)
	}
	t.Logf("launcher PE %d bytes, FFS %d", len(a), len(ffs))
	other := spec
	other.Pin.SHA256[0] = 0xcd
	c, err := Build(context.Background(), other)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, c) {
		t.Error("a different pinned hash gives the same launcher")
	}
	if !strings.Contains(string(utf16le("fwbuild test")), "f\x00w") || !bytes.Contains(a, utf16le("fwbuild test")) {
		t.Error("the boot option's description is not in the launcher")
	}
}

func utf16le(s string) []byte {
	var b []byte
	for _, c := range s {
		b = append(b, byte(c), 0)
	}
	return b
}

// FFS files carry valid header checksums and the sections in order.
func TestFFSHeader(t *testing.T) {
	f, err := FFS([]byte("MZ fake pe"))
	if err != nil {
		t.Fatal(err)
	}
	var sum byte
	for i, c := range f[:24] {
		if i != 17 && i != 23 {
			sum += c
		}
	}
	if sum != 0 || f[17] != 0xAA || f[23] != 0xF8 || f[18] != 0x07 {
		t.Errorf("header: sum %#x, file checksum %#x, state %#x, type %#x", sum, f[17], f[23], f[18])
	}
	if size := int(f[20]) | int(f[21])<<8 | int(f[22])<<16; size != len(f) {
		t.Errorf("size field %d, file %d bytes", size, len(f))
	}
	if f[24+3] != 0x13 {
		t.Errorf("first section type %#x, want DXE_DEPEX", f[27])
	}
}

// Pins the build cannot honour are refused before anything is compiled.
func TestPinChecks(t *testing.T) {
	for _, c := range []struct {
		name string
		mod  func(*Pin)
		want string
	}{
		{"above 4 GiB", func(p *Pin) { p.Address = 0xfffff000; p.Size = 0x2000 }, "not below 4 GiB"},
		{"no size", func(p *Pin) { p.Size = 0 }, "size is 0"},
		{"bad description", func(p *Pin) { p.Description = "a\"b\x01" }, "printable ASCII"},
		{"no file", func(p *Pin) { p.Source = FromFile }, "GUID is empty"},
	} {
		p := testPin()
		c.mod(&p)
		if _, err := Build(context.Background(), Spec{Pin: p, GnuEFI: t.TempDir()}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}
