package boardcfg

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// maxRegionName bounds region names. flashrom itself reads up to 255
// characters; 64 keeps layout files, flash reports and inspect output
// readable.
const maxRegionName = 64

// CheckRegionName is the one rule for flash region names, the profile's and
// every later stage's. A name goes into a flashrom layout line ("start:end
// name": no spaces), flashrom's -i name[:file] argument (no ':') and
// reports, so only ASCII letters, digits, '.', '_' and '-' pass, at most 64
// of them.
func CheckRegionName(name string) error {
	if name == "" {
		return errors.New("empty region name")
	}
	if len(name) > maxRegionName {
		return fmt.Errorf("region name %q is %d bytes long: at most %d", name, len(name), maxRegionName)
	}
	if name[0] == '-' {
		// flashrom takes the name as the argument of -i, where a leading
		// '-' reads like an option to a person, if not to getopt.
		return fmt.Errorf("region name %q starts with '-': start it with a letter or digit", name)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("region name %q has %q: use ASCII letters, digits, '.', '_' and '-' (flashrom's layout syntax)", name, c)
		}
	}
	return nil
}

// End returns the last byte of the region (inclusive), as flashrom counts.
func (r Region) End() Size { return r.Start + r.Size - 1 }

// FlashromLayout renders regions as a flashrom layout file: one
// "start:end name" line per region, hex, end inclusive, sorted by start
// and, for a region nested in another at the same start, after it.
// The build writes it next to the chip image and the flasher hands it to
// flashrom, so both see the same file.
func FlashromLayout(regions []Region) string {
	rs := append([]Region(nil), regions...)
	sortRegions(rs)
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "%08x:%08x %s\n", uint64(r.Start), uint64(r.End()), r.Name)
	}
	return b.String()
}

// parseFlashromLayout reads the format FlashromLayout writes, as strictly as
// flashrom does (no comments, one name without spaces per line), and only
// Name, Start and Size are set. It pins that format down: the tests hold
// FlashromLayout's output to it.
func parseFlashromLayout(text string) ([]Region, error) {
	var rs []Region
	names := map[string]int{}
	for i, line := range strings.Split(text, "\n") {
		n := i + 1
		line = strings.TrimSuffix(line, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			return nil, fmt.Errorf("flashrom layout line %d: flashrom takes no comments", n)
		}
		rng, name, ok := strings.Cut(line, " ")
		if !ok || name == "" {
			return nil, fmt.Errorf("flashrom layout line %d %q: want \"start:end name\" (hex, one space)", n, line)
		}
		if err := CheckRegionName(name); err != nil {
			return nil, fmt.Errorf("flashrom layout line %d: %w", n, err)
		}
		s, e, ok := strings.Cut(rng, ":")
		if !ok {
			return nil, fmt.Errorf("flashrom layout line %d %q: range %q has no ':'", n, line, rng)
		}
		start, err1 := parseHex(s)
		end, err2 := parseHex(e)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("flashrom layout line %d %q: start and end must be hex numbers", n, line)
		}
		if end < start {
			return nil, fmt.Errorf("flashrom layout line %d: end %#x is below start %#x", n, end, start)
		}
		if end-start == ^uint64(0) {
			return nil, fmt.Errorf("flashrom layout line %d: range covers the whole 64-bit space", n)
		}
		if prev, dup := names[name]; dup {
			return nil, fmt.Errorf("flashrom layout line %d: region %q already defined on line %d", n, name, prev)
		}
		names[name] = n
		rs = append(rs, Region{Name: name, Start: Size(start), Size: Size(end - start + 1)})
	}
	sortRegions(rs)
	// Regions may nest (a guests or payload region inside the BIOS region:
	// flashrom takes that as long as one write does not include both) but
	// not overlap partly. Sorted, each region is inside the innermost open
	// one or after it.
	var open []Region
	for _, r := range rs {
		for len(open) > 0 && open[len(open)-1].End() < r.Start {
			open = open[:len(open)-1]
		}
		if len(open) > 0 && r.End() > open[len(open)-1].End() {
			return nil, fmt.Errorf("flashrom layout: regions %q and %q overlap", open[len(open)-1].Name, r.Name)
		}
		open = append(open, r)
	}
	return rs, nil
}

// sortRegions orders regions by start and, at one start, outer before
// inner (larger first), so that a layout's order does not depend on the
// profile's.
func sortRegions(rs []Region) {
	sort.SliceStable(rs, func(i, j int) bool {
		if rs[i].Start != rs[j].Start {
			return rs[i].Start < rs[j].Start
		}
		return rs[i].Size > rs[j].Size
	})
}

func parseHex(s string) (uint64, error) {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	if s == "" || strings.ContainsAny(s, "+-_") {
		return 0, fmt.Errorf("not hex: %q", s)
	}
	return strconv.ParseUint(s, 16, 64)
}
