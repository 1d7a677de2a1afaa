package contract

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Console lines. ctld and guestinit print them on the serial console; the
// boot tests, `fwbuild test` and operators read them. Each has a String that
// prints it and a Parse that reads it back from a console line (anywhere in
// the line: a shell prompt may precede it); Pattern functions give the
// regular expression a test waits for.

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

var readyRE = regexp.MustCompile(ReadyPattern)

// ParseReady reads a ready line.
func ParseReady(line string) (Ready, error) {
	m := readyRE.FindStringSubmatch(line)
	if m == nil {
		return Ready{}, fmt.Errorf("not a ctld ready line: %q", line)
	}
	mem, err1 := strconv.Atoi(m[2])
	n, err2 := strconv.Atoi(m[3])
	if err1 != nil || err2 != nil {
		return Ready{}, fmt.Errorf("ctld ready line %q: numbers out of range", line)
	}
	return Ready{Xen: m[1], Dom0MemMiB: mem, Guests: n}, nil
}

// Failed is ctld's line for a boot step that failed, instead of the ready
// line. Reason is kept to one line.
type Failed struct {
	Step, Reason string
}

func (f Failed) String() string {
	return fmt.Sprintf(CtldPrefix+"FAILED %s: %s", f.Step, OneLine(f.Reason))
}

// GuestRunning is ctld's line for a guest it started.
type GuestRunning struct {
	Name  string
	DomID int
}

func (g GuestRunning) String() string {
	return fmt.Sprintf(CtldPrefix+"guest %s running domid=%d", g.Name, g.DomID)
}

// GuestRunningPattern matches a guest's running line; its group is the
// domain id.
func GuestRunningPattern(name string) string { return guestRunningPattern(regexp.QuoteMeta(name)) }

func guestRunningPattern(name string) string {
	return CtldPrefix + `guest ` + name + ` running domid=(\d+)`
}

// ParseGuestRunning reads a guest's running line.
func ParseGuestRunning(line string) (GuestRunning, error) {
	m := regexp.MustCompile(guestRunningPattern(`(\S+)`)).FindStringSubmatch(line)
	if m == nil {
		return GuestRunning{}, fmt.Errorf("not a ctld guest running line: %q", line)
	}
	id, err := strconv.Atoi(m[2])
	if err != nil {
		return GuestRunning{}, fmt.Errorf("ctld guest running line %q: %w", line, err)
	}
	return GuestRunning{Name: m[1], DomID: id}, nil
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
func GuestUpPattern(name string) string { return guestUpPattern(regexp.QuoteMeta(name)) }

func guestUpPattern(name string) string { return GuestPrefix + name + `: up domid=(\d+)` }

// ParseGuestUp reads a guest's up line.
func ParseGuestUp(line string) (GuestUp, error) {
	m := regexp.MustCompile(guestUpPattern(`(\S+)`)).FindStringSubmatch(line)
	if m == nil {
		return GuestUp{}, fmt.Errorf("not a guest up line: %q", line)
	}
	id, err := strconv.Atoi(m[2])
	if err != nil {
		return GuestUp{}, fmt.Errorf("guest up line %q: %w", line, err)
	}
	return GuestUp{Name: m[1], DomID: id}, nil
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

var statusRE = regexp.MustCompile(StatusPattern)

// ParseStatus reads the status line.
func ParseStatus(line string) (Status, error) {
	m := statusRE.FindStringSubmatch(line)
	if m == nil {
		return Status{}, fmt.Errorf("not a ctld status line: %q", line)
	}
	mem, err1 := strconv.Atoi(m[2])
	n, err2 := strconv.Atoi(m[3])
	if err1 != nil || err2 != nil {
		return Status{}, fmt.Errorf("ctld status line %q: numbers out of range", line)
	}
	return Status{Xen: m[1], Dom0MemMiB: mem, Running: n}, nil
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
	return `(?:^|\s)` + regexp.QuoteMeta(name) + `\s+(yes|no)\s+(running|paused|shutdown|crashed|dying|not running)\s`
}

// ParseGuestRow reads a declared guest's row.
func ParseGuestRow(name, line string) (GuestRow, error) {
	m := regexp.MustCompile(GuestRowPattern(name)).FindStringSubmatch(line + " ")
	if m == nil {
		return GuestRow{}, fmt.Errorf("no row for guest %s in %q", name, line)
	}
	return GuestRow{Name: name, Autostart: m[1] == "yes", State: m[2]}, nil
}

// OneLine folds white space, so that whatever a tool printed keeps a
// console line one line.
func OneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
