package image

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// eraseBlock is the smallest unit an SPI NOR chip erases. Regions must be
// aligned to it, or writing one region would erase part of its neighbour
// (a preserved region would lose data).
const eraseBlock = 0x1000

// Region is one named range of the flash chip.
type Region struct {
	Name  string
	Start uint64
	Size  uint64
	// Preserve marks data fwbuild never writes (factory data): the image holds
	// 0xFF there and the flasher must skip the region.
	Preserve bool
	// Firmware marks the region that receives the UEFI firmware.
	Firmware bool
	// Fill is optional content placed at the start of a non-firmware region
	// (e.g. an OVMF variable store); the rest of the region is 0xFF.
	Fill []byte
}

// End returns the last byte of the region (inclusive), as flashrom counts.
func (r Region) End() uint64 { return r.Start + r.Size - 1 }

// FlashromLayout renders regions as a flashrom layout file: one
// "start:end name" per line, hex, inclusive, sorted by start.
func FlashromLayout(regions []Region) string {
	rs := append([]Region(nil), regions...)
	sort.SliceStable(rs, func(i, j int) bool { return rs[i].Start < rs[j].Start })
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "%08x:%08x %s\n", r.Start, r.End(), r.Name)
	}
	return b.String()
}

// ParseFlashromLayout reads the format FlashromLayout writes. flashrom itself
// accepts no comments and no spaces in names; neither do we, so a file we
// accept is one flashrom accepts. Only Name, Start and Size are set.
func ParseFlashromLayout(text string) ([]Region, error) {
	var rs []Region
	names := map[string]int{}
	for i, line := range strings.Split(text, "\n") {
		n := i + 1
		line = strings.TrimSuffix(line, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			return nil, fmt.Errorf("image: flashrom layout line %d: flashrom takes no comments", n)
		}
		rng, name, ok := strings.Cut(line, " ")
		if !ok || name == "" {
			return nil, fmt.Errorf("image: flashrom layout line %d %q: want \"start:end name\" (hex, one space)", n, line)
		}
		if !validName(name) {
			return nil, fmt.Errorf("image: flashrom layout line %d: region name %q: use letters, digits, '_', '-', '.'", n, name)
		}
		s, e, ok := strings.Cut(rng, ":")
		if !ok {
			return nil, fmt.Errorf("image: flashrom layout line %d %q: range %q has no ':'", n, line, rng)
		}
		start, err1 := parseHex(s)
		end, err2 := parseHex(e)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("image: flashrom layout line %d %q: start and end must be hex numbers", n, line)
		}
		if end < start {
			return nil, fmt.Errorf("image: flashrom layout line %d: end %#x is below start %#x", n, end, start)
		}
		if end-start == ^uint64(0) {
			return nil, fmt.Errorf("image: flashrom layout line %d: range covers the whole 64-bit space", n)
		}
		if prev, dup := names[name]; dup {
			return nil, fmt.Errorf("image: flashrom layout line %d: region %q already defined on line %d", n, name, prev)
		}
		names[name] = n
		rs = append(rs, Region{Name: name, Start: start, Size: end - start + 1})
	}
	sort.SliceStable(rs, func(i, j int) bool { return rs[i].Start < rs[j].Start })
	for i := 1; i < len(rs); i++ {
		if rs[i].Start <= rs[i-1].End() {
			return nil, fmt.Errorf("image: flashrom layout: regions %q and %q overlap", rs[i-1].Name, rs[i].Name)
		}
	}
	return rs, nil
}

func parseHex(s string) (uint64, error) {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	if s == "" || strings.ContainsAny(s, "+-_") {
		return 0, fmt.Errorf("not hex: %q", s)
	}
	return strconv.ParseUint(s, 16, 64)
}

// validName matches what flashrom takes as a region name and what is safe in
// a layout file.
func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// checkLayout validates the chip layout and returns the regions sorted by
// start and the index of the firmware region in that order.
func checkLayout(chipSize uint64, regions []Region) ([]Region, int, error) {
	if chipSize == 0 || chipSize%eraseBlock != 0 {
		return nil, 0, fmt.Errorf("image: chip size %#x must be a non-zero multiple of %#x", chipSize, eraseBlock)
	}
	if len(regions) == 0 {
		return nil, 0, fmt.Errorf("image: layout has no regions")
	}
	rs := append([]Region(nil), regions...)
	sort.SliceStable(rs, func(i, j int) bool { return rs[i].Start < rs[j].Start })
	fw := -1
	seen := map[string]bool{}
	for i, r := range rs {
		if !validName(r.Name) {
			return nil, 0, fmt.Errorf("image: region name %q: use letters, digits, '_', '-', '.' (flashrom takes no spaces)", r.Name)
		}
		if seen[r.Name] {
			return nil, 0, fmt.Errorf("image: region %q defined twice", r.Name)
		}
		seen[r.Name] = true
		if r.Size == 0 || r.Start%eraseBlock != 0 || r.Size%eraseBlock != 0 {
			return nil, 0, fmt.Errorf("image: region %q (start %#x, size %#x): start and size must be non-zero multiples of the %#x erase block", r.Name, r.Start, r.Size, eraseBlock)
		}
		if r.Start >= chipSize || r.Size > chipSize-r.Start {
			return nil, 0, fmt.Errorf("image: region %q (%#x..%#x) does not fit the %#x-byte chip", r.Name, r.Start, r.Start+r.Size, chipSize)
		}
		if i > 0 && r.Start <= rs[i-1].End() {
			return nil, 0, fmt.Errorf("image: regions %q and %q overlap", rs[i-1].Name, r.Name)
		}
		if uint64(len(r.Fill)) > r.Size {
			return nil, 0, fmt.Errorf("image: region %q: fill content of %d bytes exceeds its size %d", r.Name, len(r.Fill), r.Size)
		}
		if r.Preserve && (r.Firmware || len(r.Fill) > 0) {
			return nil, 0, fmt.Errorf("image: region %q is preserved, so fwbuild writes nothing into it: drop its firmware flag and fill", r.Name)
		}
		if r.Firmware {
			if fw >= 0 {
				return nil, 0, fmt.Errorf("image: regions %q and %q both marked as firmware; exactly one holds it", rs[fw].Name, r.Name)
			}
			if len(r.Fill) > 0 {
				return nil, 0, fmt.Errorf("image: firmware region %q cannot also have fill content", r.Name)
			}
			fw = i
		}
	}
	if fw < 0 {
		return nil, 0, fmt.Errorf("image: no region is marked as firmware")
	}
	return rs, fw, nil
}
