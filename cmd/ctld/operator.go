package main

import (
	"context"
	"fmt"
	"io"
	"sort"
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
//
// Plain `ctld` is the boot-time agent; run again on a live control domain it
// would start a second xenstored, so it refuses.

// operate runs an operator command.
func (a *agent) operate(ctx context.Context, cmd string, w io.Writer) error {
	switch cmd {
	case "status", "guests":
	case "unit":
		// The unit's credential record, as the management services read
		// it: its line, or the FAILED unit line with what to do.
		b := &agent{cfg: a.cfg, run: a.run, sys: a.sys, out: w}
		_, err := b.loadUnitRecord(ctx)
		return err
	default:
		return fmt.Errorf("unknown command %q: want status, guests or unit", cmd)
	}
	if err := a.findToolstack(ctx); err != nil {
		return err
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
