package qemutests_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fwbuild/fwbuild/contract"
	"github.com/fwbuild/fwbuild/internal/boottest"
	qemutests "github.com/fwbuild/fwbuild/qemu-tests"
)

// The launcher on an edk2 build it was not written against (Debian's 2 MiB
// OVMF.fd, board qemu-q35-ovmf2m): the chip boots to ctld's ready line
// through it, and the same chip with one byte of its payload region flipped
// boots to the platform's own boot order (OVMF's UEFI Shell) after the
// launcher's one line naming the hash mismatch.
func TestLauncherOnOVMF2M(t *testing.T) {
	fb := buildForFlash(t, "qemu-q35-ovmf2m")
	b, out, comps, payload, pinned := fb.board, fb.out, fb.comps, fb.payload, fb.pinned
	ctx := context.Background()
	logf := qemutests.Options{OnMarker: func(m qemutests.Match) { t.Logf("%6.1fs %-16s %s", m.At.Seconds(), m.Marker.Name, m.Line) }}

	// Good chip: the chain up to the ready line (the guests are qemu-q35's, tested there).
	m, markers, err := boottest.Machine(boottest.Spec{Board: b, Comps: comps, OutDir: out, Path: qemutests.ChainSPI, WorkDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ready := slices.IndexFunc(markers, func(m qemutests.Marker) bool { return m.Name == "ctld-ready" })
	markers = markers[:ready+1]
	markers[ready].Then = ""
	opts := logf
	opts.LogPath = filepath.Join(t.TempDir(), "good.log")
	res, err := qemutests.Run(ctx, m, markers, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Matches[0].Values[0]; got != pinned {
		t.Errorf("launcher started a payload with sha256 %s, want the built payload's %s", got, pinned)
	}
	if _, err := contract.ParseReady(res.Matches[ready].Line); err != nil {
		t.Error(err)
	}

	// One flipped byte in the payload region.
	chip, err := os.ReadFile(filepath.Join(out, "spi.bin"))
	if err != nil {
		t.Fatal(err)
	}
	reg, _ := b.Outputs.SPI.PayloadRegion()
	chip[uint64(reg.Start)+uint64(len(payload))/2] ^= 0x10
	bad := filepath.Join(t.TempDir(), "spi-flipped.bin")
	if err := os.WriteFile(bad, chip, 0o644); err != nil {
		t.Fatal(err)
	}
	res, _ = fallsBack(t, boottest.Spec{Board: b, Comps: comps, OutDir: out, Path: qemutests.ChainSPI, WorkDir: t.TempDir(), Chip: bad},
		contract.LauncherHashMismatchPattern, logf)
	v := res.Matches[0].Values
	if v[0] != pinned || v[1] == pinned {
		t.Errorf("launcher's mismatch line: pinned %s found %s; want pinned %s and a different found hash", v[0], v[1], pinned)
	}

	// An erased payload region (a chip flashed without it) is named as such.
	for i := uint64(reg.Start); i < uint64(reg.Start)+uint64(reg.Size); i++ {
		chip[i] = 0xFF
	}
	blank := filepath.Join(t.TempDir(), "spi-blank.bin")
	if err := os.WriteFile(blank, chip, 0o644); err != nil {
		t.Fatal(err)
	}
	res, logPath := fallsBack(t, boottest.Spec{Board: b, Comps: comps, OutDir: out, Path: qemutests.ChainSPI, WorkDir: t.TempDir(), Chip: blank},
		contract.LauncherFailedPattern, logf)
	if !strings.Contains(res.Matches[0].Line, "no payload: the region is blank") {
		t.Errorf("launcher line %q does not say the payload region is blank (log %s)", res.Matches[0].Line, logPath)
	}
}

// fallsBack boots s's chip and waits for the launcher's line matching
// refused, then for the platform's own boot order (OVMF's UEFI Shell).
func fallsBack(t *testing.T, s boottest.Spec, refused string, opts qemutests.Options) (qemutests.Result, string) {
	t.Helper()
	m, _, err := boottest.Machine(s)
	if err != nil {
		t.Fatal(err)
	}
	opts.LogPath = filepath.Join(t.TempDir(), "console.log")
	res, err := qemutests.Run(context.Background(), m, []qemutests.Marker{
		qemutests.Regexp("launcher-refused", refused, qemutests.TimeoutFirmware),
		qemutests.Substring("platform-boot", "UEFI Interactive Shell", qemutests.TimeoutFirmware),
	}, opts)
	if err != nil {
		t.Fatal(err)
	}
	return res, opts.LogPath
}
