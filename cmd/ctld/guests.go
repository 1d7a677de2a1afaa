package main

import (
	"bufio"
	"context"
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
		gs = append(gs, guest{Name: name, Config: f, Autostart: auto, Type: contract.ParseXLType(b)})
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
		phase := func(p string, fn func() error) error { return a.timed(contract.GuestStepName(g.Name, p), fn) }
		if err := phase(contract.GuestPhaseCreate, func() error {
			_, err := a.xl(ctx, "create", g.Config)
			return err
		}); err != nil {
			a.say(contract.GuestFailed{Name: g.Name, Reason: err.Error()})
			continue
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
			continue
		}
		a.say(contract.GuestRunning{Name: g.Name, DomID: id, Type: g.Type})
		started = append(started, g.Name)
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

// xl runs one xl command; a hung toolstack must not stall the other guests.
func (a *agent) xl(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.Timeout)
	defer cancel()
	return a.run.output(ctx, a.bin("xl"), args...)
}

func (a *agent) guestID(ctx context.Context, name string) (int, error) {
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

// forwardConsole copies a guest's console to ctld's output a line at a
// time, each prefixed with the guest's name.
func (a *agent) forwardConsole(name string, r io.Reader) {
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			// Consoles are ptys: lines end in \r\n.
			line = strings.TrimRight(line, "\r\n")
			a.say(contract.GuestConsole{Name: name, Line: line})
		}
		if err != nil {
			return
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
	for len(live) > 0 {
		select {
		case <-ctx.Done():
			return
		case <-deadline:
			return
		case <-time.After(a.cfg.GuestPoll):
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
