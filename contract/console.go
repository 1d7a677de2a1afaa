package contract

import (
	"fmt"
	"strings"
	"time"
)

// Console lines. ctld and guestinit print them on the serial console; the
// boot tests, `fwbuild test` and operators read them. Each has a String that
// prints it and a Parse that reads it back from a console line (anywhere in
// the line: a shell prompt may precede it); Pattern functions give the
// regular expression a test waits for. The parsers do without package
// regexp: guestinit imports this package, and regexp's tables would add
// some 170 KB to every guest's initramfs.

// Prefixes of every line ctld and guestinit print.
const (
	CtldPrefix  = "fwbuild-ctld: "
	GuestPrefix = "fwbuild-guest "
)

// Ready is ctld's ready line: the toolstack answers, with what xl reports.
type Ready struct {
	Xen        string `json:"xen"` // Xen's version, as xl info joins it ("4.17.7")
	Dom0MemMiB int    `json:"dom0_mem"`
	Guests     int    `json:"guests"` // guests the profile declares, or domUs running
}

func (r Ready) String() string {
	return fmt.Sprintf(CtldPrefix+"ready xen=%s dom0_mem=%d guests=%d", r.Xen, r.Dom0MemMiB, r.Guests)
}

// ReadyPattern matches the ready line; its groups are Xen's version, dom0's
// memory in MiB and the number of guests.
const ReadyPattern = CtldPrefix + `ready xen=(\S+) dom0_mem=(\d+) guests=(\d+)`

// ParseReady reads a ready line.
func ParseReady(line string) (Ready, error) {
	var r Ready
	if !scanAfter(line, CtldPrefix+"ready ", "xen=%s dom0_mem=%d guests=%d", &r.Xen, &r.Dom0MemMiB, &r.Guests) {
		return Ready{}, fmt.Errorf("not a ctld ready line: %q", line)
	}
	return r, nil
}

// scanAfter scans what follows marker in line with fmt's verbs.
func scanAfter(line, marker, format string, args ...any) bool {
	_, rest, ok := strings.Cut(line, marker)
	if !ok {
		return false
	}
	n, err := fmt.Sscanf(rest, format, args...)
	return err == nil && n == len(args)
}

// quoteName escapes a guest name for a pattern: ValidGuestName leaves '.'
// as the one character special to a regular expression.
func quoteName(name string) string { return strings.ReplaceAll(name, ".", `\.`) }

// Failed is ctld's line for a boot step that failed, instead of the ready
// line. Reason is kept to one line.
type Failed struct {
	Step, Reason string
}

func (f Failed) String() string {
	return fmt.Sprintf(CtldPrefix+"FAILED %s: %s", f.Step, OneLine(f.Reason))
}

// GuestRunning is ctld's line for a guest it started. Type, the
// virtualization mode from its xl config ("pv", "pvh"), follows as
// " type=<t>" when known; readers of the older line without it still match.
//
// Why, after the type in parentheses, says why a guest runs in another
// mode than its config's type line (a type: auto guest started as PV on a
// CPU that cannot run PVH).
type GuestRunning struct {
	Name  string
	DomID int
	Type  string
	Why   string
}

func (g GuestRunning) String() string {
	s := fmt.Sprintf(CtldPrefix+"guest %s running domid=%d", g.Name, g.DomID)
	if g.Type != "" {
		s += " type=" + g.Type
		if g.Why != "" {
			s += " (" + OneLine(g.Why) + ")"
		}
	}
	return s
}

// GuestRunningPattern matches a guest's running line; its group is the
// domain id.
func GuestRunningPattern(name string) string {
	return CtldPrefix + `guest ` + quoteName(name) + ` running domid=(\d+)`
}

// ParseGuestRunning reads a guest's running line.
func ParseGuestRunning(line string) (GuestRunning, error) {
	var g GuestRunning
	if !scanAfter(line, CtldPrefix+"guest ", "%s running domid=%d", &g.Name, &g.DomID) {
		return GuestRunning{}, fmt.Errorf("not a ctld guest running line: %q", line)
	}
	_, rest, _ := strings.Cut(line, fmt.Sprintf(" running domid=%d", g.DomID))
	if t, ok := strings.CutPrefix(rest, " type="); ok {
		t, why, _ := strings.Cut(strings.TrimSpace(t), " ")
		g.Type = t
		if w, ok := strings.CutPrefix(strings.TrimSpace(why), "("); ok {
			g.Why = strings.TrimSuffix(w, ")")
		}
	}
	return g, nil
}

// GuestFailed is ctld's line for a guest it could not start. With no Name,
// the guests as a whole could not be looked after.
type GuestFailed struct {
	Name, Reason string
}

func (g GuestFailed) String() string {
	if g.Name == "" {
		return CtldPrefix + "guests FAILED: " + OneLine(g.Reason)
	}
	return fmt.Sprintf(CtldPrefix+"guest %s FAILED: %s", g.Name, OneLine(g.Reason))
}

// GuestConsoleLost is ctld's line for a started guest whose console it
// cannot forward; the guest itself runs on.
type GuestConsoleLost struct {
	Name, Reason string
}

func (g GuestConsoleLost) String() string {
	return fmt.Sprintf(CtldPrefix+"guest %s console: %s", g.Name, OneLine(g.Reason))
}

// GuestStopped is ctld's line for a watched guest that stopped; Why is
// "crashed", "shutdown", "dying" or "gone" (no longer listed).
type GuestStopped struct {
	Name, Why string
}

func (g GuestStopped) String() string {
	return fmt.Sprintf(CtldPrefix+"guest %s stopped: %s", g.Name, g.Why)
}

// GuestDeleted is ctld's line for a VM the management API deleted: Freed
// is what its directory on the data disk held (disks, media, config), all
// of it removed.
type GuestDeleted struct {
	Name  string
	Freed int64
}

func (g GuestDeleted) String() string {
	return fmt.Sprintf(CtldPrefix+"guest %s deleted: freed %d bytes", g.Name, g.Freed)
}

// GuestDeletedPattern matches a guest's deleted line; its group is the
// bytes freed.
func GuestDeletedPattern(name string) string {
	return CtldPrefix + `guest ` + quoteName(name) + ` deleted: freed (\d+) bytes`
}

// FailurePattern matches every ctld line that reports a failure: a test
// seeing one stops at once instead of waiting out its next marker.
const FailurePattern = CtldPrefix + `(FAILED |guests FAILED|guest \S+ FAILED|guest \S+ stopped: crashed)`

// BundleLoaded is ctld's line for a guests region it checked and unpacked.
type BundleLoaded struct {
	Addr   uint64
	Files  int
	Bytes  uint64
	SHA256 [32]byte
}

func (b BundleLoaded) String() string {
	return fmt.Sprintf(CtldPrefix+"guests region at %#x: %d files, %d bytes, sha256 %x ok", b.Addr, b.Files, b.Bytes, b.SHA256[:8])
}

// GuestConsole is a line of a guest's console as ctld forwards it.
type GuestConsole struct {
	Name, Line string
}

func (g GuestConsole) String() string { return fmt.Sprintf("[guest %s] %s", g.Name, g.Line) }

// GuestUp is the line a guest's init prints inside the VM once it has read
// its domain id from xenstore.
type GuestUp struct {
	Name  string
	DomID int
}

func (g GuestUp) String() string { return fmt.Sprintf(GuestPrefix+"%s: up domid=%d", g.Name, g.DomID) }

// GuestUpPattern matches a guest's up line; its group is the domain id.
func GuestUpPattern(name string) string { return GuestPrefix + quoteName(name) + `: up domid=(\d+)` }

// ParseGuestUp reads a guest's up line.
func ParseGuestUp(line string) (GuestUp, error) {
	var g GuestUp
	var name string
	if !scanAfter(line, GuestPrefix, "%s up domid=%d", &name, &g.DomID) || !strings.HasSuffix(name, ":") {
		return GuestUp{}, fmt.Errorf("not a guest up line: %q", line)
	}
	g.Name = strings.TrimSuffix(name, ":")
	return g, nil
}

// GuestInitFailed is the line a guest's init prints when a step fails.
type GuestInitFailed struct {
	Name, Step, Reason string
}

func (g GuestInitFailed) String() string {
	return fmt.Sprintf(GuestPrefix+"%s: FAILED %s: %s", g.Name, g.Step, OneLine(g.Reason))
}

// Status is the first line of `ctld status`.
type Status struct {
	Xen        string
	Dom0MemMiB int
	Running    int // guest domains xl lists
}

func (s Status) String() string {
	return fmt.Sprintf("xen %s, dom0 %d MiB, %d guest domain(s) running", s.Xen, s.Dom0MemMiB, s.Running)
}

// StatusPattern matches the status line; its groups are Xen's version,
// dom0's memory in MiB and the running guest domains.
const StatusPattern = `xen (\d+\.\d+\S*), dom0 (\d+) MiB, (\d+) guest domain\(s\) running`

// ParseStatus reads the status line.
func ParseStatus(line string) (Status, error) {
	var st Status
	var xen string
	if !scanAfter(" "+line, " xen ", "%s dom0 %d MiB, %d guest domain(s) running", &xen, &st.Dom0MemMiB, &st.Running) || !strings.HasSuffix(xen, ",") {
		return Status{}, fmt.Errorf("not a ctld status line: %q", line)
	}
	st.Xen = strings.TrimSuffix(xen, ",")
	return st, nil
}

// GuestRow is a declared guest's row in `ctld guests` (and `ctld status`).
type GuestRow struct {
	Name      string
	Autostart bool
	State     string // "running", "paused", "shutdown", "crashed", "dying", "not running"
}

// GuestRowPattern matches a declared guest's row; its groups are autostart
// ("yes" or "no") and the state.
func GuestRowPattern(name string) string {
	return `(?:^|\s)` + quoteName(name) + `\s+(yes|no)\s+(running|paused|shutdown|crashed|dying|not running)\s`
}

// ParseGuestRow reads a declared guest's row.
func ParseGuestRow(name, line string) (GuestRow, error) {
	f := strings.Fields(line)
	for i := 0; i+2 < len(f); i++ {
		if f[i] != name || f[i+1] != "yes" && f[i+1] != "no" {
			continue
		}
		state := f[i+2]
		if state == "not" && i+3 < len(f) && f[i+3] == "running" {
			state = "not running"
		}
		switch state {
		case "running", "paused", "shutdown", "crashed", "dying", "not running":
			return GuestRow{Name: name, Autostart: f[i+1] == "yes", State: state}, nil
		}
	}
	return GuestRow{}, fmt.Errorf("no row for guest %s in %q", name, line)
}

// OneLine folds white space, so that whatever a tool printed keeps a
// console line one line.
func OneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// Management is ctld's line once the management network is up: the
// bridge's address (with its prefix length), the bridge, how the address
// was obtained and how long bringing the network up took (NICs found,
// bridge, address). A failure is a Failed line with Step "network" naming
// the NIC.
type Management struct {
	Addr   string // "10.0.2.15/24"
	Bridge string
	Via    string // "dhcp" or "static"
	Took   time.Duration
}

func (m Management) String() string {
	return fmt.Sprintf(CtldPrefix+"management %s on %s (%s, %.1fs)", m.Addr, m.Bridge, m.Via, m.Took.Seconds())
}

// ManagementPattern matches the management line; its groups are the
// address (without the prefix length), the prefix length, the bridge, how
// the address was obtained and the seconds it took.
const ManagementPattern = CtldPrefix + `management (\d+\.\d+\.\d+\.\d+|[0-9a-fA-F:]+)/(\d+) on (\S+) \((dhcp|static), (\d+\.\d)s\)`

// ParseManagement reads a management line.
func ParseManagement(line string) (Management, error) {
	var m Management
	var via string
	var secs float64
	if !scanAfter(line, CtldPrefix+"management ", "%s on %s %s %fs)", &m.Addr, &m.Bridge, &via, &secs) ||
		(via != "(dhcp," && via != "(static,") || !strings.Contains(m.Addr, "/") {
		return Management{}, fmt.Errorf("not a ctld management line: %q", line)
	}
	m.Via = strings.Trim(via, "(,")
	m.Took = time.Duration(secs * float64(time.Second)).Round(100 * time.Millisecond)
	return m, nil
}

// GuestBridge is ctld's line once the guest network's bridge is up: its
// uplinks (interface names, "none" for a bridge the guests share only with
// each other), the addresses the control domain has on it as read back
// after setting it up ("none": nothing of the control domain answers
// there), and IPv6 on it: "disabled" (disable_ipv6, so not even a
// link-local address) or "absent" (a kernel without IPv6). A failure is a
// Failed line with Step "guest-network".
type GuestBridge struct {
	Bridge  string
	Uplinks []string
	Addrs   []string
	IPv6    string
}

func (g GuestBridge) String() string {
	list := func(s []string) string {
		if len(s) == 0 {
			return "none"
		}
		return strings.Join(s, ",")
	}
	return fmt.Sprintf(CtldPrefix+"guest bridge %s uplinks=%s addresses=%s ipv6=%s", g.Bridge, list(g.Uplinks), list(g.Addrs), g.IPv6)
}

// GuestBridgePattern matches the guest bridge line; its groups are the
// bridge, the uplinks, the addresses and IPv6's state.
const GuestBridgePattern = CtldPrefix + `guest bridge (\S+) uplinks=(\S+) addresses=(\S+) ipv6=(disabled|absent)`

// GuestBridgeIsolatedPattern matches a guest bridge line that reports no
// address of the control domain's on the bridge.
const GuestBridgeIsolatedPattern = CtldPrefix + `guest bridge (\S+) uplinks=(\S+) addresses=none ipv6=(disabled|absent)`

// ParseGuestBridge reads a guest bridge line.
func ParseGuestBridge(line string) (GuestBridge, error) {
	var g GuestBridge
	var up, addrs string
	if !scanAfter(line, CtldPrefix+"guest bridge ", "%s uplinks=%s addresses=%s ipv6=%s", &g.Bridge, &up, &addrs, &g.IPv6) ||
		(g.IPv6 != "disabled" && g.IPv6 != "absent") {
		return GuestBridge{}, fmt.Errorf("not a ctld guest bridge line: %q", line)
	}
	split := func(s string) []string {
		if s == "none" {
			return nil
		}
		return strings.Split(s, ",")
	}
	g.Uplinks, g.Addrs = split(up), split(addrs)
	return g, nil
}

// DataDiskReady is ctld's line once the data disk is mounted at
// DataMount. Action is "prepared" (a blank disk, or one wiped as the
// profile allows, was partitioned and formatted this boot) or "found"
// (fwbuild's data partition from an earlier boot). A disk that is not
// found, or that holds foreign data, is a Failed line with Step "storage"
// naming the identifier and the device.
type DataDiskReady struct {
	ID, Dev, Action string
}

func (d DataDiskReady) String() string {
	return fmt.Sprintf(CtldPrefix+"data disk %s (%s) %s, mounted at %s", d.ID, d.Dev, d.Action, DataMount)
}

// DataDiskPattern matches the data-disk line; its groups are the
// identifier, the device and the action.
const DataDiskPattern = CtldPrefix + `data disk (\S+) \((/dev/\S+)\) (prepared|found), mounted at ` + DataMount

// ParseDataDiskReady reads a data-disk line.
func ParseDataDiskReady(line string) (DataDiskReady, error) {
	var d DataDiskReady
	var dev, action string
	if !scanAfter(line, CtldPrefix+"data disk ", "%s %s %s", &d.ID, &dev, &action) ||
		!strings.HasPrefix(dev, "(/dev/") || !strings.HasSuffix(dev, ")") ||
		(action != "prepared," && action != "found,") {
		return DataDiskReady{}, fmt.Errorf("not a ctld data disk line: %q", line)
	}
	d.Dev = strings.Trim(dev, "()")
	d.Action = strings.TrimSuffix(action, ",")
	return d, nil
}

// GuestDiskCreated is ctld's line for a guest disk it created on the data
// disk (a guest's first boot only; later boots reuse it).
type GuestDiskCreated struct {
	Guest, Disk string
	Size        int64
	From        string // guest image copied in, or "" for an empty disk
}

func (g GuestDiskCreated) String() string {
	from := "empty"
	if g.From != "" {
		from = "from " + g.From
	}
	return fmt.Sprintf(CtldPrefix+"guest %s disk %s created: %d bytes, %s", g.Guest, g.Disk, g.Size, from)
}

// GuestDiskCreatedPattern matches the created line of one guest's disk.
func GuestDiskCreatedPattern(guest, disk string) string {
	return CtldPrefix + `guest ` + quoteName(guest) + ` disk ` + quoteName(disk) + ` created: (\d+) bytes`
}

// GuestImageCopied is ctld's line for a guest-image file it copied to the
// data disk and verified against the manifest. From is "media:<path>" or
// the URL. A failure is a Failed line with Step "images".
type GuestImageCopied struct {
	Image, Name string
	Size        int64
	From        string
}

func (g GuestImageCopied) String() string {
	return fmt.Sprintf(CtldPrefix+"guest image %s/%s copied: %d bytes from %s, sha256 ok", g.Image, g.Name, g.Size, g.From)
}

// GuestImageCopiedPattern matches the copied line of one image file; its
// group is where it came from.
func GuestImageCopiedPattern(image, name string) string {
	return CtldPrefix + `guest image ` + quoteName(image) + `/` + quoteName(name) + ` copied: \d+ bytes from (\S+), sha256 ok`
}

// UnitLoaded is ctld's line for the unit's credential record it read from
// the unit region: its serial number and how many accounts it holds. A
// unit not provisioned yet prints UnitUnprovisioned; a damaged, foreign or
// unsigned record is a Failed line with Step "unit". Either way the
// management services stay off.
type UnitLoaded struct {
	Serial   string
	Accounts int
	// OwnerSigned: a signed build checked the owner's signature on it.
	OwnerSigned bool
}

func (u UnitLoaded) String() string {
	s := fmt.Sprintf(CtldPrefix+"unit %s accounts=%d", u.Serial, u.Accounts)
	if u.OwnerSigned {
		s += " owner-signed"
	}
	return s
}

// UnitLoadedPattern matches the unit line; its groups are the serial and
// the number of accounts.
const UnitLoadedPattern = CtldPrefix + `unit (\S+) accounts=(\d+)`

// UnitUnprovisioned is ctld's line for a unit that has no credentials yet
// (its unit region erased, or a board without one): not a failure of the
// boot (a unit before the factory's provisioning step, a developer's
// board), but the management services stay off. Why says what to do.
type UnitUnprovisioned struct {
	Why string
}

func (u UnitUnprovisioned) String() string {
	return CtldPrefix + "unit not provisioned: " + OneLine(u.Why)
}

// UnitUnprovisionedPattern matches the line.
const UnitUnprovisionedPattern = CtldPrefix + `unit not provisioned: `

// ConsoleListening is ctld's line for its SSH console service: where it
// listens and the SHA-256 fingerprint of its host key (as OpenSSH prints
// it), made at the unit's first boot, for clients to check.
type ConsoleListening struct {
	Addr, HostKey string
}

func (c ConsoleListening) String() string {
	return fmt.Sprintf(CtldPrefix+"ssh console on %s host key %s", c.Addr, c.HostKey)
}

// ConsoleListeningPattern matches the console line; its groups are the
// address and the fingerprint.
const ConsoleListeningPattern = CtldPrefix + `ssh console on (\S+) host key (SHA256:\S+)`

// RedfishUp is ctld's line once its Redfish service answers: the service
// root's URL on the management address, and where its TLS key is kept
// ("data": on the data disk, the same key every boot; "memory": this boot
// only, for a unit without a data disk) with the certificate's SHA-256
// fingerprint, so an operator can pin it. A failure is a Failed line with
// Step "redfish".
type RedfishUp struct {
	URL         string // "https://10.0.2.15:443/redfish/v1"
	Key         string // "data" or "memory"
	Fingerprint string // SHA-256 of the certificate, hex
}

func (r RedfishUp) String() string {
	return fmt.Sprintf(CtldPrefix+"redfish %s key=%s sha256=%s", r.URL, r.Key, r.Fingerprint)
}

// RedfishPattern matches the Redfish line; its groups are the URL, where
// the key is kept and the certificate's fingerprint.
const RedfishPattern = CtldPrefix + `redfish (https://\S+) key=(data|memory) sha256=([0-9a-f]{64})`

// ParseRedfishUp reads a Redfish line.
func ParseRedfishUp(line string) (RedfishUp, error) {
	var r RedfishUp
	var key, fp string
	if !scanAfter(line, CtldPrefix+"redfish ", "%s %s %s", &r.URL, &key, &fp) {
		return RedfishUp{}, fmt.Errorf("not a ctld redfish line: %q", line)
	}
	k, ok1 := strings.CutPrefix(key, "key=")
	f, ok2 := strings.CutPrefix(fp, "sha256=")
	if !ok1 || !ok2 || (k != "data" && k != "memory") || !isSHA256Hex(f) || !strings.HasPrefix(r.URL, "https://") {
		return RedfishUp{}, fmt.Errorf("not a ctld redfish line: %q", line)
	}
	r.Key, r.Fingerprint = k, f
	return r, nil
}
