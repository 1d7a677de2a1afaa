package contract

import (
	"fmt"
	"strings"
	"time"
)

// Step is ctld's timing line for one of its own steps, printed as the step
// ends (whether it succeeded or not): how long it took and when it ended on
// the control domain's monotonic clock (CLOCK_MONOTONIC, which starts with
// dom0's kernel, so At is "time since dom0's kernel started"). The boot
// tests' timeline (qemu-tests) reads them; the serial console's arrival
// times alone cannot split what ctld does between two lines.
//
// Names are ctld's step names ("mount", "xenstored", "guests", ...), the
// host side's ("network", "storage", "images") and each guest's phases
// ("guest <name> create", "guest <name> console", "guest <name> domid"):
// words of letters, digits and "-_.", separated by single spaces.
type Step struct {
	Name string
	Took time.Duration
	At   time.Duration
}

func (s Step) String() string {
	return fmt.Sprintf(CtldPrefix+"step %s took=%dms at=%dms", s.Name, s.Took.Milliseconds(), s.At.Milliseconds())
}

// Start is when the step began on the control domain's clock.
func (s Step) Start() time.Duration { return s.At - s.Took }

// StepPattern matches a step line; its groups are the name, the
// milliseconds it took and the milliseconds since dom0's kernel started.
const StepPattern = CtldPrefix + `step ([A-Za-z0-9_.-]+(?: [A-Za-z0-9_.-]+)*) took=(\d+)ms at=(\d+)ms`

// ParseStep reads a step line.
func ParseStep(line string) (Step, error) {
	_, rest, ok := strings.Cut(line, CtldPrefix+"step ")
	bad := func() (Step, error) { return Step{}, fmt.Errorf("not a ctld step line: %q", line) }
	if !ok {
		return bad()
	}
	i := strings.Index(rest, " took=")
	if i <= 0 {
		return bad()
	}
	name := rest[:i]
	if strings.Join(strings.Fields(name), " ") != name {
		return bad()
	}
	var took, at int64
	if n, err := fmt.Sscanf(rest[i:], " took=%dms at=%dms", &took, &at); err != nil || n != 2 || took < 0 || at < 0 {
		return bad()
	}
	return Step{Name: name, Took: time.Duration(took) * time.Millisecond, At: time.Duration(at) * time.Millisecond}, nil
}

// GuestStepName is the step name of one phase of a guest's start.
func GuestStepName(guest, phase string) string { return "guest " + guest + " " + phase }

// Phases of a guest's start, in order, as ctld times them.
const (
	GuestPhaseCreate  = "create"  // xl create: domain build, kernel and ramdisk loaded (and decompressed) by libxenguest
	GuestPhaseConsole = "console" // xl console attached
	GuestPhaseDomID   = "domid"   // xl list: the domain id for the running line
)

// Phases inside GuestPhaseCreate, split by xl's own log (ctld's
// xlphases.go), in order; each is a step of its own, within the create step.
const (
	GuestPhaseXL      = "create.xl"      // xl started (the dynamic loader, libxl's context) and the config parsed
	GuestPhaseDomain  = "create.domain"  // the domain made in Xen and xenstore, up to the domain builder
	GuestPhaseKernel  = "create.kernel"  // kernel and ramdisk read, the kernel decompressed, its ELF notes parsed
	GuestPhaseBuild   = "create.build"   // memory populated, segments copied, page tables and start info written
	GuestPhaseDevices = "create.devices" // console, disk and network backends (their hotplug) until libxl unpauses
	GuestPhaseUnpause = "create.exit"    // the domain unpaused and xl's exit
)
