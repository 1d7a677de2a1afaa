package remote

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	rf "github.com/fwbuild/fwbuild/contract/redfish"
)

var sizeRE = regexp.MustCompile(`^(\d+)(B|KiB|MiB|GiB|TiB)?$`)

// ParseSize reads a byte count: plain bytes or with a binary unit (64MiB).
func ParseSize(s string) (int64, error) {
	m := sizeRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("%q is not a size: give bytes or KiB/MiB/GiB/TiB, e.g. 1GiB", s)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	shift := map[string]uint{"": 0, "B": 0, "KiB": 10, "MiB": 20, "GiB": 30, "TiB": 40}[m[2]]
	if err != nil || n > (1<<62)>>shift {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n << shift, nil
}

// ParseDisk reads a disk as `fwbuild remote create --disk` takes it:
// NAME:SIZE[:IMAGE], IMAGE naming the guest image whose root file system
// the disk starts as (e.g. root:1GiB:debian), else the disk is empty.
func ParseDisk(s string) (rf.CreateDisk, error) {
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" {
		return rf.CreateDisk{}, fmt.Errorf("disk %q: want NAME:SIZE[:IMAGE], e.g. root:1GiB:debian", s)
	}
	n, err := ParseSize(parts[1])
	if err != nil {
		return rf.CreateDisk{}, fmt.Errorf("disk %q: %w", s, err)
	}
	d := rf.CreateDisk{Name: parts[0], SizeBytes: n}
	if len(parts) == 3 {
		d.From = parts[2]
	}
	return d, nil
}
