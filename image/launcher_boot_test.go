package image

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/boardcfg"
	"github.com/fwbuild/fwbuild/contract"
	"github.com/fwbuild/fwbuild/internal/testdeps"
	"github.com/fwbuild/fwbuild/launcher"
	qemutests "github.com/fwbuild/fwbuild/qemu-tests"
)

// The payload: volume placement: the real launcher, pinned to a small
// payload stored as an FFS file in stock OVMF's DXE volume, finds it
// through the firmware volume protocol, checks its hash and has the boot
// manager start it (a GRUB app that prints bootMarker; without the launcher
// OVMF would start its Shell). Stock OVMF otherwise, on a 16 MiB chip.
func TestBootLauncherFromVolume(t *testing.T) {
	needTool(t, "qemu-system-x86_64", "qemu-system-x86")
	app := grubTestApp(t)
	pin := launcher.Pin{Source: launcher.FromFile, Size: uint64(len(app)), SHA256: launcher.PayloadHash(app), Description: "fwbuild test"}
	var err error
	if pin.File, err = launcher.GUIDBytes(launcher.PayloadFileGUID); err != nil {
		t.Fatal(err)
	}
	pe, err := launcher.Build(context.Background(), launcher.Spec{Pin: pin, GnuEFI: testdeps.Root(t, "gnu-efi"), TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	drv, err := launcher.FFS(pe)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := launcher.PayloadFFS(app)
	if err != nil {
		t.Fatal(err)
	}
	const chipSize = 16 << 20
	chip, rep, err := BuildSPIReport(context.Background(), SPISpec{
		ChipSize:     chipSize,
		Regions:      []boardcfg.Region{{Name: "bios", Start: 0, Size: chipSize, Firmware: true}},
		BaseFirmware: ovmfCode(t),
		Insert:       [][]byte{drv, payload},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Inserted) != 2 {
		t.Fatalf("inserted %+v, want the launcher and the payload file", rep.Inserted)
	}
	img := filepath.Join(t.TempDir(), "spi.bin")
	if err := os.WriteFile(img, chip, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := qemutests.Run(context.Background(), qemutests.Machine{Firmware: qemutests.BIOS(img)}, []qemutests.Marker{
		qemutests.Regexp("launcher", contract.LauncherStartingPattern, time.Minute),
		qemutests.Substring("boot", bootMarker, time.Minute),
	}, qemutests.Options{LogPath: filepath.Join(t.TempDir(), "console.log")})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Matches[0].Values[0]; got != hexSum(app) {
		t.Errorf("launcher started sha256 %s, want the payload's %s", got, hexSum(app))
	}
	if !bytes.Contains([]byte(res.Matches[0].Line), []byte("payload file")) {
		t.Errorf("launcher line %q does not say it read a payload file", res.Matches[0].Line)
	}
}

func hexSum(b []byte) string {
	h := launcher.PayloadHash(b)
	const digits = "0123456789abcdef"
	out := make([]byte, 64)
	for i, c := range h {
		out[2*i], out[2*i+1] = digits[c>>4], digits[c&15]
	}
	return string(out)
}
