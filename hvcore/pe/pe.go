// Package pe appends sections to an existing PE/COFF image (such as Xen's
// EFI loader) without disturbing what is already there, and reads the
// section table back for inspection. debug/pe can read such files but
// nothing in the standard library writes them, and shelling out to objcopy
// would make the result depend on the host's binutils.
package pe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
)

// Section is a section to append.
type Section struct {
	// Name is at most 8 bytes; longer names would need the COFF string
	// table, which image loaders (and Xen's section lookup) do not read.
	Name string
	// Data is the section's content. It is padded with zeros to the file
	// alignment in the file; VirtualSize is len(Data).
	Data []byte
	// VirtualAddress is the RVA to load the section at. Zero places it after
	// the previous section, rounded up to the alignment given to
	// AddSections. A non-zero value must be aligned and above every
	// section before it.
	VirtualAddress uint32
	// Characteristics defaults to initialized, readable data.
	Characteristics uint32
}

// Section characteristics used by default for appended sections.
const (
	ScnCntInitializedData = 0x00000040
	ScnMemRead            = 0x40000000
)

const (
	sectionHeaderSize = 40
	coffHeaderSize    = 20
	dirSecurity       = 4
	dirDebug          = 6
	debugEntrySize    = 28
)

// ErrNotPE is wrapped by errors for input that is not a PE image at all.
var ErrNotPE = errors.New("not a PE image")

// image holds the offsets of the fields AddSections reads or patches.
type image struct {
	b          []byte
	coff       int // offset of the COFF file header
	opt        int // offset of the optional header
	optSize    int
	pe32plus   bool
	secTable   int // offset of the section table
	nsec       int
	sizeOfHdrs uint32
	secAlign   uint32
	fileAlign  uint32
	dirs       int // offset of the data directories
	ndirs      int
	sections   []header
}

type header struct {
	name                      string
	virtualSize, virtualAddr  uint32
	sizeOfRaw, pointerToRaw   uint32
	pointerToRelocs, ptrLines uint32
}

func le16(b []byte, off int) uint16 { return binary.LittleEndian.Uint16(b[off:]) }
func le32(b []byte, off int) uint32 { return binary.LittleEndian.Uint32(b[off:]) }
func put32(b []byte, off int, v uint32) {
	binary.LittleEndian.PutUint32(b[off:], v)
}

// readHeaders locates the headers and reads the section table, checking
// only that what it reads lies inside b.
func readHeaders(b []byte) (*image, error) {
	if len(b) < 0x40 || b[0] != 'M' || b[1] != 'Z' {
		return nil, fmt.Errorf("%w: no MZ header", ErrNotPE)
	}
	peOff := int(le32(b, 0x3c))
	if peOff < 0x40 || peOff > len(b)-4-coffHeaderSize || string(b[peOff:peOff+4]) != "PE\x00\x00" {
		return nil, fmt.Errorf("%w: no PE signature at the offset in the MZ header (0x%x)", ErrNotPE, peOff)
	}
	im := &image{b: b, coff: peOff + 4}
	im.opt = im.coff + coffHeaderSize
	im.nsec = int(le16(b, im.coff+2))
	im.optSize = int(le16(b, im.coff+16))
	var dirCountOff int
	switch {
	case im.optSize < 2 || im.opt+im.optSize > len(b):
		return nil, fmt.Errorf("%w: optional header (%d bytes) missing or truncated", ErrNotPE, im.optSize)
	case le16(b, im.opt) == 0x10b: // PE32
		dirCountOff = 92
	case le16(b, im.opt) == 0x20b: // PE32+
		im.pe32plus = true
		dirCountOff = 108
	default:
		return nil, fmt.Errorf("%w: unknown optional header magic 0x%x", ErrNotPE, le16(b, im.opt))
	}
	if im.optSize < dirCountOff+4 {
		return nil, fmt.Errorf("%w: optional header too short (%d bytes)", ErrNotPE, im.optSize)
	}
	im.secAlign = le32(b, im.opt+32)
	im.fileAlign = le32(b, im.opt+36)
	im.sizeOfHdrs = le32(b, im.opt+60)
	im.ndirs = int(le32(b, im.opt+dirCountOff))
	im.dirs = im.opt + dirCountOff + 4
	im.secTable = im.opt + im.optSize
	if tableEnd := im.secTable + im.nsec*sectionHeaderSize; tableEnd > len(b) {
		return nil, fmt.Errorf("pe: section table (%d sections, ends at 0x%x) exceeds the headers (0x%x) or the file (0x%x)",
			im.nsec, tableEnd, im.sizeOfHdrs, len(b))
	}
	for i := 0; i < im.nsec; i++ {
		o := im.secTable + i*sectionHeaderSize
		im.sections = append(im.sections, header{
			name:            cstr(b[o : o+8]),
			virtualSize:     le32(b, o+8),
			virtualAddr:     le32(b, o+12),
			sizeOfRaw:       le32(b, o+16),
			pointerToRaw:    le32(b, o+20),
			pointerToRelocs: le32(b, o+24),
			ptrLines:        le32(b, o+28),
		})
	}
	return im, nil
}

// parse reads the headers and checks everything AddSections relies on.
func parse(b []byte) (*image, error) {
	im, err := readHeaders(b)
	if err != nil {
		return nil, err
	}
	if im.ndirs > (im.optSize-(im.dirs-im.opt))/8 {
		return nil, fmt.Errorf("pe: %d data directories do not fit in the optional header", im.ndirs)
	}
	// The PE spec caps FileAlignment at 64 KiB; larger values would only
	// make the output huge.
	if !pow2(im.fileAlign) || im.fileAlign > 0x10000 || !pow2(im.secAlign) || im.secAlign < im.fileAlign {
		return nil, fmt.Errorf("pe: bad alignment: SectionAlignment 0x%x, FileAlignment 0x%x", im.secAlign, im.fileAlign)
	}
	if tableEnd := im.secTable + im.nsec*sectionHeaderSize; uint64(tableEnd) > uint64(im.sizeOfHdrs) {
		return nil, fmt.Errorf("pe: section table (%d sections, ends at 0x%x) exceeds the headers (0x%x) or the file (0x%x)",
			im.nsec, tableEnd, im.sizeOfHdrs, len(b))
	}
	if uint64(im.sizeOfHdrs) > uint64(len(b)) {
		return nil, fmt.Errorf("pe: SizeOfHeaders 0x%x beyond the end of the file (0x%x)", im.sizeOfHdrs, len(b))
	}
	for _, h := range im.sections {
		if h.sizeOfRaw > 0 {
			if h.pointerToRaw < im.sizeOfHdrs || uint64(h.pointerToRaw)+uint64(h.sizeOfRaw) > uint64(len(b)) {
				return nil, fmt.Errorf("pe: section %q raw data 0x%x+0x%x lies outside 0x%x..0x%x",
					h.name, h.pointerToRaw, h.sizeOfRaw, im.sizeOfHdrs, len(b))
			}
		}
		if h.virtualAddr < im.sizeOfHdrs {
			return nil, fmt.Errorf("pe: section %q at RVA 0x%x overlaps the headers (0x%x bytes)", h.name, h.virtualAddr, im.sizeOfHdrs)
		}
	}
	return im, nil
}

// File is what Read finds in the headers of a PE image.
type File struct {
	ImageBase           uint64
	SizeOfImage         uint32
	AddressOfEntryPoint uint32 // an RVA
	Sections            []SectionHeader
}

// SectionHeader is one entry of the section table. Names are the 8-byte
// field as stored: image loaders do not read COFF long names either.
type SectionHeader struct {
	Name           string
	VirtualAddress uint32 // an RVA
	VirtualSize    uint32
	Offset         uint32 // PointerToRawData
	Size           uint32 // SizeOfRawData
	// Present is how much of the raw data lies in the image: Size unless
	// the file ends early (a truncated copy or download), so a reader
	// can say so instead of reading past the end.
	Present uint32
}

// Read parses the headers of a PE image. It checks only that they lie in
// img, not what AddSections (or a loader) needs beyond that, so a payload
// that would be refused can still be examined; a section whose raw data
// runs past the end of img has Present < Size.
func Read(img []byte) (*File, error) {
	im, err := readHeaders(img)
	if err != nil {
		return nil, err
	}
	f := &File{
		SizeOfImage:         le32(img, im.opt+56),
		AddressOfEntryPoint: le32(img, im.opt+16),
	}
	if im.pe32plus {
		f.ImageBase = binary.LittleEndian.Uint64(img[im.opt+24:])
	} else {
		f.ImageBase = uint64(le32(img, im.opt+28))
	}
	for _, h := range im.sections {
		f.Sections = append(f.Sections, SectionHeader{
			Name: h.name, VirtualAddress: h.virtualAddr, VirtualSize: h.virtualSize,
			Offset: h.pointerToRaw, Size: h.sizeOfRaw, Present: present(h, len(img)),
		})
	}
	return f, nil
}

// present is how many bytes of h's raw data lie in a file of n bytes.
func present(h header, n int) uint32 {
	if uint64(h.pointerToRaw) >= uint64(n) {
		return 0
	}
	return uint32(min(uint64(h.sizeOfRaw), uint64(n)-uint64(h.pointerToRaw)))
}

func (im *image) dir(i int) (rva, size uint32) {
	if i >= im.ndirs {
		return 0, 0
	}
	return le32(im.b, im.dirs+8*i), le32(im.b, im.dirs+8*i+4)
}

// fileOffset maps an RVA range to a file offset using the section table.
func (im *image) fileOffset(rva, size uint32) (int, bool) {
	for _, h := range im.sections {
		// Raw data is padded to the file alignment; only the virtual size
		// belongs to the section (the padding may overlap the next one).
		n := min(h.memSize(), h.sizeOfRaw)
		if rva >= h.virtualAddr && uint64(rva)+uint64(size) <= uint64(h.virtualAddr)+uint64(n) {
			return int(h.pointerToRaw + (rva - h.virtualAddr)), true
		}
	}
	return 0, false
}

// memSize is how much address space a section occupies when loaded.
func (h header) memSize() uint32 {
	if h.virtualSize == 0 {
		return h.sizeOfRaw // some linkers leave VirtualSize zero
	}
	return h.virtualSize
}

func pow2(v uint32) bool { return v != 0 && bits.OnesCount32(v) == 1 }

func alignUp(v, a uint64) uint64 { return (v + a - 1) &^ (a - 1) }

func cstr(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// AddSections returns a copy of img with secs appended as new sections.
//
// Existing section contents keep their bytes; they only move in the file
// when the header has no room for the new section headers, and then every
// file pointer (section raw data, COFF symbol table, debug directory
// entries) is shifted with them. New raw data goes at the end of the file,
// after anything already there. align (a multiple of SectionAlignment; 0
// means SectionAlignment) is used for sections placed automatically.
// SizeOfImage, NumberOfSections, SizeOfInitializedData, SizeOfHeaders and
// the checksum are updated. Images with a certificate table are refused:
// appending would invalidate the signature.
func AddSections(img []byte, align uint32, secs ...Section) ([]byte, error) {
	im, err := parse(img)
	if err != nil {
		return nil, err
	}
	if rva, size := im.dir(dirSecurity); rva != 0 || size != 0 {
		return nil, fmt.Errorf("pe: image is signed (certificate table at 0x%x, %d bytes): adding sections would break the signature; use the unsigned image", rva, size)
	}
	if align == 0 {
		align = im.secAlign
	}
	if !pow2(align) || align < im.secAlign {
		return nil, fmt.Errorf("pe: section alignment 0x%x must be a power of two and at least the image's SectionAlignment 0x%x", align, im.secAlign)
	}
	if len(secs) == 0 {
		return nil, errors.New("pe: no sections to add")
	}
	if im.nsec+len(secs) > 96 { // the PE/COFF limit for images
		return nil, fmt.Errorf("pe: %d sections exceed the limit of 96", im.nsec+len(secs))
	}

	names := map[string]bool{}
	var end uint64 // end of the address space used so far
	for _, h := range im.sections {
		names[h.name] = true
		end = max(end, uint64(h.virtualAddr)+uint64(h.memSize()))
	}
	end = max(end, uint64(im.sizeOfHdrs))
	last := "the headers" // what ends at end, for errors
	for _, h := range im.sections {
		if uint64(h.virtualAddr)+uint64(h.memSize()) == end {
			last = h.name
		}
	}
	vas := make([]uint64, len(secs))
	for i, s := range secs {
		if s.Name == "" || len(s.Name) > 8 {
			return nil, fmt.Errorf("pe: section name %q must be 1 to 8 bytes", s.Name)
		}
		if names[s.Name] {
			return nil, fmt.Errorf("pe: image already has a section %s", s.Name)
		}
		names[s.Name] = true
		if len(s.Data) == 0 {
			return nil, fmt.Errorf("pe: section %s is empty", s.Name)
		}
		va := alignUp(end, uint64(align))
		if s.VirtualAddress != 0 {
			va = uint64(s.VirtualAddress)
			if va%uint64(im.secAlign) != 0 {
				return nil, fmt.Errorf("pe: section %s at RVA 0x%x is not aligned to the image's SectionAlignment 0x%x", s.Name, va, im.secAlign)
			}
			if va < end {
				return nil, fmt.Errorf("pe: section %s at RVA 0x%x would overlap %s, which ends at 0x%x", s.Name, va, last, end)
			}
		}
		vas[i] = va
		end = va + uint64(len(s.Data))
		last = s.Name
	}
	sizeOfImage := alignUp(end, uint64(im.secAlign))
	if sizeOfImage > 1<<32-1 {
		return nil, fmt.Errorf("pe: image would need 0x%x bytes of address space, more than a PE can describe", sizeOfImage)
	}

	// Make room for the new section headers if the header area is short.
	// Bytes after the section table inside the headers must be unused:
	// linkers may keep e.g. a bound import table there.
	oldEnd := im.secTable + im.nsec*sectionHeaderSize
	tableEnd := oldEnd + len(secs)*sectionHeaderSize
	if !zero(img[oldEnd:min(tableEnd, int(im.sizeOfHdrs))]) {
		return nil, fmt.Errorf("pe: the header space after the section table (0x%x..0x%x) is in use; cannot add section headers", oldEnd, im.sizeOfHdrs)
	}
	var delta uint32
	if uint64(tableEnd) > uint64(im.sizeOfHdrs) {
		delta = uint32(alignUp(uint64(tableEnd)-uint64(im.sizeOfHdrs), uint64(im.fileAlign)))
	}
	newHdrs := uint64(im.sizeOfHdrs) + uint64(delta)
	for _, h := range im.sections {
		if uint64(h.virtualAddr) < newHdrs {
			return nil, fmt.Errorf("pe: no room for %d more section headers: the headers would grow to 0x%x bytes, past section %s at RVA 0x%x",
				len(secs), newHdrs, h.name, h.virtualAddr)
		}
	}

	out := make([]byte, 0, len(img)+int(delta)+totalRaw(secs, im.fileAlign)+int(im.fileAlign))
	out = append(out, img[:im.sizeOfHdrs]...)
	out = append(out, make([]byte, delta)...)
	out = append(out, img[im.sizeOfHdrs:]...)
	if delta != 0 {
		if err := shift(im, out, delta); err != nil {
			return nil, err
		}
		put32(out, im.opt+60, uint32(newHdrs))
	}

	// Raw data of new sections goes after everything already in the file,
	// which keeps a trailing COFF symbol table where its pointer says.
	out = append(out, make([]byte, alignUp(uint64(len(out)), uint64(im.fileAlign))-uint64(len(out)))...)
	initData := le32(out, im.opt+8)
	for i, s := range secs {
		raw := alignUp(uint64(len(s.Data)), uint64(im.fileAlign))
		if uint64(len(out))+raw > 1<<32-1 {
			return nil, fmt.Errorf("pe: section %s would end beyond 4 GiB in the file", s.Name)
		}
		ch := s.Characteristics
		if ch == 0 {
			ch = ScnCntInitializedData | ScnMemRead
		}
		if ch&ScnCntInitializedData != 0 {
			initData += uint32(raw)
		}
		o := im.secTable + (im.nsec+i)*sectionHeaderSize
		h := out[o : o+sectionHeaderSize]
		clear(h)
		copy(h, s.Name)
		put32(h, 8, uint32(len(s.Data)))
		put32(h, 12, uint32(vas[i]))
		put32(h, 16, uint32(raw))
		put32(h, 20, uint32(len(out)))
		put32(h, 36, ch)
		out = append(out, s.Data...)
		out = append(out, make([]byte, raw-uint64(len(s.Data)))...)
	}
	binary.LittleEndian.PutUint16(out[im.coff+2:], uint16(im.nsec+len(secs)))
	put32(out, im.opt+8, initData)
	put32(out, im.opt+56, uint32(sizeOfImage))
	put32(out, im.opt+64, Checksum(out))
	return out, nil
}

// shift moves every file pointer at or after the old end of the headers by
// delta, after the data itself has been moved in out.
func shift(im *image, out []byte, delta uint32) error {
	bump := func(off int) {
		if v := le32(out, off); v >= im.sizeOfHdrs {
			put32(out, off, v+delta)
		}
	}
	for i := range im.sections {
		o := im.secTable + i*sectionHeaderSize
		for _, f := range []int{20, 24, 28} { // raw data, relocations, line numbers
			bump(o + f)
		}
	}
	bump(im.coff + 8) // PointerToSymbolTable
	// Debug directory entries carry the file offset of their data next to
	// its RVA; objcopy updates them the same way when it moves sections.
	rva, size := im.dir(dirDebug)
	if rva == 0 || size == 0 {
		return nil
	}
	off, ok := im.fileOffset(rva, size)
	switch {
	case ok:
		off += int(delta)
	case uint64(rva)+uint64(size) <= uint64(im.sizeOfHdrs): // in the headers, which map 1:1
		off = int(rva)
	default:
		return fmt.Errorf("pe: debug directory at RVA 0x%x (%d bytes) is not inside any section's file data", rva, size)
	}
	for e := 0; e+debugEntrySize <= int(size); e += debugEntrySize {
		bump(off + e + 24)
	}
	return nil
}

func zero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func totalRaw(secs []Section, fa uint32) int {
	n := 0
	for _, s := range secs {
		n += int(alignUp(uint64(len(s.Data)), uint64(fa)))
	}
	return n
}

// Checksum computes the PE image checksum of img (as written by
// Microsoft's CheckSumMappedFile): a 16-bit one's-complement-style sum of
// the file with the CheckSum field counted as zero, plus the file length.
func Checksum(img []byte) uint32 {
	csumOff := -1
	if len(img) >= 0x40 {
		if pe := int(le32(img, 0x3c)); pe >= 0 && pe+4+coffHeaderSize+68 <= len(img) {
			csumOff = pe + 4 + coffHeaderSize + 64
		}
	}
	var sum uint64
	for i := 0; i+1 < len(img); i += 2 {
		if i == csumOff || i == csumOff+2 {
			continue
		}
		sum += uint64(binary.LittleEndian.Uint16(img[i:]))
		sum = (sum & 0xffff) + (sum >> 16)
	}
	if len(img)%2 == 1 {
		sum += uint64(img[len(img)-1])
		sum = (sum & 0xffff) + (sum >> 16)
	}
	sum = (sum & 0xffff) + (sum >> 16)
	return uint32(sum) + uint32(len(img))
}
