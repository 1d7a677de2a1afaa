package pe_test

import (
	"bytes"
	"debug/pe"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"

	pew "github.com/fwbuild/fwbuild/hvcore/pe"
	"github.com/fwbuild/fwbuild/hvcore/pe/pesynth"
	"github.com/fwbuild/fwbuild/internal/testdeps"
)

func xenEFI(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(testdeps.File(t, "xen", "efi"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// refChecksum is an independent formulation of the PE checksum: a plain
// 32-bit sum of the 16-bit words (checksum field skipped), folded at the end.
func refChecksum(b []byte) uint32 {
	off := int(binary.LittleEndian.Uint32(b[0x3c:])) + 4 + 20 + 64
	var sum uint64
	for i := 0; i < len(b); i += 2 {
		if i == off || i == off+2 {
			continue
		}
		w := uint64(b[i])
		if i+1 < len(b) {
			w |= uint64(b[i+1]) << 8
		}
		sum += w
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return uint32(sum) + uint32(len(b))
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed ^ byte(i*31+i>>8)
	}
	return b
}

func alignUp(v, a uint64) uint64 { return (v + a - 1) &^ (a - 1) }

type optHdr struct {
	sectionAlign, fileAlign, sizeOfImage, sizeOfHeaders, checksum uint32
	dirs                                                          []pe.DataDirectory
}

func opt(t *testing.T, f *pe.File) optHdr {
	switch o := f.OptionalHeader.(type) {
	case *pe.OptionalHeader64:
		return optHdr{o.SectionAlignment, o.FileAlignment, o.SizeOfImage, o.SizeOfHeaders, o.CheckSum, o.DataDirectory[:o.NumberOfRvaAndSizes]}
	case *pe.OptionalHeader32:
		return optHdr{o.SectionAlignment, o.FileAlignment, o.SizeOfImage, o.SizeOfHeaders, o.CheckSum, o.DataDirectory[:o.NumberOfRvaAndSizes]}
	}
	t.Fatalf("no optional header")
	return optHdr{}
}

// verify checks out (orig plus secs) with debug/pe, independently of the
// writer's own parsing.
func verify(t *testing.T, orig, out []byte, align uint32, secs []pew.Section) *pe.File {
	t.Helper()
	of, err := pe.NewFile(bytes.NewReader(orig))
	if err != nil {
		t.Fatal(err)
	}
	f, err := pe.NewFile(bytes.NewReader(out))
	if err != nil {
		t.Fatalf("output does not parse with debug/pe: %v", err)
	}
	oh, h := opt(t, of), opt(t, f)
	if align == 0 {
		align = oh.sectionAlign
	}
	if got, want := len(f.Sections), len(of.Sections)+len(secs); got != want {
		t.Fatalf("%d sections, want %d", got, want)
	}
	if h.sectionAlign != oh.sectionAlign || h.fileAlign != oh.fileAlign {
		t.Errorf("alignment changed: %+v -> %+v", oh, h)
	}
	if !equalDirs(oh.dirs, h.dirs) {
		t.Errorf("data directories changed: %v -> %v", oh.dirs, h.dirs)
	}

	// Existing sections: same addresses and flags, same bytes, except the
	// debug directory's file pointers, which must follow their data.
	dbg := pe.DataDirectory{}
	if len(oh.dirs) > 6 {
		dbg = oh.dirs[6]
	}
	for i, os := range of.Sections {
		s := f.Sections[i]
		if s.Name != os.Name || s.VirtualAddress != os.VirtualAddress || s.VirtualSize != os.VirtualSize ||
			s.Size != os.Size || s.Characteristics != os.Characteristics {
			t.Errorf("section %d changed: %+v -> %+v", i, os.SectionHeader, s.SectionHeader)
		}
		od, _ := os.Data()
		d, _ := s.Data()
		d = bytes.Clone(d)
		if dbg.Size > 0 && dbg.VirtualAddress >= os.VirtualAddress && dbg.VirtualAddress < os.VirtualAddress+min(os.VirtualSize, os.Size) {
			for e := uint32(0); e+28 <= dbg.Size; e += 28 {
				at := dbg.VirtualAddress - os.VirtualAddress + e + 24
				optr := binary.LittleEndian.Uint32(od[at:])
				nptr := binary.LittleEndian.Uint32(d[at:])
				size := binary.LittleEndian.Uint32(od[at-8:])
				if optr != 0 && !bytes.Equal(orig[optr:optr+size], out[nptr:nptr+size]) {
					t.Errorf("debug directory entry %d points at other bytes after the move", e/28)
				}
				copy(d[at:at+4], od[at:at+4])
			}
		}
		if !bytes.Equal(od, d) {
			t.Errorf("section %s: contents changed", os.Name)
		}
	}

	// New sections: aligned, above everything before, padded data.
	var end uint64
	for _, s := range of.Sections {
		end = max(end, uint64(s.VirtualAddress)+uint64(max(s.VirtualSize, s.Size)))
	}
	for i, want := range secs {
		s := f.Sections[len(of.Sections)+i]
		if s.Name != want.Name || int(s.VirtualSize) != len(want.Data) {
			t.Errorf("new section %d: %s size 0x%x, want %s 0x%x", i, s.Name, s.VirtualSize, want.Name, len(want.Data))
		}
		if want.VirtualAddress == 0 && s.VirtualAddress%align != 0 {
			t.Errorf("%s at 0x%x not aligned to 0x%x", s.Name, s.VirtualAddress, align)
		}
		if uint64(s.VirtualAddress) < end {
			t.Errorf("%s at 0x%x overlaps what ends at 0x%x", s.Name, s.VirtualAddress, end)
		}
		end = uint64(s.VirtualAddress) + uint64(s.VirtualSize)
		if s.Offset%h.fileAlign != 0 || s.Size%h.fileAlign != 0 || uint64(s.Size) != alignUp(uint64(len(want.Data)), uint64(h.fileAlign)) {
			t.Errorf("%s raw data 0x%x+0x%x not file-aligned (0x%x)", s.Name, s.Offset, s.Size, h.fileAlign)
		}
		d, _ := s.Data()
		if !bytes.Equal(d[:len(want.Data)], want.Data) || bytes.ContainsFunc(d[len(want.Data):], func(r rune) bool { return r != 0 }) {
			t.Errorf("%s: data differs from input (or padding is not zero)", s.Name)
		}
	}
	if want := alignUp(end, uint64(h.sectionAlign)); uint64(h.sizeOfImage) != want {
		t.Errorf("SizeOfImage 0x%x, want 0x%x", h.sizeOfImage, want)
	}

	// Headers and raw data: the table fits, nothing overlaps in the file.
	peOff := int(binary.LittleEndian.Uint32(out[0x3c:]))
	tableEnd := peOff + 24 + int(f.SizeOfOptionalHeader) + 40*len(f.Sections)
	if uint32(tableEnd) > h.sizeOfHeaders || h.sizeOfHeaders%h.fileAlign != 0 {
		t.Errorf("SizeOfHeaders 0x%x: section table ends at 0x%x, FileAlignment 0x%x", h.sizeOfHeaders, tableEnd, h.fileAlign)
	}
	type span struct {
		name       string
		start, end uint32
	}
	spans := []span{{"headers", 0, h.sizeOfHeaders}}
	for _, s := range f.Sections {
		if s.Size > 0 {
			spans = append(spans, span{s.Name, s.Offset, s.Offset + s.Size})
		}
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].start < spans[j].start })
	for i := 1; i < len(spans); i++ {
		if spans[i].start < spans[i-1].end {
			t.Errorf("file ranges of %s and %s overlap", spans[i-1].name, spans[i].name)
		}
	}
	if last := spans[len(spans)-1]; int(last.end) != len(out) {
		t.Errorf("file is 0x%x bytes, last raw data (%s) ends at 0x%x", len(out), last.name, last.end)
	}

	// The COFF symbol table (Xen keeps one) moves with the data, unchanged.
	if of.PointerToSymbolTable != 0 {
		n := len(orig) - int(of.PointerToSymbolTable)
		if int(f.PointerToSymbolTable)+n > len(out) || !bytes.Equal(orig[of.PointerToSymbolTable:], out[f.PointerToSymbolTable:int(f.PointerToSymbolTable)+n]) {
			t.Errorf("COFF symbol table not preserved at 0x%x", f.PointerToSymbolTable)
		}
		if len(f.Symbols) != len(of.Symbols) {
			t.Errorf("%d symbols, want %d", len(f.Symbols), len(of.Symbols))
		}
	}
	if got, want := h.checksum, refChecksum(out); got != want {
		t.Errorf("CheckSum 0x%x, want 0x%x", got, want)
	}
	return f
}

func equalDirs(a, b []pe.DataDirectory) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestChecksumMatchesLinker(t *testing.T) {
	xen := xenEFI(t)
	f, err := pe.NewFile(bytes.NewReader(xen))
	if err != nil {
		t.Fatal(err)
	}
	stored := f.OptionalHeader.(*pe.OptionalHeader64).CheckSum
	if stored == 0 {
		t.Fatal("Debian's xen.efi has no checksum to compare with")
	}
	if got := pew.Checksum(xen); got != stored {
		t.Errorf("Checksum = 0x%x, the linker wrote 0x%x", got, stored)
	}
	// Odd lengths and carries: compare with the reference formulation.
	for _, n := range []int{0x100, 0x101, 0x1001} {
		b := pattern(n, 0xff)
		binary.LittleEndian.PutUint32(b[0x3c:], 0x40)
		if got, want := pew.Checksum(b), refChecksum(b); got != want {
			t.Errorf("%d bytes: Checksum 0x%x, reference 0x%x", n, got, want)
		}
	}
}

func TestAddSectionsXen(t *testing.T) {
	xen := xenEFI(t)
	orig := bytes.Clone(xen)
	secs := []pew.Section{
		{Name: ".config", Data: []byte("[global]\ndefault=xen\n")},
		{Name: ".kernel", Data: pattern(3<<20+17, 1)},
		{Name: ".ramdisk", Data: pattern(1<<20, 2)},
		{Name: ".ucode", Data: pattern(33, 3)},
		{Name: ".xsm", Data: pattern(5, 4)},
	}
	out, err := pew.AddSections(xen, 2<<20, secs...)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(xen, orig) {
		t.Fatal("AddSections modified its input")
	}
	f := verify(t, orig, out, 2<<20, secs)
	pad := f.Section(".pad")
	if pad == nil {
		t.Fatal("Debian's xen.efi has no .pad section")
	}
	if first := f.Section(".config"); first.VirtualAddress < pad.VirtualAddress+pad.VirtualSize {
		t.Errorf(".config at 0x%x is below the end of .pad (0x%x)", first.VirtualAddress, pad.VirtualAddress+pad.VirtualSize)
	}
	objdumpCheck(t, out, f)

	again, err := pew.AddSections(orig, 2<<20, secs...)
	if err != nil || !bytes.Equal(out, again) {
		t.Errorf("second run differs (err %v)", err)
	}
}

// objdumpCheck asks binutils, a third PE reader, for the section table.
func objdumpCheck(t *testing.T, img []byte, f *pe.File) {
	t.Helper()
	if _, err := exec.LookPath("objdump"); err != nil {
		t.Fatal("objdump not found: apt-get install binutils")
	}
	p := t.TempDir() + "/img.efi"
	if err := os.WriteFile(p, img, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("objdump", "-h", p).CombinedOutput()
	if err != nil {
		t.Fatalf("objdump -h: %v\n%s", err, out)
	}
	base := f.OptionalHeader.(*pe.OptionalHeader64).ImageBase
	seen := map[string]uint64{}
	for _, line := range strings.Split(string(out), "\n") {
		fs := strings.Fields(line)
		if len(fs) >= 4 && strings.HasPrefix(fs[1], ".") {
			vma, err := strconv.ParseUint(fs[3], 16, 64)
			if err == nil {
				seen[fs[1]] = vma
			}
		}
	}
	for _, s := range f.Sections {
		if vma, ok := seen[s.Name]; !ok || vma != base+uint64(s.VirtualAddress) {
			t.Errorf("objdump -h: %s at 0x%x (listed %v), want 0x%x", s.Name, vma, ok, base+uint64(s.VirtualAddress))
		}
	}
}

func TestAddSectionsSynthetic(t *testing.T) {
	data := []pew.Section{{Name: ".a", Data: pattern(0x1234, 9)}, {Name: ".bb", Data: pattern(7, 8)}}
	cases := []struct {
		name  string
		img   []byte
		moved bool // header had to grow
	}{
		{"room in headers", pesynth.Image(pesynth.Options{}), false},
		{"PE32", pesynth.Image(pesynth.Options{PE32: true}), false},
		{"no header room", pesynth.Image(pesynth.Options{SizeOfHeaders: 0x200, FileAlign: 0x20, Sections: []pesynth.Sec{
			{Name: ".t1", Size: 0x40, Fill: 1}, {Name: ".t2", Size: 0x40}, {Name: ".bss", VSize: 0x100},
		}}), true},
		{"trailing data", pesynth.Image(pesynth.Options{SizeOfHeaders: 0x200, FileAlign: 0x20, Trailer: pattern(999, 5), Sections: []pesynth.Sec{
			{Name: ".t1", Size: 0x40, Fill: 1}, {Name: ".t2", Size: 0x40}, {Name: ".t3", Size: 0x40},
		}}), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := pew.AddSections(c.img, 0, data...)
			if err != nil {
				t.Fatal(err)
			}
			verify(t, c.img, out, 0, data)
			hdrs := binary.LittleEndian.Uint32(c.img[0x80+24+60:])
			unmoved := bytes.Equal(out[hdrs:len(c.img)], c.img[hdrs:])
			if unmoved == c.moved {
				t.Errorf("raw data moved = %v, want %v", !unmoved, c.moved)
			}
		})
	}
}

func TestAddSectionsExplicitAddress(t *testing.T) {
	img := pesynth.Image(pesynth.Options{}) // .text at 0x1000, .data 0x2000..0x4000
	secs := []pew.Section{{Name: ".x", Data: pattern(10, 1), VirtualAddress: 0x10000}, {Name: ".y", Data: pattern(10, 2)}}
	out, err := pew.AddSections(img, 0x4000, secs...)
	if err != nil {
		t.Fatal(err)
	}
	f := verify(t, img, out, 0x4000, secs)
	if x, y := f.Section(".x"), f.Section(".y"); x.VirtualAddress != 0x10000 || y.VirtualAddress != 0x14000 {
		t.Errorf(".x at 0x%x, .y at 0x%x; want 0x10000 and 0x14000", x.VirtualAddress, y.VirtualAddress)
	}
}

func TestAddSectionsErrors(t *testing.T) {
	good := pesynth.Image(pesynth.Options{})
	one := []pew.Section{{Name: ".k", Data: []byte{1}}}
	cases := []struct {
		name string
		img  []byte
		secs []pew.Section
		want string
	}{
		{"empty file", nil, one, "not a PE image"},
		{"ELF", append([]byte("\x7fELF"), make([]byte, 100)...), one, "not a PE image"},
		{"MZ only", append([]byte("MZ"), make([]byte, 0x80)...), one, "not a PE image"},
		{"truncated", good[:0x100], one, "optional header"},
		{"signed", pesynth.Image(pesynth.Options{Certificate: true}), one, "signed"},
		{"overlap", good, []pew.Section{{Name: ".k", Data: []byte{1}, VirtualAddress: 0x2000}}, "overlap .data"},
		{"overlap new", good, []pew.Section{{Name: ".k", Data: make([]byte, 0x2000), VirtualAddress: 0x8000}, {Name: ".r", Data: []byte{1}, VirtualAddress: 0x9000}}, "overlap .k"},
		{"misaligned", good, []pew.Section{{Name: ".k", Data: []byte{1}, VirtualAddress: 0x10010}}, "not aligned"},
		{"long name", good, []pew.Section{{Name: ".ramdisk1", Data: []byte{1}}}, "1 to 8 bytes"},
		{"duplicate", good, []pew.Section{{Name: ".data", Data: []byte{1}}}, "already has a section .data"},
		{"empty section", good, []pew.Section{{Name: ".k"}}, ".k is empty"},
		{"bad align", good, []pew.Section{{Name: ".k", Data: []byte{1}}}, "alignment"},
		{"slack in use", pesynth.Image(pesynth.Options{SlackByte: 0xaa}), one, "in use"},
		{"no room before first section", pesynth.Image(pesynth.Options{SizeOfHeaders: 0x200, FileAlign: 0x200, SectionAlign: 0x200, Sections: []pesynth.Sec{
			{Name: ".t1", Size: 0x40}, {Name: ".t2", Size: 0x40}, {Name: ".t3", Size: 0x40},
		}}), one, "no room"},
		{"beyond 4 GiB", good, []pew.Section{{Name: ".k", Data: make([]byte, 0x10000), VirtualAddress: 0xffff0000}, {Name: ".l", Data: []byte{1}}}, "address space"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			align := uint32(0)
			if c.name == "bad align" {
				align = 0x1800
			}
			_, err := pew.AddSections(c.img, align, c.secs...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want one containing %q", err, c.want)
			}
			if strings.HasPrefix(c.want, "not a PE") && !errors.Is(err, pew.ErrNotPE) {
				t.Errorf("error does not wrap ErrNotPE: %v", err)
			}
		})
	}
}

func FuzzAddSections(f *testing.F) {
	f.Add(pesynth.Image(pesynth.Options{}))
	f.Add(pesynth.Image(pesynth.Options{PE32: true, SizeOfHeaders: 0x200, FileAlign: 0x20}))
	f.Add(pesynth.Image(pesynth.Options{Trailer: []byte("trailer")}))
	f.Fuzz(func(t *testing.T, img []byte) {
		secs := []pew.Section{{Name: ".config", Data: []byte("x")}, {Name: ".kernel", Data: pattern(100, 1)}}
		out, err := pew.AddSections(img, 0, secs...)
		if err != nil {
			return
		}
		if pew.Checksum(out) != binary.LittleEndian.Uint32(out[int(binary.LittleEndian.Uint32(out[0x3c:]))+24+64:]) {
			t.Error("checksum field is not the image checksum")
		}
	})
}

// TestRead checks the header reader against debug/pe, on Xen's loader and
// on synthetic PE32 and PE32+ images.
func TestRead(t *testing.T) {
	imgs := map[string][]byte{
		"xen.efi": xenEFI(t),
		"PE32+":   pesynth.Image(pesynth.Options{}),
		"PE32":    pesynth.Image(pesynth.Options{PE32: true, Sections: []pesynth.Sec{{Name: ".text", Size: 0x100}, {Name: ".bss", VSize: 0x800}}}),
	}
	for name, img := range imgs {
		t.Run(name, func(t *testing.T) {
			got, err := pew.Read(img)
			if err != nil {
				t.Fatal(err)
			}
			ref, err := pe.NewFile(bytes.NewReader(img))
			if err != nil {
				t.Fatal(err)
			}
			var base uint64
			var size, entry uint32
			switch o := ref.OptionalHeader.(type) {
			case *pe.OptionalHeader64:
				base, size, entry = o.ImageBase, o.SizeOfImage, o.AddressOfEntryPoint
			case *pe.OptionalHeader32:
				base, size, entry = uint64(o.ImageBase), o.SizeOfImage, o.AddressOfEntryPoint
			}
			if got.ImageBase != base || got.SizeOfImage != size || got.AddressOfEntryPoint != entry {
				t.Errorf("base %#x size %#x entry %#x, debug/pe says %#x %#x %#x",
					got.ImageBase, got.SizeOfImage, got.AddressOfEntryPoint, base, size, entry)
			}
			if len(got.Sections) != len(ref.Sections) {
				t.Fatalf("%d sections, debug/pe finds %d", len(got.Sections), len(ref.Sections))
			}
			for i, s := range ref.Sections {
				want := pew.SectionHeader{Name: s.Name, VirtualAddress: s.VirtualAddress, VirtualSize: s.VirtualSize, Offset: s.Offset, Size: s.Size, Present: s.Size}
				if got.Sections[i] != want {
					t.Errorf("section %d: %+v, want %+v", i, got.Sections[i], want)
				}
			}
		})
	}
	// What AddSections refuses can still be read: headers that claim no
	// room for the section table.
	bad := pesynth.Image(pesynth.Options{})
	binary.LittleEndian.PutUint32(bad[0x80+4+20+60:], 0) // SizeOfHeaders
	if _, err := pew.AddSections(bad, 0, pew.Section{Name: ".k", Data: []byte{1}}); err == nil {
		t.Error("AddSections accepted SizeOfHeaders 0")
	}
	if f, err := pew.Read(bad); err != nil || len(f.Sections) != 2 {
		t.Errorf("Read of a malformed but complete image: %+v, %v", f, err)
	}
	if _, err := pew.Read(pesynth.Image(pesynth.Options{})[:0x100]); err == nil || !errors.Is(err, pew.ErrNotPE) {
		t.Errorf("truncated image: %v", err)
	}
}

func FuzzRead(f *testing.F) {
	f.Add(pesynth.Image(pesynth.Options{}))
	f.Add(pesynth.Image(pesynth.Options{PE32: true, SizeOfHeaders: 0x200, FileAlign: 0x20}))
	f.Fuzz(func(t *testing.T, img []byte) {
		got, err := pew.Read(img)
		if err != nil {
			return
		}
		// No section claims bytes beyond the input.
		for _, s := range got.Sections {
			if s.Present > s.Size || s.Present > 0 && uint64(s.Offset)+uint64(s.Present) > uint64(len(img)) {
				t.Fatalf("section %+v: %d bytes present past the end of the %d-byte image", s, s.Present, len(img))
			}
		}
		// Whatever Read accepts, debug/pe parses with the same sections.
		if ref, err := pe.NewFile(bytes.NewReader(img)); err == nil && len(ref.Sections) != len(got.Sections) {
			t.Errorf("%d sections, debug/pe finds %d", len(got.Sections), len(ref.Sections))
		}
	})
}

// A PE image cut short keeps its section table, and Read says how much of
// each section's raw data is left rather than pointing past the end.
func TestReadTruncated(t *testing.T) {
	img := pesynth.Image(pesynth.Options{}) // .text 0x400+0x400, .data 0x800+0x200
	for _, c := range []struct {
		cut           int
		text, dataLen uint32
	}{
		{len(img), 0x400, 0x200},
		{0x900, 0x400, 0x100},
		{0x600, 0x200, 0},
		{0x400, 0, 0},
	} {
		f, err := pew.Read(img[:c.cut])
		if err != nil {
			t.Fatalf("cut at %#x: %v", c.cut, err)
		}
		if len(f.Sections) != 2 || f.Sections[0].Size != 0x400 || f.Sections[1].Size != 0x200 ||
			f.Sections[0].Present != c.text || f.Sections[1].Present != c.dataLen {
			t.Errorf("cut at %#x: %+v, want %#x and %#x bytes present", c.cut, f.Sections, c.text, c.dataLen)
		}
	}
}
