package qemutests_test

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/fwbuild/fwbuild/contract"
	"github.com/fwbuild/fwbuild/internal/boottest"
	"github.com/fwbuild/fwbuild/internal/testdeps"
	"github.com/fwbuild/fwbuild/provision"
	qemutests "github.com/fwbuild/fwbuild/qemu-tests"
)

// provisionChip gives a flashed chip (flashrom's dummy programmer on its
// file) its credentials as the factory does: fwbuild provision writes only
// its unit region.
func provisionChip(t *testing.T, programmer, backups, serial string) provision.Result {
	t.Helper()
	res, err := provision.Provision(context.Background(), provision.Options{Board: testdeps.Board(t, "qemu-q35"),
		Serial: serial, Programmer: programmer, BackupDir: backups,
		// The test's chip starts as noise, which a firmware flash keeps in
		// the unit region: not a record, so it takes --force.
		Force: true})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// bootProvisioned boots a chip as the SPI path does, then types `ctld unit`
// on the control domain's shell after the status rows, and returns the
// serial and account count of ctld's unit line: ctld read the record from
// the chip through privcmd at the address the payload names.
func bootProvisioned(t *testing.T, chip string) (boottest.Report, []string) {
	t.Helper()
	bl := buildQ35(t)
	s := boottest.Spec{Board: testdeps.Board(t, "qemu-q35"), Comps: bl.comps, OutDir: bl.out, Path: qemutests.ChainSPI, WorkDir: t.TempDir(), Chip: chip}
	m, markers, err := boottest.Machine(s)
	if err != nil {
		t.Fatal(err)
	}
	markers[len(markers)-1].Then = "ctld unit\n"
	markers = append(markers, qemutests.Regexp("unit", contract.UnitLoadedPattern, qemutests.TimeoutReady))
	res, err := qemutests.Run(context.Background(), m, markers, qemutests.Options{
		LogPath: filepath.Join(s.WorkDir, "console-spi.log"),
		Abort:   regexp.MustCompile(contract.FailurePattern),
		OnMarker: func(m qemutests.Match) {
			t.Logf("%6.1fs %-10s %s", m.At.Seconds(), m.Marker.Name, strings.TrimPrefix(m.Line, "$ "))
		},
	})
	rep := boottest.Report{Path: s.Path, Result: res, LogPath: res.LogPath}
	if err != nil {
		t.Fatalf("boot: %v (log %s)", err, res.LogPath)
	}
	for _, mt := range res.Matches {
		switch mt.Marker.Name {
		case "ctld-ready":
			rep.ReadyAt = mt.At
		case "unit":
			return rep, mt.Values
		}
	}
	t.Fatalf("no unit line (log %s)", res.LogPath)
	return rep, nil
}
