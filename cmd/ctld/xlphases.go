package main

import (
	"strings"
	"time"

	"github.com/fwbuild/fwbuild/contract"
)

// xl create is one process, so its time is split by its own debug log
// (xl -vvv: libxl's and libxenguest's lines), each line timed as it arrives:
// a phase ends where the first line of the next one arrives. The markers are
// lines Xen 4.17's libxl and domain builder print for every PV and PVH guest;
// a marker this xl does not print merges its phase into the next, so another
// Xen only gives coarser phases, never wrong ones.
var xlCreatePhases = []struct {
	phase string
	next  string // the first line of the next phase contains this
}{
	{contract.GuestPhaseXL, "Parsing config from "},
	{contract.GuestPhaseDomain, "domainbuilder: detail: xc_dom_allocate:"},
	{contract.GuestPhaseKernel, "domainbuilder: detail: xc_dom_mem_init:"},
	{contract.GuestPhaseBuild, "domainbuilder: detail: xc_dom_release:"},
	{contract.GuestPhaseDevices, ":libxl_domain_unpause:"},
	{contract.GuestPhaseUnpause, ""}, // to xl's exit
}

// xlLine is one line of xl's log and when it arrived on the step clock.
type xlLine struct {
	at   time.Duration
	text string
}

// xlPhase is one phase of an xl create, on the step clock.
type xlPhase struct {
	name       string
	start, end time.Duration
}

// createPhases splits an xl create that ran from start to end by its log.
// Without any marker (xl failed before parsing its config, or printed
// nothing) there are no phases: the create step alone says it all.
func createPhases(log []xlLine, start, end time.Duration) []xlPhase {
	var out []xlPhase
	from, i := start, 0
	for _, p := range xlCreatePhases {
		if p.next == "" {
			break
		}
		j := i
		for j < len(log) && !strings.Contains(log[j].text, p.next) {
			j++
		}
		if j == len(log) {
			continue // not printed: this phase runs on into the next
		}
		out = append(out, xlPhase{p.phase, from, log[j].at})
		from, i = log[j].at, j
	}
	if len(out) == 0 {
		return nil
	}
	return append(out, xlPhase{xlCreatePhases[len(xlCreatePhases)-1].phase, from, end})
}
