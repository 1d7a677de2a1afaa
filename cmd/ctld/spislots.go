package main

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/fwbuild/fwbuild/contract"
)

// The SPI side of the payload slots (contract.SPISlots): the launcher in
// the firmware chose a payload region and recorded it in two variables
// under contract.SPISlotsGUID; ctld reports the slot this boot runs and,
// once the control domain is healthy (where the ESP side confirms its
// slot), makes it the confirmed one. Writing a slot in the field is
// flashrom's internal programmer on a real board (README); on QEMU the chip
// is ROM to the guest and the tests change it from outside.

// vendorVars reads and writes variables under one vendor GUID.
type vendorVars interface {
	// get returns a variable's data (an error wrapping fs.ErrNotExist when absent).
	get(name string) ([]byte, error)
	// set writes a variable with the given attributes.
	set(name string, attrs uint32, data []byte) error
}

// spiSlots is what ctld knows of this boot's SPI slots.
type spiSlots struct {
	vars   vendorVars
	booted string
	why    contract.SPIReason
	state  contract.SPISlots
}

// readSPISlots reads the launcher's variables: nil, nil when the launcher
// started no slot (a board with one payload region, or no launcher).
func readSPISlots(v vendorVars) (*spiSlots, error) {
	b, err := v.get(contract.SPIBootedVar)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("spi slots: read %s: %w", contract.SPIBootedVar, err)
	}
	booted, why, err := contract.ParseSPIBooted(b)
	if err != nil {
		return nil, err
	}
	s := &spiSlots{vars: v, booted: booted, why: why}
	data, err := v.get(contract.SPISlotsVar)
	if err != nil {
		// The launcher writes the state before it starts a slot; without
		// it there is nothing to confirm.
		return nil, fmt.Errorf("spi slots: slot %s booted, but %s: %w", booted, contract.SPISlotsVar, err)
	}
	if s.state, err = contract.ParseSPISlots(data); err != nil {
		return nil, err
	}
	return s, nil
}

// bootLine is the line for the slot this boot runs.
func (s *spiSlots) bootLine() contract.SPISlotLine {
	var failed []string
	for _, k := range []string{contract.SlotA, contract.SlotB} {
		if s.state.Failed[k] {
			failed = append(failed, k)
		}
	}
	f := "none"
	if len(failed) > 0 {
		f = strings.Join(failed, ",")
	}
	trying := s.state.Trying
	if trying == "" {
		trying = "none"
	}
	return contract.SPISlotLine{Slot: s.booted, State: "booted",
		Note: fmt.Sprintf("launcher: %s; confirmed=%s trying=%s failed=%s", s.why, s.state.Confirmed, trying, f)}
}

// confirm makes the booted slot the confirmed one; it returns the line to
// print, or none when the slot was confirmed already.
func (s *spiSlots) confirm() (*contract.SPISlotLine, error) {
	if s.state.Confirmed == s.booted && s.state.Trying == "" {
		return nil, nil
	}
	was := s.state.Confirmed
	next := s.state.Confirm(s.booted)
	data, err := next.Encode()
	if err != nil {
		return nil, err
	}
	if err := s.vars.set(contract.SPISlotsVar, contract.SPISlotsAttributes, data); err != nil {
		return nil, fmt.Errorf("spi slots: confirm slot %s: write %s: %w", s.booted, contract.SPISlotsVar, err)
	}
	s.state = next
	return &contract.SPISlotLine{Slot: s.booted, State: "confirmed", Note: "was " + was}, nil
}

// confirmSPISlot is confirmSlot's SPI side.
func (a *agent) confirmSPISlot(unhealthy string) {
	s := a.spiSlots
	if s == nil {
		return
	}
	if unhealthy != "" {
		if s.state.Trying == s.booted {
			a.say(contract.SPISlotLine{Slot: s.booted, State: "unconfirmed",
				Note: unhealthy + "; the next boot returns to slot " + s.state.Confirmed})
		}
		return
	}
	line, err := s.confirm()
	if err != nil {
		a.say(contract.Failed{Step: "spi slots", Reason: err.Error()})
		return
	}
	if line != nil {
		a.say(*line)
	}
}

// markPending is `ctld spi pending <slot>`: after a slot's region was
// written (flashrom's internal programmer on a real board), the next boot
// tries it once. It clears the slot's failed mark; the launcher still
// accepts only bytes whose SHA-256 it pins.
func markPending(v vendorVars, slot string) (contract.SPISlotLine, error) {
	if slot != contract.SlotA && slot != contract.SlotB {
		return contract.SPISlotLine{}, fmt.Errorf("slot %q: want a or b", slot)
	}
	st := contract.FactorySPISlots()
	data, err := v.get(contract.SPISlotsVar)
	switch {
	case err == nil:
		if st, err = contract.ParseSPISlots(data); err != nil {
			return contract.SPISlotLine{}, err
		}
	case !errors.Is(err, fs.ErrNotExist):
		return contract.SPISlotLine{}, fmt.Errorf("read %s: %w", contract.SPISlotsVar, err)
	}
	if st.Confirmed == slot {
		return contract.SPISlotLine{}, fmt.Errorf("slot %s is the confirmed slot: write the other one", slot)
	}
	st.Pending = slot
	delete(st.Failed, slot)
	if data, err = st.Encode(); err != nil {
		return contract.SPISlotLine{}, err
	}
	if err := v.set(contract.SPISlotsVar, contract.SPISlotsAttributes, data); err != nil {
		return contract.SPISlotLine{}, fmt.Errorf("write %s: %w", contract.SPISlotsVar, err)
	}
	return contract.SPISlotLine{Slot: slot, State: "pending", Note: "the next boot tries it once"}, nil
}

// failedTrial is the line for a trial that printed FAILED, or nil when the
// booted slot is not on trial (the confirmed slot stays up to be looked at:
// there is nothing better to boot).
func (s *spiSlots) failedTrial(failed error) *contract.SPISlotLine {
	if s == nil || s.state.Trying != s.booted {
		return nil
	}
	return &contract.SPISlotLine{Slot: s.booted, State: "unconfirmed",
		Note: fmt.Sprintf("FAILED: %v; rebooting to slot %s", failed, s.state.Confirmed)}
}
