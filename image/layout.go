package image

import (
	"fmt"
	"maps"
	"slices"
	"sort"

	"github.com/fwbuild/fwbuild/boardcfg"
)

// eraseBlock is the smallest unit an SPI NOR chip erases. Regions must be
// aligned to it, or writing one region would erase part of its neighbour
// (a preserved region would lose data).
const eraseBlock = 0x1000

// checkLayout validates the chip layout and its fills (content by region
// name) and returns the regions sorted by start and the index of the
// firmware region in that order.
func checkLayout(chipSize uint64, regions []boardcfg.Region, fills map[string][]byte) ([]boardcfg.Region, int, error) {
	if chipSize == 0 || chipSize%eraseBlock != 0 {
		return nil, 0, fmt.Errorf("image: chip size %#x must be a non-zero multiple of %#x", chipSize, eraseBlock)
	}
	if len(regions) == 0 {
		return nil, 0, fmt.Errorf("image: layout has no regions")
	}
	chip := boardcfg.Size(chipSize)
	rs := append([]boardcfg.Region(nil), regions...)
	sort.SliceStable(rs, func(i, j int) bool { return rs[i].Start < rs[j].Start })
	fw := -1
	seen := map[string]bool{}
	for i, r := range rs {
		start, size := uint64(r.Start), uint64(r.Size)
		fill := fills[r.Name]
		if err := boardcfg.CheckRegionName(r.Name); err != nil {
			return nil, 0, fmt.Errorf("image: %w", err)
		}
		if seen[r.Name] {
			return nil, 0, fmt.Errorf("image: region %q defined twice", r.Name)
		}
		seen[r.Name] = true
		if size == 0 || start%eraseBlock != 0 || size%eraseBlock != 0 {
			return nil, 0, fmt.Errorf("image: region %q (start %#x, size %#x): start and size must be non-zero multiples of the %#x erase block", r.Name, start, size, eraseBlock)
		}
		if r.Start >= chip || r.Size > chip-r.Start {
			return nil, 0, fmt.Errorf("image: region %q (%#x..%#x) does not fit the %#x-byte chip", r.Name, start, start+size, chipSize)
		}
		for _, o := range rs[:i] {
			if r.Start > o.End() {
				continue
			}
			// A region may nest inside the firmware region (flashrom takes
			// nested layout regions when one write includes only one of them).
			if o.Firmware && !r.Preserve && !r.Firmware && r.End() <= o.End() {
				continue
			}
			return nil, 0, fmt.Errorf("image: regions %q and %q overlap", o.Name, r.Name)
		}
		if uint64(len(fill)) > size {
			return nil, 0, fmt.Errorf("image: region %q: fill content of %d bytes exceeds its size %d", r.Name, len(fill), size)
		}
		if r.Preserve && (r.Firmware || len(fill) > 0) {
			return nil, 0, fmt.Errorf("image: region %q is preserved, so fwbuild writes nothing into it: drop its firmware flag and fill", r.Name)
		}
		if r.Firmware {
			if fw >= 0 {
				return nil, 0, fmt.Errorf("image: regions %q and %q both marked as firmware; exactly one holds it", rs[fw].Name, r.Name)
			}
			if len(fill) > 0 {
				return nil, 0, fmt.Errorf("image: firmware region %q cannot also have fill content", r.Name)
			}
			fw = i
		}
	}
	if fw < 0 {
		return nil, 0, fmt.Errorf("image: no region is marked as firmware")
	}
	// A fill for a region the layout lacks would silently go nowhere.
	for _, name := range slices.Sorted(maps.Keys(fills)) {
		if !seen[name] {
			return nil, 0, fmt.Errorf("image: fill content for region %q, which the layout does not have", name)
		}
	}
	return rs, fw, nil
}
