package contract

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Payload slots on the ESP (the updates issue): two payload files with a
// UEFI boot entry each, and a state file that every boot reads and writes.
// A new payload goes into the inactive slot and is tried once through
// BootNext, which the firmware clears before it starts the option; ctld
// makes it the first in BootOrder only once the control domain is healthy.
// A slot that booted and did not confirm is marked failed and never tried
// again automatically; BootOrder still names the confirmed slot first, so a
// reset, a crash or a hang before confirmation lands there by itself.

// The two slots.
const (
	SlotA = "a"
	SlotB = "b"
)

// ESPPartitionName is the GPT partition name of the ESP fwbuild writes,
// which ctld finds its slots on.
const ESPPartitionName = "fwbuild-esp"

// ESPMount is where ctld mounts the ESP it booted from, read-write (an
// update copied onto the key is at ESPMount/<file> on the shell).
const ESPMount = "/run/fwbuild/esp"

// SlotFile is a slot's payload on the ESP (FAT path, '/'-separated; UEFI
// spells it with '\').
func SlotFile(slot string) string { return "EFI/fwbuild/slot-" + slot + ".efi" }

// UnitFile is the unit record on the ESP (contract/unit's framing, signed):
// where `fwbuild provision --image usb.img` puts it for a unit that boots
// from removable media and has no unit region in flash. ctld reads it only
// when the flash holds no record, and accepts it only signed by the owner:
// anyone can rewrite a USB key.
const UnitFile = "EFI/fwbuild/unit.rec"

// SlotsFile is the slots' state on the ESP.
const SlotsFile = "EFI/fwbuild/slots.json"

// FallbackFile is the removable-media path firmware boots without a boot
// entry; it holds the last confirmed payload.
const FallbackFile = "EFI/BOOT/BOOTX64.EFI"

// Slot states.
const (
	SlotEmpty     = "empty"
	SlotConfirmed = "confirmed" // booted and reached health; the active slot
	SlotPending   = "pending"   // written, BootNext set, not booted yet
	SlotTrying    = "trying"    // booted once, not confirmed yet
	SlotFailed    = "failed"    // booted and never confirmed, or refused
)

// SlotInfo is one slot's record.
type SlotInfo struct {
	State   string `json:"state"`
	Version string `json:"version,omitempty"`
	SHA256  string `json:"sha256,omitempty"`
	Size    int64  `json:"size,omitempty"`
	// Note says why a slot failed, for the inventory.
	Note string `json:"note,omitempty"`
}

// Slots is the state file's content.
type Slots struct {
	// Active is the confirmed slot BootOrder starts with.
	Active string              `json:"active"`
	Slots  map[string]SlotInfo `json:"slots"`
	// Boots counts ctld's boots: every boot writes the file once before
	// anything else, so a slot's attempt is on disk before it can fail.
	Boots int `json:"boots"`
}

// Other is the slot that is not s.
func Other(s string) string {
	if s == SlotA {
		return SlotB
	}
	return SlotA
}

// Validate checks a state file's content.
func (s Slots) Validate() error {
	if s.Active != SlotA && s.Active != SlotB {
		return fmt.Errorf("slots: active slot %q, want a or b", s.Active)
	}
	for name, info := range s.Slots {
		if name != SlotA && name != SlotB {
			return fmt.Errorf("slots: unknown slot %q", name)
		}
		switch info.State {
		case SlotEmpty, SlotConfirmed, SlotPending, SlotTrying, SlotFailed:
		default:
			return fmt.Errorf("slots: slot %s: unknown state %q", name, info.State)
		}
	}
	if s.Slots[s.Active].State != SlotConfirmed {
		return fmt.Errorf("slots: active slot %s is %q, not confirmed", s.Active, s.Slots[s.Active].State)
	}
	return nil
}

// EncodeSlots is the state file's bytes.
func EncodeSlots(s Slots) ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// ParseSlots reads the state file.
func ParseSlots(b []byte) (Slots, error) {
	var s Slots
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return Slots{}, fmt.Errorf("slots: %w", err)
	}
	return s, s.Validate()
}

// SlotLine is ctld's line for a slot's state change:
// fwbuild-ctld: slot <slot> <state> version=<v>[: <note>].
type SlotLine struct {
	Slot, State, Version, Note string
}

func (l SlotLine) String() string {
	s := fmt.Sprintf(CtldPrefix+"slot %s %s version=%s", l.Slot, l.State, l.Version)
	if l.Note != "" {
		s += ": " + OneLine(l.Note)
	}
	return s
}

// SlotPattern matches a slot line for one slot and state; its group is the version.
func SlotPattern(slot, state string) string {
	return CtldPrefix + "slot " + slot + " " + state + ` version=([^\s:]+)`
}
