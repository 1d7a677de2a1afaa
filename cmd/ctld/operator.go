package main

import (
	"context"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/fwbuild/fwbuild/contract"
)

// The operator interface: typed at the control domain's shell, on the
// serial console.
//
//	ctld status   Xen version, dom0 memory, then the guests table
//	ctld guests   the guests table: every declared guest with its state and
//	              domain id, and any other domain xl knows
//	ctld unit     the unit's credential record: serial and accounts, or why
//	              there is none (see unit.go)
//	ctld start <name>
//	              start a guest (its definition on the data disk, else the
//	              profile's) the way the boot starts autostart guests: a
//	              detached ctld creates it, prints its running line and
//	              forwards its console; the command returns at once
//	ctld spi [pending a|b]
//	              the SPI payload slots: the state the next boot reads, or
//	              mark a slot written in the field to be tried once
//	ctld reboot   sync and restart the machine
//
// Plain `ctld` is the boot-time agent; run again on a live control domain it
// would start a second xenstored, so it refuses.

// operate runs an operator command; spawn starts the detached ctld that
// starts a guest (startHelper in the control domain).
func (a *agent) operate(ctx context.Context, args []string, w io.Writer, spawn func(name string) error) error {
	cmd := args[0]
	switch {
	case (cmd == "status" || cmd == "guests") && len(args) == 1:
	case cmd == "start" && len(args) == 2:
	case cmd == "start":
		return fmt.Errorf("usage: ctld start <guest>")
	case cmd == "unit" && len(args) == 1:
		// The unit's credential record, as the management services read
		// it: its line, or why there is none.
		b := &agent{cfg: a.cfg, run: a.run, sys: a.sys, out: w}
		_, err := b.loadUnitRecord(ctx)
		return err
	case cmd == "spi":
		// The SPI payload slots (spislots*.go).
		return operatorSPI(args[1:], w)
	case cmd == "reboot" && len(args) == 1:
		return operatorReboot()
	default:
		return fmt.Errorf("unknown command %q: want status, guests, unit, start <guest>, spi [pending a|b] or reboot", strings.Join(args, " "))
	}
	if err := a.findToolstack(ctx); err != nil {
		return err
	}
	if cmd == "start" {
		g, err := a.lookupGuest(args[1])
		if err != nil {
			return err
		}
		if id, err := a.guestID(ctx, g.Name); err == nil {
			return fmt.Errorf("guest %s is running already (domid %d)", g.Name, id)
		}
		return spawn(g.Name)
	}
	if cmd == "status" {
		st, err := a.status(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintln(w, contract.Status{Xen: st.Version, Dom0MemMiB: st.Dom0MemMiB, Running: st.Guests})
	}
	return a.guestTable(ctx, w)
}

// guestTable prints one row per declared guest and per other domU.
func (a *agent) guestTable(ctx context.Context, w io.Writer) error {
	declared, _, err := a.findGuests()
	if err != nil {
		return err
	}
	out, err := a.xl(ctx, "list")
	if err != nil {
		return err
	}
	doms, err := parseXLList(out)
	if err != nil {
		return fmt.Errorf("xl list: %w", err)
	}
	byName := map[string]domain{}
	for _, d := range doms {
		byName[d.Name] = d
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GUEST\tAUTOSTART\tSTATE\tDOMID\tMEM(MiB)")
	seen := map[string]bool{}
	for _, g := range declared {
		seen[g.Name] = true
		auto := "no"
		if g.Autostart {
			auto = "yes"
		}
		d, ok := byName[g.Name]
		if !ok {
			fmt.Fprintf(tw, "%s\t%s\t%s\t-\t-\n", g.Name, auto, "not running")
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\n", g.Name, auto, domainState(d.State), d.ID, d.MemMiB)
	}
	var others []domain
	for _, d := range doms {
		if d.ID != 0 && !seen[d.Name] {
			others = append(others, d)
		}
	}
	sort.Slice(others, func(i, j int) bool { return others[i].ID < others[j].ID })
	for _, d := range others {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\n", d.Name, "(not in profile)", domainState(d.State), d.ID, d.MemMiB)
	}
	return tw.Flush()
}

// domainState names xl list's State column for an operator.
func domainState(s string) string {
	if why := stoppedState(s); why != "" {
		return why
	}
	has := func(i int, c byte) bool { return len(s) > i && s[i] == c }
	switch {
	case has(2, 'p'):
		return "paused"
	case has(0, 'r'), has(1, 'b'):
		return "running"
	}
	return "running (" + s + ")"
}

// lookupGuest finds a guest's definition: on the data disk, where the host
// side keeps guests once it has seen them, else the profile's in GuestsDir.
func (a *agent) lookupGuest(name string) (guest, error) {
	if !contract.ValidGuestName(name) {
		return guest{}, fmt.Errorf("guest name %q: want letters, digits, '-', '_' or '.'", name)
	}
	p := contract.DataGuestConfig(name)
	if !a.sys.exists(p) {
		p = path.Join(a.cfg.GuestsDir, name+".cfg")
	}
	b, err := a.sys.readFile(p)
	if err != nil {
		return guest{}, fmt.Errorf("guest %s: no definition on the data disk or in the profile (%w)", name, err)
	}
	auto, err := contract.ParseAutostart(b)
	if err != nil {
		return guest{}, fmt.Errorf("%s: %w", p, err)
	}
	return guest{Name: name, Config: p, Autostart: auto, Type: contract.ParseXLType(b), Auto: contract.ParseTypeAuto(b)}, nil
}

// startOne is the detached ctld of `ctld start`: it starts the guest and
// forwards its console until it stops.
func (a *agent) startOne(ctx context.Context, name string) error {
	g, err := a.lookupGuest(name)
	if err != nil {
		a.say(contract.GuestFailed{Name: name, Reason: err.Error()})
		return err
	}
	var wg sync.WaitGroup
	consoles := map[string]io.Closer{}
	if !a.startGuest(ctx, g, consoles, &wg) {
		return fmt.Errorf("guest %s not started", name)
	}
	a.watch(ctx, []string{name}, func(string) {
		if c := consoles[name]; c != nil {
			c.Close()
		}
	})
	wg.Wait()
	return nil
}
