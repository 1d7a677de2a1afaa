package qemutests_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/contract"
	"github.com/fwbuild/fwbuild/internal/boottest"
	qemutests "github.com/fwbuild/fwbuild/qemu-tests"
)

// Two payload slots on the SPI path (board qemu-q35-spislots): the factory
// chip holds the same payload in both regions and the layout names both;
// with slot a's region damaged (one byte flipped) the launcher starts slot
// b and its line says why, ctld reports slot b as booted, and once the
// control domain is healthy confirms it in the variable the next boot
// reads. One build and one boot.
func TestSPISlotFallback(t *testing.T) {
	fb := buildForFlash(t, "qemu-q35-spislots")
	b, out, comps, payload, pinned := fb.board, fb.out, fb.comps, fb.payload, fb.pinned
	ctx := context.Background()
	chip, err := os.ReadFile(filepath.Join(out, "spi.bin"))
	if err != nil {
		t.Fatal(err)
	}
	layout, err := os.ReadFile(filepath.Join(out, "spi.layout"))
	if err != nil {
		t.Fatal(err)
	}
	slots := b.Outputs.SPI.PayloadSlots()
	if len(slots) != 2 {
		t.Fatalf("board has %d payload slots, want 2", len(slots))
	}
	for _, r := range slots {
		if got := chip[r.Start : uint64(r.Start)+uint64(len(payload))]; !bytes.Equal(got, payload) {
			t.Errorf("slot %s (region %s at %#x) does not hold the built payload", r.Slot, r.Name, uint64(r.Start))
		}
		rest := chip[uint64(r.Start)+uint64(len(payload)) : r.Start+r.Size]
		if i := slices.IndexFunc(rest, func(c byte) bool { return c != 0xFF }); i >= 0 {
			t.Errorf("slot %s: byte %#x after the payload is %#x, not erased", r.Slot, len(payload)+i, rest[i])
		}
		line := fmt.Sprintf("%08x:%08x %s\n", uint64(r.Start), uint64(r.End()), r.Name)
		if !strings.Contains(string(layout), line) {
			t.Errorf("spi.layout does not name slot %s as %q:\n%s", r.Slot, strings.TrimSpace(line), layout)
		}
	}
	t.Logf("payload %d bytes in two slots of %d bytes (%.0f%% headroom)", len(payload), uint64(slots[0].Size),
		100*float64(uint64(slots[0].Size)-uint64(len(payload)))/float64(uint64(slots[0].Size)))

	logf := func(m qemutests.Match) { t.Logf("%6.1fs %-18s %s", m.At.Seconds(), m.Marker.Name, m.Line) }
	trialAndReset(t, boottest.Spec{Board: b, Comps: comps, OutDir: out, Path: qemutests.ChainSPI, WorkDir: t.TempDir()}, pinned, logf)

	// Slot a damaged.
	chip[uint64(slots[0].Start)+uint64(len(payload))/2] ^= 0x10
	bad := filepath.Join(t.TempDir(), "spi-a-damaged.bin")
	if err := os.WriteFile(bad, chip, 0o644); err != nil {
		t.Fatal(err)
	}
	m, markers, err := boottest.Machine(boottest.Spec{Board: b, Comps: comps, OutDir: out, Path: qemutests.ChainSPI, WorkDir: t.TempDir(), Chip: bad})
	if err != nil {
		t.Fatal(err)
	}
	// The chain up to the ready line, with the launcher's slot line first,
	// then ctld's two slot lines.
	ready := slices.IndexFunc(markers, func(m qemutests.Marker) bool { return m.Name == "ctld-ready" })
	markers = markers[:ready+1]
	markers[ready].Then = ""
	markers[0] = qemutests.Regexp("launcher-slot", contract.LauncherSlotPattern, qemutests.TimeoutFirmware)
	markers = append(markers,
		qemutests.Regexp("spi-slot-booted", contract.SPISlotPattern("booted"), qemutests.TimeoutReady),
		qemutests.Regexp("spi-slot-confirmed", contract.SPISlotPattern("confirmed"), 2*qemutests.TimeoutReady))
	res, err := qemutests.Run(ctx, m, markers, qemutests.Options{LogPath: filepath.Join(t.TempDir(), "console.log"),
		OnMarker: logf})
	if err != nil {
		t.Fatal(err)
	}
	v := res.Matches[0].Values
	if v[0] != pinned || v[1] != "b" || !strings.HasPrefix(v[2], "slot a refused: SHA-256 mismatch: pinned "+pinned+", found ") {
		t.Errorf("launcher line %q: want slot b with the pinned hash, because slot a's SHA-256 does not match", res.Matches[0].Line)
	}
	booted := res.Matches[ready+1].Values
	if booted[0] != "b" || !strings.Contains(booted[1], "launcher: "+contract.SPIReasonRefused.String()) || !strings.Contains(booted[1], "trying=b") {
		t.Errorf("ctld's boot line %q: want slot b, started because a was refused, trying", res.Matches[ready+1].Line)
	}
	if c := res.Matches[ready+2].Values; c[0] != "b" || c[1] != "was a" {
		t.Errorf("ctld's confirmation %q: want slot b, was a", res.Matches[ready+2].Line)
	}
}

// trialAndReset is three boots of one QEMU run (a reset keeps OVMF's
// emulated variable store, which lives in RAM with -bios): slot a boots as
// the confirmed slot; `ctld spi pending b` and `ctld reboot`; the launcher
// starts b's trial, and a reset right then (QEMU's system_reset, as soon as
// the launcher's line is out: long before ctld could confirm it) brings the
// machine back to slot a, with b marked failed.
func trialAndReset(t *testing.T, s boottest.Spec, pinned string, logf func(qemutests.Match)) {
	t.Helper()
	m, chain, err := boottest.Machine(s)
	if err != nil {
		t.Fatal(err)
	}
	// QEMU resets the machine on a reboot instead of exiting (-no-reboot),
	// and takes system_reset on a monitor socket.
	mon := filepath.Join(t.TempDir(), "mon.sock")
	m.Args = append(m.Args, "-action", "reboot=reset", "-monitor", "unix:"+mon+",server=on,wait=off")
	ready := slices.IndexFunc(chain, func(m qemutests.Marker) bool { return m.Name == "ctld-ready" })
	launcher := func(n int) qemutests.Marker {
		return qemutests.Regexp(fmt.Sprintf("launcher-slot-%d", n), contract.LauncherSlotPattern, qemutests.TimeoutFirmware)
	}
	boot := func(n int, then string) []qemutests.Marker {
		ms := slices.Clone(chain[:ready+1])
		for i := range ms {
			ms[i].Name = fmt.Sprintf("%s-%d", ms[i].Name, n)
			ms[i].Then = ""
		}
		ms[0] = launcher(n)
		booted := qemutests.Regexp(fmt.Sprintf("spi-slot-booted-%d", n), contract.SPISlotPattern("booted"), qemutests.TimeoutReady)
		booted.Then = then
		return append(ms, booted)
	}
	markers := boot(1, "ctld spi pending b\n")
	pending := qemutests.Regexp("spi-slot-pending", contract.SPISlotPattern("pending"), qemutests.TimeoutReady)
	pending.Then = "ctld reboot\n"
	markers = append(markers, pending, launcher(2))
	markers = append(markers, boot(3, "")...)
	var resetErr error
	onMarker := func(mt qemutests.Match) {
		logf(mt)
		if mt.Marker.Name == "launcher-slot-2" {
			c, err := net.Dial("unix", mon)
			if err == nil {
				_, err = c.Write([]byte("system_reset\n"))
				time.Sleep(200 * time.Millisecond) // let the monitor read it before the close
				c.Close()
			}
			resetErr = err
		}
	}
	res, err := qemutests.Run(context.Background(), m, markers, qemutests.Options{LogPath: filepath.Join(t.TempDir(), "console.log"), OnMarker: onMarker})
	if resetErr != nil {
		t.Fatalf("system_reset on QEMU's monitor: %v", resetErr)
	}
	if err != nil {
		t.Fatal(err)
	}
	find := func(name string) qemutests.Match {
		i := slices.IndexFunc(res.Matches, func(m qemutests.Match) bool { return m.Marker.Name == name })
		return res.Matches[i]
	}
	for _, c := range []struct {
		n         int
		slot, why string
	}{
		{1, "a", contract.LauncherWhyConfirmed},
		{2, "b", contract.LauncherWhyPending},
		{3, "a", fmt.Sprintf(contract.LauncherWhyUnconfirmed, "b")},
	} {
		l := find(fmt.Sprintf("launcher-slot-%d", c.n))
		if v := l.Values; v[0] != pinned || v[1] != c.slot || v[2] != c.why {
			t.Errorf("boot %d: launcher line %q: want slot %s: %s", c.n, l.Line, c.slot, c.why)
		}
	}
	for n, want := range map[int]string{
		1: "launcher: confirmed; confirmed=a trying=none failed=none",
		3: "launcher: fallback-unconfirmed; confirmed=a trying=none failed=b",
	} {
		bl := find(fmt.Sprintf("spi-slot-booted-%d", n))
		if v := bl.Values; v[0] != "a" || v[1] != want {
			t.Errorf("boot %d: ctld's line %q: want slot a: %s", n, bl.Line, want)
		}
	}
	log, err := os.ReadFile(res.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(log), "spi slot b confirmed") {
		t.Error("the trial of slot b was confirmed: the reset did not come first")
	}
}
