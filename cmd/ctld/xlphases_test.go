package main

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/contract"
)

// xl -vvv create of qemu-q35's demo guest (a PV kernel and initramfs, no
// devices but the console), as ctld captured it in a boot: each line is
// given the time of its index here (10 ms apart), the process 2 s.
func TestCreatePhases(t *testing.T) {
	b, err := os.ReadFile("testdata/xl-create-pv.log")
	if err != nil {
		t.Fatal(err)
	}
	const ms = time.Millisecond
	var log []xlLine
	index := map[string]time.Duration{} // a marker's first line's time
	for i, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		at := time.Duration(100+10*i) * ms
		log = append(log, xlLine{at, l})
		for _, p := range xlCreatePhases {
			if _, seen := index[p.next]; p.next != "" && !seen && strings.Contains(l, p.next) {
				index[p.next] = at
			}
		}
	}
	if len(index) != len(xlCreatePhases)-1 {
		t.Fatalf("the log has %d of the %d markers: %v", len(index), len(xlCreatePhases)-1, index)
	}
	got := createPhases(log, 0, 2*time.Second)
	from := time.Duration(0)
	var want []xlPhase
	for _, p := range xlCreatePhases[:len(xlCreatePhases)-1] {
		want = append(want, xlPhase{p.phase, from, index[p.next]})
		from = index[p.next]
	}
	want = append(want, xlPhase{contract.GuestPhaseUnpause, from, 2 * time.Second})
	if !reflect.DeepEqual(got, want) {
		t.Errorf("phases\n%v\nwant\n%v", got, want)
	}
	for i := 1; i < len(got); i++ {
		if got[i].start != got[i-1].end || got[i].end < got[i].start {
			t.Errorf("phase %s does not follow %s: %v", got[i].name, got[i-1].name, got)
		}
	}

	// Without the domain builder's lines (another Xen), the domain phase
	// runs on to the next marker instead of inventing a boundary.
	var coarse []xlLine
	for _, l := range log {
		if !strings.Contains(l.text, "xc_dom_allocate:") {
			coarse = append(coarse, l)
		}
	}
	got = createPhases(coarse, 0, 2*time.Second)
	if len(got) != len(want)-1 || got[1].name != contract.GuestPhaseKernel || got[1].start != want[0].end || got[1].end != want[2].end {
		t.Errorf("without xc_dom_allocate: %v", got)
	}

	// xl failed before its config: no phases, the create step says it.
	if got := createPhases([]xlLine{{50 * ms, "xl: command not implemented"}}, 0, time.Second); got != nil {
		t.Errorf("phases of a log without markers: %v", got)
	}
}
