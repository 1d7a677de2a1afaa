package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"

	"github.com/fwbuild/fwbuild/contract"
	"github.com/fwbuild/fwbuild/contract/update"
)

// The ESP's A/B payload slots (contract/slots.go). Every boot from the ESP
// records itself in the state file before anything else can fail; BootOrder
// always starts with the confirmed slot, so a new slot is tried exactly
// once, through BootNext, and whatever stops it before ctld confirms it (a
// reset, a crash that reboots, the FAILED path below) lands on the
// confirmed slot, which marks the other failed.
//
// What is handled: a reset or power loss before confirmation; a Xen or dom0
// crash (Xen reboots the machine; dom0 panics reboot with panic=); a control
// domain that prints FAILED (ctld reboots it itself); a hang before ctld
// confirms is not caught here (it needs a hardware or Xen watchdog, see
// the README).

// espStore is the mounted ESP.
type espStore interface {
	read(name string) ([]byte, error)
	// write replaces name with r's bytes: a temporary file, synced, renamed
	// over it only when r ended without error.
	write(name string, r io.Reader) error
}

// slotManager keeps the slots of one ESP.
type slotManager struct {
	esp     espStore
	vars    efiVars
	geo     espGeometry
	say     func(fmt.Stringer)
	version string // the running payload's
	board   string
	// minVersion is the profile's update.min_version (MAJOR.MINOR.PATCH,
	// "" for none): no artefact below it is installed, downgrade or not.
	minVersion string
	// guid is the board's fwupd/LVFS device GUID ("": the default one).
	guid string
}

// slotDesc is a slot's boot option description; ctld finds its options again by it.
func slotDesc(slot string) string { return "fwbuild slot " + slot }

// uefiPath is a slot file's path as a boot option names it.
func uefiPath(name string) string { return `\` + strings.ReplaceAll(name, "/", `\`) }

func (m *slotManager) state() (contract.Slots, error) {
	b, err := m.esp.read(contract.SlotsFile)
	if err != nil {
		return contract.Slots{}, fmt.Errorf("slots: %w", err)
	}
	return contract.ParseSlots(b)
}

func (m *slotManager) save(s contract.Slots) error {
	b, err := contract.EncodeSlots(s)
	if err != nil {
		return err
	}
	return m.esp.write(contract.SlotsFile, bytes.NewReader(b))
}

// entries finds both slots' boot options, creating the missing ones.
func (m *slotManager) entries() (map[string]uint16, error) {
	names, err := m.vars.names()
	if err != nil {
		return nil, fmt.Errorf("slots: list boot options: %w", err)
	}
	found := map[string]uint16{}
	used := map[uint16]bool{}
	for _, name := range names {
		n, ok := parseBootName(name)
		if !ok {
			continue
		}
		used[n] = true
		data, err := m.vars.get(name)
		if err != nil {
			continue
		}
		o, err := parseLoadOption(data)
		if err != nil {
			continue
		}
		for _, slot := range []string{contract.SlotA, contract.SlotB} {
			if o.Desc == slotDesc(slot) && strings.EqualFold(o.File, uefiPath(contract.SlotFile(slot))) && o.GUID == m.geo.GUID {
				found[slot] = n
			}
		}
	}
	// New options are numbered from 0x0F00, clear of the firmware's own.
	next := uint16(0x0F00)
	for _, slot := range []string{contract.SlotA, contract.SlotB} {
		if _, ok := found[slot]; ok {
			continue
		}
		for used[next] {
			next++
		}
		opt, err := loadOption(slotDesc(slot), m.geo, uefiPath(contract.SlotFile(slot)))
		if err != nil {
			return nil, err
		}
		if err := m.vars.set(bootName(next), opt); err != nil {
			return nil, fmt.Errorf("slots: write %s: %w", bootName(next), err)
		}
		found[slot], used[next] = next, true
	}
	return found, nil
}

// booted is the slot this boot started from. Without one of the slots'
// options in BootCurrent the firmware took the removable-media path, which
// holds the active slot's payload.
func (m *slotManager) booted(entries map[string]uint16, s contract.Slots) string {
	if cur, err := m.vars.get("BootCurrent"); err == nil && len(cur) == 2 {
		n := u16s(cur)[0]
		for slot, e := range entries {
			if e == n {
				return slot
			}
		}
	}
	return s.Active
}

// order makes BootOrder start with the active slot's option, then the other's.
func (m *slotManager) order(entries map[string]uint16, active string) error {
	var cur []uint16
	if b, err := m.vars.get("BootOrder"); err == nil {
		cur = u16s(b)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("slots: read BootOrder: %w", err)
	}
	want := []uint16{entries[active], entries[contract.Other(active)]}
	for _, n := range cur {
		if !slices.Contains(want[:2], n) {
			want = append(want, n)
		}
	}
	if slices.Equal(cur, want) {
		return nil
	}
	if err := m.vars.set("BootOrder", u16bytes(want)); err != nil {
		return fmt.Errorf("slots: write BootOrder: %w", err)
	}
	return nil
}

// atBoot records this boot and settles an unconfirmed attempt. It returns
// the slot this boot runs.
func (m *slotManager) atBoot() (string, error) {
	s, err := m.state()
	if err != nil {
		return "", err
	}
	entries, err := m.entries()
	if err != nil {
		return "", err
	}
	booted := m.booted(entries, s)
	s.Boots++
	var lines []fmt.Stringer
	if booted != s.Active {
		info := s.Slots[booted]
		if info.State == contract.SlotPending {
			info.State = contract.SlotTrying
			s.Slots[booted] = info
		}
		lines = append(lines, contract.SlotLine{Slot: booted, State: info.State, Version: info.Version,
			Note: fmt.Sprintf("boot %d tries it once; slot %s stays first in BootOrder until it is confirmed", s.Boots, s.Active)})
	} else {
		o := s.Slots[contract.Other(booted)]
		switch o.State {
		case contract.SlotPending, contract.SlotTrying:
			why := "booted and did not confirm"
			if o.State == contract.SlotPending {
				why = "was to be tried once and never reached the control domain"
			}
			o.State, o.Note = contract.SlotFailed, fmt.Sprintf("%s; back on slot %s at boot %d", why, booted, s.Boots)
			s.Slots[contract.Other(booted)] = o
			lines = append(lines, contract.SlotLine{Slot: contract.Other(booted), State: o.State, Version: o.Version, Note: o.Note})
		}
		lines = append(lines, contract.SlotLine{Slot: booted, State: s.Slots[booted].State, Version: s.Slots[booted].Version})
	}
	// The state is on disk before BootOrder changes and before anything
	// else this boot does can fail.
	if err := m.save(s); err != nil {
		return "", err
	}
	if err := m.order(entries, s.Active); err != nil {
		return "", err
	}
	for _, l := range lines {
		m.say(l)
	}
	return booted, nil
}

// confirm makes a slot that is being tried the active one, once the control
// domain is healthy; it is a no-op for the active slot.
func (m *slotManager) confirm(booted string) error {
	s, err := m.state()
	if err != nil {
		return err
	}
	info := s.Slots[booted]
	if info.State != contract.SlotTrying {
		return nil
	}
	info.State, info.Note = contract.SlotConfirmed, ""
	s.Slots[booted], s.Active = info, booted
	if err := m.save(s); err != nil {
		return err
	}
	entries, err := m.entries()
	if err != nil {
		return err
	}
	if err := m.order(entries, booted); err != nil {
		return err
	}
	// The removable-media path (firmware without our options, a cleared
	// variable store) gets the confirmed payload too.
	payload, err := m.esp.read(contract.SlotFile(booted))
	if err != nil {
		return fmt.Errorf("slots: %w", err)
	}
	if err := m.esp.write(contract.FallbackFile, bytes.NewReader(payload)); err != nil {
		return fmt.Errorf("slots: %w", err)
	}
	m.say(contract.SlotLine{Slot: booted, State: contract.SlotConfirmed, Version: info.Version})
	return nil
}

// failing is the FAILED path: a slot being tried that cannot bring the
// control domain up is given up at once; the caller reboots.
func (m *slotManager) failing(booted, step string) (bool, error) {
	s, err := m.state()
	if err != nil {
		return false, err
	}
	info := s.Slots[booted]
	if booted == s.Active || info.State != contract.SlotTrying {
		return false, nil
	}
	info.State, info.Note = contract.SlotFailed, fmt.Sprintf("control domain failed (%s) at boot %d; rebooting to slot %s", step, s.Boots, s.Active)
	s.Slots[booted] = info
	if err := m.save(s); err != nil {
		return false, err
	}
	m.say(contract.SlotLine{Slot: booted, State: info.State, Version: info.Version, Note: info.Note})
	return true, nil
}

// install checks an update artefact against the owner's certificate (nil:
// an unsigned build, which installs nothing) and this board, writes its ESP
// payload into the inactive slot and has the next boot try it once.
// Nothing of a refused artefact is written.
func (m *slotManager) install(r io.ReaderAt, size int64, owner *x509.Certificate, downgrade bool) (string, error) {
	if owner == nil {
		return "", errors.New("update: this payload carries no owner certificate: updates need a build signed with the owner's keys (fwbuild build --keys)")
	}
	a, err := update.Open(r, size, m.board, owner)
	if err != nil {
		return "", err
	}
	v, _ := update.ParseVersion(a.Header.Version)
	if floor, err := update.ParseVersion(m.minVersion); err == nil && v.Compare(floor) < 0 {
		return "", fmt.Errorf("update: %s is below this board's minimum version %s (update.min_version): refused, downgrade or not", v, floor)
	}
	if cur, err := update.ParseVersion(m.version); err == nil && v.Compare(cur) < 0 && !downgrade {
		return "", fmt.Errorf("update: %s is older than the running %s: refused (ask for a downgrade explicitly)", v, cur)
	}
	s, err := m.state()
	if err != nil {
		return "", err
	}
	entries, err := m.entries()
	if err != nil {
		return "", err
	}
	if booted := m.booted(entries, s); booted != s.Active {
		return "", fmt.Errorf("update: this boot runs slot %s, which is not confirmed yet: wait for it to be confirmed or reboot", booted)
	}
	part, info, err := a.Part(update.PartESP)
	if err != nil {
		return "", err
	}
	target := contract.Other(s.Active)
	if err := m.esp.write(contract.SlotFile(target), part); err != nil {
		return "", fmt.Errorf("update: slot %s: %w", target, err)
	}
	s.Slots[target] = contract.SlotInfo{State: contract.SlotPending, Version: v.String(), SHA256: info.SHA256, Size: info.Size}
	if err := m.save(s); err != nil {
		return "", err
	}
	if err := m.vars.set("BootNext", u16bytes([]uint16{entries[target]})); err != nil {
		return "", fmt.Errorf("update: write BootNext: %w", err)
	}
	m.say(contract.SlotLine{Slot: target, State: contract.SlotPending, Version: v.String(), Note: "the next boot tries it once"})
	return target, nil
}

// slotManagerFor is the slot manager of a mounted ESP, with the board and
// the running version from the command line.
func (a *agent) slotManagerFor(ctx context.Context, esp espStore, vars efiVars, geo espGeometry) (*slotManager, error) {
	cmdline, err := a.sys.readFile("/proc/cmdline")
	if err != nil {
		return nil, err
	}
	board, _ := contract.Param(string(cmdline), contract.BoardParam)
	version, _ := contract.ParseVersionArg(string(cmdline))
	floor, _ := contract.Param(string(cmdline), contract.MinVersionParam)
	return &slotManager{esp: esp, vars: vars, geo: geo, say: a.say, version: version, board: board, minVersion: floor,
		guid: contract.UpdateGUID(string(cmdline), board)}, nil
}

// bootPath is fwbuild.boot= from the command line: which payload runs.
func (a *agent) bootPath() string {
	cmdline, err := a.sys.readFile("/proc/cmdline")
	if err != nil {
		return ""
	}
	p, _ := contract.Param(string(cmdline), contract.BootParam)
	return p
}
