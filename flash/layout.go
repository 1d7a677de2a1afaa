package flash

import (
	"fmt"
	"sort"
	"strings"
)

// Region is one named range of the flash chip.
type Region struct {
	Name  string
	Start uint64 // offset in the chip
	Size  uint64 // bytes
	// Preserve marks data fwbuild must not overwrite (VPD, variable store, descriptor, ME, GbE...).
	// A preserved region is written only when it is named explicitly in SPIOptions.Write.
	Preserve bool
}

// End returns the last byte offset of the region (inclusive), as flashrom layouts spell it.
func (r Region) End() uint64 { return r.Start + r.Size - 1 }

// validName rejects what would break flashrom's layout syntax ("start:end name") or its
// "-i name[:file]" argument.
func validName(n string) error {
	if n == "" {
		return fmt.Errorf("empty region name")
	}
	for _, c := range n {
		if c <= ' ' || c == ':' || c == 0x7f {
			return fmt.Errorf("region name %q: spaces, control characters and ':' are not allowed (flashrom layout syntax)", n)
		}
	}
	return nil
}

// validateRegions checks the regions against a chip of chipSize bytes: valid unique names,
// non-empty, inside the chip, no overlaps. It returns the regions sorted by start.
func validateRegions(regions []Region, chipSize uint64) ([]Region, error) {
	if len(regions) == 0 {
		return nil, fmt.Errorf("no layout regions given: pass the board's flash layout (name, start, size, preserve)")
	}
	seen := map[string]bool{}
	rs := append([]Region(nil), regions...)
	for _, r := range rs {
		if err := validName(r.Name); err != nil {
			return nil, err
		}
		if seen[r.Name] {
			return nil, fmt.Errorf("region %q is defined twice in the layout", r.Name)
		}
		seen[r.Name] = true
		if r.Size == 0 {
			return nil, fmt.Errorf("region %q has size 0", r.Name)
		}
		if r.Start >= chipSize || r.Size > chipSize-r.Start {
			return nil, fmt.Errorf("region %q (0x%x-0x%x) does not fit in the %d-byte (0x%x) image/chip",
				r.Name, r.Start, r.Start+r.Size-1, chipSize, chipSize)
		}
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].Start < rs[j].Start })
	for i := 1; i < len(rs); i++ {
		if rs[i].Start <= rs[i-1].End() {
			return nil, fmt.Errorf("regions %q (0x%x-0x%x) and %q (0x%x-0x%x) overlap",
				rs[i-1].Name, rs[i-1].Start, rs[i-1].End(), rs[i].Name, rs[i].Start, rs[i].End())
		}
	}
	return rs, nil
}

// FormatLayout renders regions as a flashrom layout file: one "start:end name" line per
// region, hex, end inclusive, in the given order.
func FormatLayout(regions []Region) string {
	var b strings.Builder
	for _, r := range regions {
		fmt.Fprintf(&b, "%08x:%08x %s\n", r.Start, r.End(), r.Name)
	}
	return b.String()
}
