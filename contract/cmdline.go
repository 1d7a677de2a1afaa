package contract

import (
	"fmt"
	"strconv"
	"strings"
)

// Kernel command-line parameters fwbuild sets and the control domain or a
// guest's init reads.
const (
	// GuestsRegionParam tells ctld where the chip's guests region appears
	// in physical memory and which bundle it must hold:
	// fwbuild.guests=<address>,<size>,sha256:<hex of the archive>.
	GuestsRegionParam = "fwbuild.guests"
	// GuestNameParam and GuestAfterParam tell a guest's init its name and
	// what to do once it has reported: fwbuild.guest=<name>
	// fwbuild.after=poweroff|run.
	GuestNameParam  = "fwbuild.guest"
	GuestAfterParam = "fwbuild.after"
)

// GuestsRegion is where the chip's guests region is mapped (the chip's end
// sits at 4 GiB), how large it is, and the SHA-256 of the archive its bundle
// must hold. The hash rides on the dom0 command line inside the flash
// payload, which the launcher checks against its own pin (and the owner's
// signature covers): so the region is authenticated by the payload, not
// only by the hash in its own header, which whoever rewrites the region
// rewrites too.
type GuestsRegion struct {
	Addr, Size uint64
	SHA256     string // lower-case hex; "" when not pinned
}

// String is the parameter for the dom0 command line.
func (r GuestsRegion) String() string {
	s := fmt.Sprintf("%s=%#x,%#x", GuestsRegionParam, r.Addr, r.Size)
	if r.SHA256 != "" {
		s += ",sha256:" + r.SHA256
	}
	return s
}

// ParseGuestsRegion finds the guests-region parameter on a kernel command
// line; ok says whether it is there at all.
func ParseGuestsRegion(cmdline string) (r GuestsRegion, ok bool, err error) {
	for _, f := range strings.Fields(cmdline) {
		v, found := strings.CutPrefix(f, GuestsRegionParam+"=")
		if !found {
			continue
		}
		a, rest, _ := strings.Cut(v, ",")
		s, pin, pinned := strings.Cut(rest, ",")
		addr, err1 := strconv.ParseUint(a, 0, 64)
		size, err2 := strconv.ParseUint(s, 0, 64)
		if err1 != nil || err2 != nil || size == 0 || addr+size < addr {
			return GuestsRegion{}, true, fmt.Errorf("%q: want %s=<address>,<size>,sha256:<hex>", f, GuestsRegionParam)
		}
		r := GuestsRegion{Addr: addr, Size: size}
		if pinned {
			h, ok := strings.CutPrefix(pin, "sha256:")
			if !ok || !isHex64(h) {
				return GuestsRegion{}, true, fmt.Errorf("%q: the pin must be sha256:<64 lower-case hex digits>", f)
			}
			r.SHA256 = h
		}
		return r, true, nil
	}
	return GuestsRegion{}, false, nil
}

// After-report actions of a guest's init.
const (
	AfterPoweroff = "poweroff"
	AfterRun      = "run"
)

// GuestParams is what a guest's kernel command line tells its init.
type GuestParams struct {
	Name  string
	After string // AfterPoweroff, AfterRun, or "" (not given)
}

// String is the parameters for the guest's kernel command line.
func (p GuestParams) String() string {
	return fmt.Sprintf("%s=%s %s=%s", GuestNameParam, p.Name, GuestAfterParam, p.After)
}

// ParseGuestParams reads the guest parameters from a kernel command line;
// other parameters are the kernel's. It returns what it could parse along
// with the error.
func ParseGuestParams(cmdline string) (GuestParams, error) {
	var p GuestParams
	for _, f := range strings.Fields(cmdline) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case GuestNameParam:
			p.Name = v
		case GuestAfterParam:
			p.After = v
		}
	}
	if p.Name == "" {
		return p, fmt.Errorf("no %s=<name> on the kernel command line %q", GuestNameParam, strings.TrimSpace(cmdline))
	}
	switch p.After {
	case "", AfterPoweroff, AfterRun:
	default:
		bad := p.After
		p.After = ""
		return p, fmt.Errorf("%s=%s: want %s or %s", GuestAfterParam, bad, AfterPoweroff, AfterRun)
	}
	return p, nil
}

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// UnitRegionParam tells ctld where the chip's unit region (the per-unit
// credential record, package contract/unit) is mapped and which board the
// payload was built for: fwbuild.unit=<address>,<size>,board:<name>. The
// board rides on the command line, inside the payload the launcher checks,
// so a record written for another board is refused.
const UnitRegionParam = "fwbuild.unit"

// UnitRegion is where the unit region is mapped, its size, and the board.
type UnitRegion struct {
	Addr, Size uint64
	Board      string
}

// String is the parameter for the dom0 command line.
func (r UnitRegion) String() string {
	return fmt.Sprintf("%s=%#x,%#x,board:%s", UnitRegionParam, r.Addr, r.Size, r.Board)
}

// ParseUnitRegion finds the unit-region parameter on a kernel command line;
// ok says whether it is there at all.
func ParseUnitRegion(cmdline string) (r UnitRegion, ok bool, err error) {
	for _, f := range strings.Fields(cmdline) {
		v, found := strings.CutPrefix(f, UnitRegionParam+"=")
		if !found {
			continue
		}
		parts := strings.Split(v, ",")
		bad := fmt.Errorf("%q: want %s=<address>,<size>,board:<name>", f, UnitRegionParam)
		if len(parts) != 3 {
			return UnitRegion{}, true, bad
		}
		addr, err1 := strconv.ParseUint(parts[0], 0, 64)
		size, err2 := strconv.ParseUint(parts[1], 0, 64)
		board, isBoard := strings.CutPrefix(parts[2], "board:")
		if err1 != nil || err2 != nil || size == 0 || addr+size < addr || !isBoard || board == "" {
			return UnitRegion{}, true, bad
		}
		return UnitRegion{Addr: addr, Size: size, Board: board}, true, nil
	}
	return UnitRegion{}, false, nil
}
