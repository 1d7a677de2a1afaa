package main

import (
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"testing"

	"github.com/fwbuild/fwbuild/contract"
)

type mapVars map[string][]byte

func (m mapVars) get(name string) ([]byte, error) {
	b, ok := m[name]
	if !ok {
		return nil, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
	}
	return b, nil
}

func (m mapVars) set(name string, attrs uint32, data []byte) error {
	if attrs != contract.SPISlotsAttributes {
		return fmt.Errorf("%s: attributes %#x", name, attrs)
	}
	m[name] = append([]byte(nil), data...)
	return nil
}

// ctld reads what the launcher wrote after a fallback (slot a refused, b
// trying), reports it, and confirms b in the variable the next boot reads.
func TestSPISlotsConfirm(t *testing.T) {
	if s, err := readSPISlots(mapVars{}); s != nil || err != nil {
		t.Fatalf("no launcher variables: %v, %v; want nothing to do", s, err)
	}
	st := contract.SPISlots{Confirmed: "a", Trying: "b", Failed: map[string]bool{}}
	data, _ := st.Encode()
	v := mapVars{contract.SPISlotsVar: data, contract.SPIBootedVar: {'b', byte(contract.SPIReasonRefused)}}
	s, err := readSPISlots(v)
	if err != nil {
		t.Fatal(err)
	}
	line := s.bootLine().String()
	if m := regexp.MustCompile(contract.SPISlotPattern("booted")).FindStringSubmatch(line); m == nil || m[1] != "b" {
		t.Errorf("boot line %q does not match %s for slot b", line, contract.SPISlotPattern("booted"))
	}
	if want := "fwbuild-ctld: spi slot b booted: launcher: fallback-refused; confirmed=a trying=b failed=none"; line != want {
		t.Errorf("boot line %q, want %q", line, want)
	}
	c, err := s.confirm()
	if err != nil || c == nil || c.String() != "fwbuild-ctld: spi slot b confirmed: was a" {
		t.Fatalf("confirm: %v, %v", c, err)
	}
	got, err := contract.ParseSPISlots(v[contract.SPISlotsVar])
	if err != nil || got.Confirmed != "b" || got.Trying != "" {
		t.Errorf("state after confirmation %+v, %v: want b confirmed, nothing trying", got, err)
	}
	// Confirmed already: no write, no line.
	v[contract.SPISlotsVar] = []byte("garbage!")
	if c, err := s.confirm(); c != nil || err != nil {
		t.Errorf("second confirm: %v, %v; want nothing", c, err)
	}
	// A bad booted record is an error, not a guess.
	if _, err := readSPISlots(mapVars{contract.SPIBootedVar: {'c', 1}}); err == nil {
		t.Error("booted slot c accepted")
	}
}

// `ctld spi pending b` marks b to be tried once and clears its failed mark;
// the confirmed slot and unknown slots are refused.
func TestSPISlotsMarkPending(t *testing.T) {
	st := contract.SPISlots{Confirmed: "a", Failed: map[string]bool{"b": true}}
	data, _ := st.Encode()
	v := mapVars{contract.SPISlotsVar: data}
	line, err := markPending(v, "b")
	if err != nil || line.String() != "fwbuild-ctld: spi slot b pending: the next boot tries it once" {
		t.Fatalf("markPending: %v, %v", line, err)
	}
	got, err := contract.ParseSPISlots(v[contract.SPISlotsVar])
	if err != nil || got.Pending != "b" || got.Failed["b"] || got.Confirmed != "a" {
		t.Errorf("state %+v, %v: want a confirmed, b pending and not failed", got, err)
	}
	if _, err := markPending(v, "a"); err == nil {
		t.Error("the confirmed slot marked pending")
	}
	if _, err := markPending(v, "c"); err == nil {
		t.Error("slot c marked pending")
	}
	// No variable yet: the factory state (a confirmed).
	v = mapVars{}
	if _, err := markPending(v, "b"); err != nil {
		t.Fatal(err)
	}
	if got, _ := contract.ParseSPISlots(v[contract.SPISlotsVar]); got.Confirmed != "a" || got.Pending != "b" {
		t.Errorf("from the factory state: %+v", got)
	}
}

// A trial that printed FAILED is given up at once; the confirmed slot is not.
func TestSPISlotsFailedTrial(t *testing.T) {
	trial := &spiSlots{booted: "b", state: contract.SPISlots{Confirmed: "a", Trying: "b"}}
	l := trial.failedTrial(errors.New("guests: region blank"))
	if l == nil || l.String() != "fwbuild-ctld: spi slot b unconfirmed: FAILED: guests: region blank; rebooting to slot a" {
		t.Errorf("failed trial: %v", l)
	}
	confirmed := &spiSlots{booted: "a", state: contract.SPISlots{Confirmed: "a"}}
	if l := confirmed.failedTrial(errors.New("x")); l != nil {
		t.Errorf("the confirmed slot given up: %v", l)
	}
	var none *spiSlots
	if none.failedTrial(errors.New("x")) != nil {
		t.Error("no slots, a line")
	}
}
