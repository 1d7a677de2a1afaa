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
	// in physical memory: fwbuild.guests=<address>,<size>.
	GuestsRegionParam = "fwbuild.guests"
	// GuestNameParam and GuestAfterParam tell a guest's init its name and
	// what to do once it has reported: fwbuild.guest=<name>
	// fwbuild.after=poweroff|run.
	GuestNameParam  = "fwbuild.guest"
	GuestAfterParam = "fwbuild.after"
)

// GuestsRegion is where the chip's guests region is mapped (the chip's end
// sits at 4 GiB) and how large it is.
type GuestsRegion struct {
	Addr, Size uint64
}

// String is the parameter for the dom0 command line.
func (r GuestsRegion) String() string {
	return fmt.Sprintf("%s=%#x,%#x", GuestsRegionParam, r.Addr, r.Size)
}

// ParseGuestsRegion finds the guests-region parameter on a kernel command
// line; ok says whether it is there at all.
func ParseGuestsRegion(cmdline string) (r GuestsRegion, ok bool, err error) {
	for _, f := range strings.Fields(cmdline) {
		v, found := strings.CutPrefix(f, GuestsRegionParam+"=")
		if !found {
			continue
		}
		a, s, _ := strings.Cut(v, ",")
		addr, err1 := strconv.ParseUint(a, 0, 64)
		size, err2 := strconv.ParseUint(s, 0, 64)
		if err1 != nil || err2 != nil || size == 0 || addr+size < addr {
			return GuestsRegion{}, true, fmt.Errorf("%q: want %s=<address>,<size>", f, GuestsRegionParam)
		}
		return GuestsRegion{Addr: addr, Size: size}, true, nil
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
