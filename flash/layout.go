package flash

import (
	"fmt"
	"sort"

	"github.com/fwbuild/fwbuild/boardcfg"
)

// validateRegions checks the regions against a chip of chipSize bytes: valid unique names
// (boardcfg's rule, the one the profile was checked with), non-empty, inside the chip, no
// overlaps. It returns the regions sorted by start.
func validateRegions(regions []boardcfg.Region, chipSize uint64) ([]boardcfg.Region, error) {
	if len(regions) == 0 {
		return nil, fmt.Errorf("no layout regions given: pass the board's flash layout (name, start, size, preserve)")
	}
	seen := map[string]bool{}
	rs := append([]boardcfg.Region(nil), regions...)
	for _, r := range rs {
		if err := boardcfg.CheckRegionName(r.Name); err != nil {
			return nil, err
		}
		if seen[r.Name] {
			return nil, fmt.Errorf("region %q is defined twice in the layout", r.Name)
		}
		seen[r.Name] = true
		start, size := uint64(r.Start), uint64(r.Size)
		if size == 0 {
			return nil, fmt.Errorf("region %q has size 0", r.Name)
		}
		if start >= chipSize || size > chipSize-start {
			return nil, fmt.Errorf("region %q (0x%x-0x%x) does not fit in the %d-byte (0x%x) image/chip",
				r.Name, start, start+size-1, chipSize, chipSize)
		}
	}
	// Outer regions first at one start, so a nested region follows its parent.
	sort.SliceStable(rs, func(i, j int) bool {
		if rs[i].Start != rs[j].Start {
			return rs[i].Start < rs[j].Start
		}
		return rs[i].Size > rs[j].Size
	})
	for i := 1; i < len(rs); i++ {
		b := rs[i]
		for _, a := range rs[:i] {
			if b.Start > a.End() {
				continue
			}
			// The payload and guests regions nest in the firmware region.
			if a.Firmware && a.Contains(b) && !b.Preserve {
				continue
			}
			return nil, fmt.Errorf("regions %q (0x%x-0x%x) and %q (0x%x-0x%x) overlap",
				a.Name, uint64(a.Start), uint64(a.End()), b.Name, uint64(b.Start), uint64(b.End()))
		}
	}
	return rs, nil
}

// parentOf returns the region of rs that r is nested in, if any.
func parentOf(rs []boardcfg.Region, r boardcfg.Region) (boardcfg.Region, bool) {
	for _, a := range rs {
		if a.Name != r.Name && a.Firmware && a.Contains(r) {
			return a, true
		}
	}
	return boardcfg.Region{}, false
}
