package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/fwbuild/fwbuild/contract"
)

// guest is a guest the profile declares: an xl config fwbuild wrote to
// GuestsDir, named after the guest.
type guest struct {
	Name      string
	Config    string
	Autostart bool
	Type      string // from the config's type line: pv, pvh (for the running line)
	// Auto: the profile said type: auto (contract.TypeAutoLine), so a
	// PVH guest may start as PV where the CPU cannot run PVH.
	Auto bool
}

// findGuests lists the guest configs. ok is false when GuestsDir does not
// exist, the control domain of a profile that declares no guests.
func (a *agent) findGuests() (gs []guest, ok bool, err error) {
	if a.cfg.GuestsDir == "" || !a.sys.exists(a.cfg.GuestsDir) {
		return nil, false, nil
	}
	files, err := a.sys.glob(path.Join(a.cfg.GuestsDir, "*.cfg"))
	if err != nil {
		return nil, true, err
	}
	for _, f := range files {
		name := strings.TrimSuffix(path.Base(f), ".cfg")
		if !contract.ValidGuestName(name) {
			return nil, true, fmt.Errorf("%s: guest name %q: want letters, digits, '-', '_' or '.'", f, name)
		}
		b, err := a.sys.readFile(f)
		if err != nil {
			return nil, true, err
		}
		auto, err := contract.ParseAutostart(b)
		if err != nil {
			return nil, true, fmt.Errorf("%s: %w", f, err)
		}
		gs = append(gs, guest{Name: name, Config: f, Autostart: auto, Type: contract.ParseXLType(b), Auto: contract.ParseTypeAuto(b)})
	}
	return gs, true, nil
}

// say writes one console line; console forwarders and the watcher share a.out.
func (a *agent) say(line fmt.Stringer) {
	a.mu.Lock()
	defer a.mu.Unlock()
	fmt.Fprintln(a.out, line)
}

// runGuests starts every autostart guest, forwards their consoles, reports
// each one's state, and watches them for cfg.GuestWatch. It returns when the
// watch is over and every console has closed (a guest that keeps running
// keeps its console forwarded until ctx ends).
func (a *agent) runGuests(ctx context.Context) error {
	// The Redfish service (started with the host) outlives the guests'
	// watch: the helper stays while it serves.
	defer a.keepServing(ctx)
	// The guests' console logs stay bounded while this helper lives.
	go a.rotateConsoleLogsEvery(ctx, path.Dir(guestConsoleLog("-")))
	host, err := a.loadHostConfig()
	if err != nil {
		a.say(contract.Failed{Step: "host", Reason: err.Error()})
	}
	dataOK := a.setUpHost(ctx, host, a.dev)
	gs, _, err := a.findGuests()
	if err != nil {
		a.say(contract.GuestFailed{Reason: err.Error()})
		return err
	}
	if host != nil && host.Storage != nil {
		if gs, err = a.guestsOnData(host, gs, dataOK); err != nil {
			a.say(contract.GuestFailed{Reason: err.Error()})
			return err
		}
	}
	var wg sync.WaitGroup
	var started []string
	consoles := map[string]io.Closer{}
	for _, g := range gs {
		if !g.Autostart {
			continue
		}
		if a.startGuest(ctx, g, consoles, &wg) {
			started = append(started, g.Name)
		}
	}
	unhealthy, n := "", 0
	for _, g := range gs {
		if g.Autostart {
			n++
		}
	}
	if len(started) < n {
		unhealthy = fmt.Sprintf("%d of %d autostart guests started", len(started), n)
	}
	a.confirmSlot(ctx, unhealthy)
	// A stopped guest's console is closed here too, in case xl console
	// outlives its domain.
	a.watch(ctx, started, func(name string) {
		if c := consoles[name]; c != nil {
			c.Close()
		}
	})
	wg.Wait()
	return nil
}

// startGuest creates one guest, forwards its console (closed through
// consoles, done on wg) and prints its running line, or its FAILED line and
// false.
func (a *agent) startGuest(ctx context.Context, g guest, consoles map[string]io.Closer, wg *sync.WaitGroup) bool {
	args := []string{g.Config}
	typ, note := g.Type, ""
	if g.Auto && typ == "pvh" {
		if ok, why := a.canPVH(ctx); !ok {
			// xl applies key=value arguments after the file's own
			// settings: the same config, as PV (the image's kernel
			// boots either way).
			args = append(args, `type="pv"`)
			typ, note = "pv", "type auto: this CPU cannot run PVH, "+why
		}
	}
	phase := func(p string, fn func() error) error { return a.timed(contract.GuestStepName(g.Name, p), fn) }
	if err := phase(contract.GuestPhaseCreate, func() error {
		return a.xlCreate(ctx, g.Name, args...)
	}); err != nil {
		a.say(contract.GuestFailed{Name: g.Name, Reason: err.Error()})
		return false
	}
	// Attach before reporting so the guest's first lines are not lost.
	phase(contract.GuestPhaseConsole, func() error {
		r, err := a.run.stream(ctx, a.bin("xl"), "console", g.Name)
		if err != nil {
			a.say(contract.GuestConsoleLost{Name: g.Name, Reason: err.Error()})
			return err
		}
		consoles[g.Name] = r
		wg.Add(1)
		go func(name string) {
			defer wg.Done()
			defer r.Close()
			a.forwardConsole(name, r)
		}(g.Name)
		return nil
	})
	var id int
	err := phase(contract.GuestPhaseDomID, func() (err error) {
		id, err = a.guestID(ctx, g.Name)
		return err
	})
	if err != nil {
		a.say(contract.GuestFailed{Name: g.Name, Reason: err.Error()})
		if c := consoles[g.Name]; c != nil {
			c.Close()
		}
		return false
	}
	a.say(contract.GuestRunning{Name: g.Name, DomID: id, Type: typ, Why: note})
	return true
}

// canPVH says whether this machine runs PVH guests, from xl info's
// virt_caps: HVM support and either hardware-assisted paging (NPT/EPT) or
// shadow paging, what libxl itself requires of an HVM container (without,
// xl create fails with "neither hap nor shadow paging available"). If xl
// info cannot tell, PVH is tried. why names what is missing.
func (a *agent) canPVH(ctx context.Context) (ok bool, why string) {
	out, err := a.xl(ctx, "info")
	if err != nil {
		return true, ""
	}
	caps, found := parseXLInfo(out)["virt_caps"]
	if !found {
		return true, ""
	}
	has := map[string]bool{}
	for _, c := range strings.Fields(caps) {
		has[c] = true
	}
	switch {
	case !has["hvm"]:
		return false, "no hvm in virt_caps"
	case !has["hap"] && !has["shadow"]:
		return false, "neither hap nor shadow in virt_caps"
	}
	return true, ""
}

// xlCreate runs xl create with its debug log and prints a step line for
// each phase of it the log shows (xlphases.go).
func (a *agent) xlCreate(ctx context.Context, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.Timeout)
	defer cancel()
	var log []xlLine
	start := a.now()
	_, err := a.run.traced(ctx, func(l string) { log = append(log, xlLine{a.now(), l}) },
		a.bin("xl"), append([]string{"-vvv", "create"}, args...)...)
	end := a.now()
	for _, p := range createPhases(log, start, end) {
		a.stepLine(contract.GuestStepName(name, p.name), p.start, p.end)
	}
	return err
}

// xl runs one xl command; a hung toolstack must not stall the other guests.
func (a *agent) xl(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.Timeout)
	defer cancel()
	return a.run.output(ctx, a.bin("xl"), args...)
}

func (a *agent) guestID(ctx context.Context, name string) (int, error) {
	if a.xs != nil {
		xctx, cancel := context.WithTimeout(ctx, xenstoreTimeout)
		id, err := domainID(xctx, a.xs, name)
		cancel()
		if err == nil || errors.Is(err, errNoDomain) {
			return id, err
		}
		// xenstored unreachable or confused: xl knows as well.
	}
	out, err := a.xl(ctx, "list", name)
	if err != nil {
		return 0, err
	}
	doms, err := parseXLList(out)
	if err != nil {
		return 0, fmt.Errorf("xl list %s: %w", name, err)
	}
	for _, d := range doms {
		if d.Name == name {
			return d.ID, nil
		}
	}
	return 0, fmt.Errorf("xl list %s: not listed after xl create", name)
}

// consoleQuiet is how long a guest's unfinished line may wait for its
// newline before it is forwarded as it is: a full-screen program (Debian's
// installer draws its first screen with cursor moves) may print no newline
// for a long time.
const consoleQuiet = 500 * time.Millisecond

// forwardConsole copies a guest's console to ctld's output a line at a
// time, each prefixed with the guest's name; an unfinished line is
// forwarded after consoleQuiet without more output.
func (a *agent) forwardConsole(name string, r io.Reader) {
	chunks := make(chan []byte)
	go func() {
		defer close(chunks)
		for {
			b := make([]byte, 4096)
			n, err := r.Read(b)
			if n > 0 {
				chunks <- b[:n]
			}
			if err != nil {
				return
			}
		}
	}()
	var pending []byte
	emit := func(line []byte) {
		// Consoles are ptys: lines end in \r\n.
		a.say(contract.GuestConsole{Name: name, Line: strings.TrimRight(string(line), "\r\n")})
	}
	quiet := time.NewTimer(time.Hour)
	quiet.Stop()
	for {
		select {
		case b, ok := <-chunks:
			if !ok {
				if len(pending) > 0 {
					emit(pending)
				}
				return
			}
			pending = append(pending, b...)
			for {
				i := bytes.IndexByte(pending, '\n')
				if i < 0 {
					break
				}
				emit(pending[:i])
				pending = pending[i+1:]
			}
			quiet.Reset(consoleQuiet)
		case <-quiet.C:
			if len(pending) > 0 {
				emit(pending)
				pending = nil
			}
		}
	}
}

// watch polls xl list and reports each guest that stops. Guests are
// destroyed on shutdown unless their config says otherwise, so a guest that
// is no longer listed is "gone".
func (a *agent) watch(ctx context.Context, names []string, stopped func(name string)) {
	live := map[string]bool{}
	for _, n := range names {
		live[n] = true
	}
	deadline := time.After(a.cfg.GuestWatch)
	// xenstored fires @releaseDomain when a domain shuts down or dies:
	// xl list runs then (and at a slow pace in case an event is missed)
	// rather than every GuestPoll while the guests boot.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var events <-chan struct{}
	poll := a.cfg.GuestPoll
	if a.xs != nil {
		if ch, err := a.xs.Watch(wctx, "@releaseDomain"); err == nil {
			events, poll = ch, guestSafetyPoll
		}
	}
	for len(live) > 0 {
		select {
		case <-ctx.Done():
			return
		case <-deadline:
			return
		case _, ok := <-events:
			if !ok { // the connection to xenstored is gone: poll
				events, poll = nil, a.cfg.GuestPoll
			}
		case <-time.After(poll):
		}
		out, err := a.xl(ctx, "list")
		if err != nil {
			continue // transient: xl takes a lock other xl commands hold
		}
		doms, err := parseXLList(out)
		if err != nil {
			continue
		}
		state := map[string]string{}
		for _, d := range doms {
			state[d.Name] = d.State
		}
		for _, n := range names {
			if !live[n] {
				continue
			}
			s, listed := state[n]
			why := stoppedState(s)
			if !listed {
				why = "gone"
			}
			if why != "" {
				a.say(contract.GuestStopped{Name: n, Why: why})
				delete(live, n)
				stopped(n)
			}
		}
	}
}

// guestSafetyPoll is how often watch runs xl list while xenstored's
// @releaseDomain watch stands in for polling.
const guestSafetyPoll = 30 * time.Second

// stoppedState reads xl list's State column ("rbpscd", '-' for unset) and
// names a stopped state, or returns "" for a live domain.
func stoppedState(s string) string {
	has := func(i int, c byte) bool { return len(s) > i && s[i] == c }
	switch {
	case has(4, 'c'):
		return "crashed"
	case has(3, 's'):
		return "shutdown"
	case has(5, 'd'):
		return "dying"
	}
	return ""
}

// autostart counts the guests start found that are to be started.
func (a *agent) autostart() []guest {
	var gs []guest
	for _, g := range a.guests {
		if g.Autostart {
			gs = append(gs, g)
		}
	}
	return gs
}

// guestsOnData moves the declared guests onto the data disk (once) and
// returns the guests defined there. Without the data disk (its FAILED line
// is out already), guests with disks cannot start and are reported so;
// the others start from the initramfs.
func (a *agent) guestsOnData(host *contract.HostConfig, declared []guest, dataOK bool) ([]guest, error) {
	if !dataOK {
		needs := map[string]bool{}
		for _, g := range host.Guests {
			needs[g.Name] = len(g.Disks) > 0
		}
		var keep []guest
		for _, g := range declared {
			if needs[g.Name] {
				if g.Autostart {
					a.say(contract.GuestFailed{Name: g.Name, Reason: "its disks are on the data disk, which is not available"})
				}
				continue
			}
			keep = append(keep, g)
		}
		return keep, nil
	}
	if err := a.seedGuests("", host, declared); err != nil {
		return nil, err
	}
	return a.dataGuests("")
}
