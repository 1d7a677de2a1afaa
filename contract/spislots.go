package contract

import (
	"errors"
	"fmt"
)

// Payload slots on the SPI path (the updates issue): two payload regions in
// the chip, a and b, and a UEFI non-volatile variable that the launcher (C,
// launcher/src/slots.c) and ctld (through efivarfs) both read and write. The
// launcher starts the confirmed slot, or a pending one once; before it
// starts a slot that is not the confirmed one it marks it trying, so a
// reset, a crash or a hang (with a watchdog) before ctld confirms it lands
// on the confirmed slot next time, and the unconfirmed slot is marked
// failed and never tried again by itself. A slot whose bytes the launcher
// refuses (blank, SHA-256 not the pinned one) is passed over for the other.

// SPISlotsGUID is the vendor GUID of the launcher's variables.
const SPISlotsGUID = "6f2a1c1e-3b8d-4e55-9a41-536c6f747320"

// SPISlotsVar is the slot state's variable (non-volatile, boot service and
// runtime access: SPISlotsAttributes); its data is SPISlots' encoding.
const SPISlotsVar = "FwbuildSpiSlots"

// SPISlotsAttributes are the state variable's attributes:
// NON_VOLATILE | BOOTSERVICE_ACCESS | RUNTIME_ACCESS.
const SPISlotsAttributes = 7

// SPIBootedVar is the volatile variable (BOOTSERVICE_ACCESS |
// RUNTIME_ACCESS) in which the launcher says which slot it started and why:
// two bytes, the slot letter and an SPIReason.
const SPIBootedVar = "FwbuildSpiBooted"

// SPISlotsSize is the state variable's length.
const SPISlotsSize = 8

// spiSlotsVersion is the first byte of the state variable.
const spiSlotsVersion = 1

// SPISlots is the slot state. Slots are "a" or "b"; "" is none.
//
// Encoding (8 bytes): version (1), confirmed, trying, pending (each the
// slot's ASCII letter or 0), failed (bit 0: a, bit 1: b), three zero bytes.
type SPISlots struct {
	// Confirmed is the slot that last reached health (a when the variable
	// is absent: the factory state).
	Confirmed string
	// Trying is a slot the launcher started that ctld has not confirmed.
	Trying string
	// Pending is a slot written in the field, to be tried once.
	Pending string
	// Failed are slots tried and never confirmed: not tried again until
	// written anew (which clears the mark and sets Pending).
	Failed map[string]bool
}

// SPIReason says why the launcher started the slot it started.
type SPIReason byte

const (
	SPIReasonConfirmed   SPIReason = 1 // the confirmed slot
	SPIReasonPending     SPIReason = 2 // a pending slot's one trial
	SPIReasonRefused     SPIReason = 3 // the preferred slot's bytes were refused
	SPIReasonUnconfirmed SPIReason = 4 // the preferred slot was tried and never confirmed, or failed before
)

func (r SPIReason) String() string {
	switch r {
	case SPIReasonConfirmed:
		return "confirmed"
	case SPIReasonPending:
		return "pending"
	case SPIReasonRefused:
		return "fallback-refused"
	case SPIReasonUnconfirmed:
		return "fallback-unconfirmed"
	}
	return fmt.Sprintf("reason-%d", byte(r))
}

// FactorySPISlots is the state before any boot wrote the variable.
func FactorySPISlots() SPISlots { return SPISlots{Confirmed: SlotA, Failed: map[string]bool{}} }

func slotByte(s string) (byte, error) {
	switch s {
	case "":
		return 0, nil
	case SlotA, SlotB:
		return s[0], nil
	}
	return 0, fmt.Errorf("spi slots: slot %q, want a, b or none", s)
}

func byteSlot(b byte, field string) (string, error) {
	switch b {
	case 0:
		return "", nil
	case 'a', 'b':
		return string(rune(b)), nil
	}
	return "", fmt.Errorf("spi slots: %s byte %#x, want 'a', 'b' or 0", field, b)
}

// Encode is the variable's data.
func (s SPISlots) Encode() ([]byte, error) {
	if s.Confirmed != SlotA && s.Confirmed != SlotB {
		return nil, fmt.Errorf("spi slots: confirmed slot %q, want a or b", s.Confirmed)
	}
	out := make([]byte, SPISlotsSize)
	out[0] = spiSlotsVersion
	for i, v := range []string{s.Confirmed, s.Trying, s.Pending} {
		b, err := slotByte(v)
		if err != nil {
			return nil, err
		}
		out[1+i] = b
	}
	for name, f := range s.Failed {
		if !f {
			continue
		}
		switch name {
		case SlotA:
			out[4] |= 1
		case SlotB:
			out[4] |= 2
		default:
			return nil, fmt.Errorf("spi slots: unknown failed slot %q", name)
		}
	}
	return out, nil
}

// ParseSPISlots reads the variable's data, as strictly as the launcher does
// (which treats anything else as the factory state).
func ParseSPISlots(b []byte) (SPISlots, error) {
	if len(b) != SPISlotsSize {
		return SPISlots{}, fmt.Errorf("spi slots: %d bytes, want %d", len(b), SPISlotsSize)
	}
	if b[0] != spiSlotsVersion {
		return SPISlots{}, fmt.Errorf("spi slots: version %d, want %d", b[0], spiSlotsVersion)
	}
	if b[4]&^3 != 0 || b[5] != 0 || b[6] != 0 || b[7] != 0 {
		return SPISlots{}, errors.New("spi slots: reserved bits set")
	}
	var s SPISlots
	var err error
	if s.Confirmed, err = byteSlot(b[1], "confirmed"); err != nil {
		return SPISlots{}, err
	}
	if s.Confirmed == "" {
		return SPISlots{}, errors.New("spi slots: no confirmed slot")
	}
	if s.Trying, err = byteSlot(b[2], "trying"); err != nil {
		return SPISlots{}, err
	}
	if s.Pending, err = byteSlot(b[3], "pending"); err != nil {
		return SPISlots{}, err
	}
	s.Failed = map[string]bool{SlotA: b[4]&1 != 0, SlotB: b[4]&2 != 0}
	return s, nil
}

// Confirm is the state after slot booted and reached health: it is the
// confirmed slot, neither trying, pending nor failed.
func (s SPISlots) Confirm(slot string) SPISlots {
	out := SPISlots{Confirmed: slot, Pending: s.Pending, Failed: map[string]bool{}}
	for k, v := range s.Failed {
		out.Failed[k] = v && k != slot
	}
	if out.Pending == slot {
		out.Pending = ""
	}
	return out
}

// ParseSPIBooted reads SPIBootedVar's data.
func ParseSPIBooted(b []byte) (string, SPIReason, error) {
	if len(b) != 2 {
		return "", 0, fmt.Errorf("spi booted: %d bytes, want 2", len(b))
	}
	s, err := byteSlot(b[0], "booted")
	if err != nil || s == "" {
		return "", 0, fmt.Errorf("spi booted: slot byte %#x", b[0])
	}
	r := SPIReason(b[1])
	if r < SPIReasonConfirmed || r > SPIReasonUnconfirmed {
		return "", 0, fmt.Errorf("spi booted: reason %d", b[1])
	}
	return s, r, nil
}

// LauncherSlotPattern matches the launcher's starting line on a board with
// two payload slots (it also matches LauncherStartingPattern); it captures
// the hash, the slot started and why.
const LauncherSlotPattern = LauncherPrefix + `starting payload .* sha256 ([0-9a-f]{64}) from slot ([ab]): (.+)`

// The launcher's reasons, as LauncherSlotPattern's third group starts.
const (
	LauncherWhyConfirmed   = "confirmed slot"
	LauncherWhyPending     = "pending slot, trial boot"
	LauncherWhyRefused     = "slot %s refused: "                 // then what the launcher found
	LauncherWhyUnconfirmed = "slot %s tried and never confirmed" // marked failed now
	LauncherWhyFailed      = "slot %s failed before"             // marked failed on an earlier boot
)

// SPISlotLine is ctld's line for the SPI slots: at boot (State "booted",
// Note the launcher's reason and the failed slots) and on confirmation
// (State "confirmed"): fwbuild-ctld: spi slot <slot> <state>[: <note>].
type SPISlotLine struct {
	Slot, State, Note string
}

func (l SPISlotLine) String() string {
	s := CtldPrefix + "spi slot " + l.Slot + " " + l.State
	if l.Note != "" {
		s += ": " + OneLine(l.Note)
	}
	return s
}

// SPISlotPattern matches ctld's SPI slot line for a state; it captures the
// slot and the note.
func SPISlotPattern(state string) string {
	return CtldPrefix + "spi slot ([ab]) " + state + `(?:: (.*))?`
}
