package launcher

import (
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fwbuild/fwbuild/contract"
)

// slotsHost compiles the launcher's own slot logic (src/slots.c, as the
// firmware build compiles it) with a host driver, so these tests run the
// C that boots, not a model of it.
func slotsHost(t *testing.T) string {
	t.Helper()
	cc, err := exec.LookPath("gcc")
	if err != nil {
		t.Fatalf("gcc not found (%v): the launcher is C; apt-get install gcc (fwbuild doctor --fix)", err)
	}
	dir := t.TempDir()
	for _, n := range []string{"slots.c", "slots.h"} {
		b, err := src.ReadFile("src/" + n)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "slots-host")
	out, err := exec.Command(cc, "-DFWB_HOST_TEST", "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-I", dir,
		"-o", bin, filepath.Join(dir, "slots.c"), "testdata/slots_host.c").CombinedOutput()
	if err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	return bin
}

// boot is one boot's decision: the state before (nil: the variable is
// absent), which slots' bytes pass; it returns the slot started ("" for
// none), the reason code and the state the launcher wrote.
type bootResult struct {
	start   string
	why     contract.SPIReason
	stale   string
	skipped string
	state   contract.SPISlots
}

func boot(t *testing.T, bin string, state *contract.SPISlots, okA, okB bool) bootResult {
	t.Helper()
	arg := "-"
	if state != nil {
		b, err := state.Encode()
		if err != nil {
			t.Fatal(err)
		}
		arg = hex.EncodeToString(b)
	}
	return bootRaw(t, bin, arg, okA, okB)
}

func bootRaw(t *testing.T, bin, arg string, okA, okB bool) bootResult {
	t.Helper()
	b01 := map[bool]string{false: "0", true: "1"}
	out, err := exec.Command(bin, arg, b01[okA], b01[okB]).Output()
	if err != nil {
		t.Fatalf("slots-host %s: %v", arg, err)
	}
	var r bootResult
	var stateHex string
	for _, f := range strings.Fields(string(out)) {
		k, v, _ := strings.Cut(f, "=")
		if v == "-" {
			v = ""
		}
		switch k {
		case "start":
			r.start = v
		case "why":
			r.why = contract.SPIReason(v[0] - '0')
		case "stale":
			r.stale = v
		case "skipped":
			r.skipped = v
		case "state":
			stateHex = v
		}
	}
	data, err := hex.DecodeString(stateHex)
	if err != nil {
		t.Fatal(err)
	}
	// What the launcher writes, ctld parses (contract is the one spelling).
	if r.state, err = contract.ParseSPISlots(data); err != nil {
		t.Fatalf("the launcher wrote a state ctld cannot read (%x): %v", data, err)
	}
	return r
}

func failed(s contract.SPISlots) string {
	var f string
	for _, k := range []string{"a", "b"} {
		if s.Failed[k] {
			f += k
		}
	}
	return f
}

func TestSlotsStateMachine(t *testing.T) {
	bin := slotsHost(t)
	check := func(step string, r bootResult, start string, why contract.SPIReason, confirmed, trying, pending, fail string) {
		t.Helper()
		s := r.state
		if r.start != start || (start != "" && r.why != why) || s.Confirmed != confirmed || s.Trying != trying || s.Pending != pending || failed(s) != fail {
			t.Errorf("%s: started %q (%v), state confirmed=%s trying=%q pending=%q failed=%q; want %q (%v), confirmed=%s trying=%q pending=%q failed=%q",
				step, r.start, r.why, s.Confirmed, s.Trying, s.Pending, failed(s), start, why, confirmed, trying, pending, fail)
		}
	}

	// The factory: no variable, slot a.
	r := boot(t, bin, nil, true, true)
	check("factory", r, "a", contract.SPIReasonConfirmed, "a", "", "", "")
	// Garbage in the variable is the factory state, not a refusal.
	r = bootRaw(t, bin, "ff00ff00ff00ff00", true, true)
	check("garbage variable", r, "a", contract.SPIReasonConfirmed, "a", "", "", "")

	// Slot a damaged: b starts, marked trying first; ctld confirms it and it stays.
	r = boot(t, bin, nil, false, true)
	check("a damaged", r, "b", contract.SPIReasonRefused, "a", "b", "", "")
	afterFallback := r.state
	confirmed := r.state.Confirm("b")
	r = boot(t, bin, &confirmed, false, true)
	check("b confirmed, next boot", r, "b", contract.SPIReasonConfirmed, "b", "", "", "")

	// A reset before ctld confirmed the fallback: b is never tried again,
	// and with a still damaged nothing is left (the platform's boot order).
	r = boot(t, bin, &afterFallback, false, true)
	check("fallback unconfirmed, a still damaged", r, "", 0, "a", "", "", "b")
	if r.stale != "b" {
		t.Errorf("stale slot %q, want b", r.stale)
	}

	// An update written to b (pending): tried once, then back on a by itself.
	pending := contract.SPISlots{Confirmed: "a", Pending: "b", Failed: map[string]bool{}}
	r = boot(t, bin, &pending, true, true)
	check("pending b", r, "b", contract.SPIReasonPending, "a", "b", "", "")
	trial := r.state
	r = boot(t, bin, &trial, true, true)
	check("trial never confirmed", r, "a", contract.SPIReasonUnconfirmed, "a", "", "", "b")
	r = boot(t, bin, &r.state, true, true)
	check("and the boot after", r, "a", contract.SPIReasonConfirmed, "a", "", "", "b")
	if r.skipped != "b" {
		t.Errorf("skipped %q, want b (failed before)", r.skipped)
	}
	// Confirmed, the trial becomes the slot every boot starts.
	c := trial.Confirm("b")
	r = boot(t, bin, &c, true, true)
	check("trial confirmed", r, "b", contract.SPIReasonConfirmed, "b", "", "", "")
	// A pending slot whose bytes are refused: the confirmed slot, no trial,
	// and the pending slot failed.
	r = boot(t, bin, &pending, true, false)
	check("pending b refused", r, "a", contract.SPIReasonRefused, "a", "", "", "b")

	// A confirmed slot marked failed (only a hand-written state does that):
	// the other one.
	odd := contract.SPISlots{Confirmed: "a", Failed: map[string]bool{"a": true}}
	r = boot(t, bin, &odd, true, true)
	check("confirmed slot failed", r, "b", contract.SPIReasonUnconfirmed, "a", "b", "", "a")
}
