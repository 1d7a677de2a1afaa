package contract

import (
	"fmt"
	"strings"
)

// Console lines of the stock guest image fwbuild builds from Debian packages
// (a busybox userland on a stock kernel). Its init is a shell script, so each
// line is one echo; the build writes the scripts from GuestOSPrefix and these
// formats, and the boot tests read the lines back with the parsers here.

// GuestOSPrefix starts every line of the stock guest image's init.
const GuestOSPrefix = "fwbuild-guestos "

// Kernel parameters the stock guest image's init reads (beside
// GuestNameParam and GuestAfterParam).
const (
	// GuestFetchParam names a URL the guest fetches once it has an
	// address: fwbuild.fetch=<url>.
	GuestFetchParam = "fwbuild.fetch"
)

// GuestOSRoot is printed once the initramfs has mounted the root file
// system from the virtual disk and is about to start its init.
type GuestOSRoot struct {
	Name, Device string
}

func (g GuestOSRoot) String() string {
	return fmt.Sprintf(GuestOSPrefix+"%s: root %s mounted", g.Name, g.Device)
}

// GuestOSRootPattern's group is the root device.
func GuestOSRootPattern(name string) string {
	return GuestOSPrefix + quoteName(name) + `: root (\S+) mounted`
}

// GuestOSDHCP is printed when the guest has a DHCP lease.
type GuestOSDHCP struct {
	Name, Iface, IP, Router string
}

func (g GuestOSDHCP) String() string {
	return fmt.Sprintf(GuestOSPrefix+"%s: dhcp %s ip=%s router=%s", g.Name, g.Iface, g.IP, g.Router)
}

// GuestOSDHCPPattern's groups are the interface, the address and the router.
func GuestOSDHCPPattern(name string) string {
	return GuestOSPrefix + quoteName(name) + `: dhcp (\S+) ip=(\S+) router=(\S*)`
}

// ParseGuestOSDHCP reads a DHCP line.
func ParseGuestOSDHCP(line string) (GuestOSDHCP, error) {
	var g GuestOSDHCP
	f, ok := guestOSFields(line, "dhcp", &g.Name)
	if !ok || len(f) != 3 {
		return GuestOSDHCP{}, fmt.Errorf("not a guest dhcp line: %q", line)
	}
	g.Iface = f[0]
	if g.IP, ok = strings.CutPrefix(f[1], "ip="); !ok {
		return GuestOSDHCP{}, fmt.Errorf("not a guest dhcp line: %q", line)
	}
	if g.Router, ok = strings.CutPrefix(f[2], "router="); !ok {
		return GuestOSDHCP{}, fmt.Errorf("not a guest dhcp line: %q", line)
	}
	return g, nil
}

// GuestOSFetched is printed when the guest fetched the URL of
// GuestFetchParam; SHA256 is the hex digest of what it received.
type GuestOSFetched struct {
	Name, URL, SHA256 string
	Bytes             int64
}

func (g GuestOSFetched) String() string {
	return fmt.Sprintf(GuestOSPrefix+"%s: fetched %s bytes=%d sha256=%s", g.Name, g.URL, g.Bytes, g.SHA256)
}

// GuestOSFetchedPattern's groups are the URL, the size and the digest.
func GuestOSFetchedPattern(name string) string {
	return GuestOSPrefix + quoteName(name) + `: fetched (\S+) bytes=(\d+) sha256=([0-9a-f]{64})`
}

// ParseGuestOSFetched reads a fetched line.
func ParseGuestOSFetched(line string) (GuestOSFetched, error) {
	var g GuestOSFetched
	f, ok := guestOSFields(line, "fetched", &g.Name)
	if !ok || len(f) != 3 {
		return GuestOSFetched{}, fmt.Errorf("not a guest fetched line: %q", line)
	}
	g.URL = f[0]
	if _, err := fmt.Sscanf(f[1], "bytes=%d", &g.Bytes); err != nil {
		return GuestOSFetched{}, fmt.Errorf("not a guest fetched line: %q", line)
	}
	if g.SHA256, ok = strings.CutPrefix(f[2], "sha256="); !ok || !isSHA256Hex(g.SHA256) {
		return GuestOSFetched{}, fmt.Errorf("not a guest fetched line: %q", line)
	}
	return g, nil
}

// GuestOSMarker is printed after the guest looked for its marker file on
// its root disk: Found on a boot after the first (Token is what the first
// boot wrote), else Written with a new Token.
type GuestOSMarker struct {
	Name  string
	Found bool
	Token string
}

func (g GuestOSMarker) String() string {
	verb := "written"
	if g.Found {
		verb = "found"
	}
	return fmt.Sprintf(GuestOSPrefix+"%s: marker %s %s", g.Name, verb, g.Token)
}

// GuestOSMarkerPattern's groups are "written" or "found", and the token.
func GuestOSMarkerPattern(name string) string {
	return GuestOSPrefix + quoteName(name) + `: marker (written|found) (\S+)`
}

// ParseGuestOSMarker reads a marker line.
func ParseGuestOSMarker(line string) (GuestOSMarker, error) {
	var g GuestOSMarker
	f, ok := guestOSFields(line, "marker", &g.Name)
	if !ok || len(f) != 2 || f[0] != "written" && f[0] != "found" {
		return GuestOSMarker{}, fmt.Errorf("not a guest marker line: %q", line)
	}
	g.Found, g.Token = f[0] == "found", f[1]
	return g, nil
}

// GuestOSFailed is printed when a step of the guest's init fails.
type GuestOSFailed struct {
	Name, Step, Reason string
}

func (g GuestOSFailed) String() string {
	return fmt.Sprintf(GuestOSPrefix+"%s: FAILED %s: %s", g.Name, g.Step, OneLine(g.Reason))
}

// GuestOSFailurePattern matches any failure line of the stock guest image.
const GuestOSFailurePattern = GuestOSPrefix + `\S+: FAILED `

// guestOSFields splits "fwbuild-guestos <name>: <verb> <fields...>",
// anywhere in line, into name and the fields after verb.
func guestOSFields(line, verb string, name *string) ([]string, bool) {
	_, rest, ok := strings.Cut(line, GuestOSPrefix)
	if !ok {
		return nil, false
	}
	f := strings.Fields(rest)
	if len(f) < 2 || !strings.HasSuffix(f[0], ":") || f[1] != verb {
		return nil, false
	}
	*name = strings.TrimSuffix(f[0], ":")
	if !ValidGuestName(*name) {
		return nil, false
	}
	return f[2:], true
}

// GuestOSDisk is printed for each virtual disk a guest image sees: the
// installer image prints it before its first screen.
type GuestOSDisk struct {
	Name, Device string
	Bytes        int64
}

func (g GuestOSDisk) String() string {
	return fmt.Sprintf(GuestOSPrefix+"%s: disk %s bytes=%d", g.Name, g.Device, g.Bytes)
}

// GuestOSDiskPattern's groups are the device and its size in bytes.
func GuestOSDiskPattern(name string) string {
	return GuestOSPrefix + quoteName(name) + `: disk (\S+) bytes=(\d+)`
}

// ParseGuestOSDisk reads a disk line.
func ParseGuestOSDisk(line string) (GuestOSDisk, error) {
	var g GuestOSDisk
	f, ok := guestOSFields(line, "disk", &g.Name)
	if !ok || len(f) != 2 {
		return GuestOSDisk{}, fmt.Errorf("not a guest disk line: %q", line)
	}
	g.Device = f[0]
	if _, err := fmt.Sscanf(f[1], "bytes=%d", &g.Bytes); err != nil {
		return GuestOSDisk{}, fmt.Errorf("not a guest disk line: %q", line)
	}
	return g, nil
}
