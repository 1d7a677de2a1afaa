package flash

import (
	"bytes"
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/fwbuild/fwbuild/boardcfg"
)

// unitLayout is qemuLayout with a unit region nested in bios, as qemu-q35
// nests its own.
var unitLayout = []boardcfg.Region{
	{Name: "vpd", Start: 0, Size: 0x10000, Preserve: true},
	{Name: "bios", Start: 0x10000, Size: chipSize - 0x10000, Firmware: true},
	{Name: "unit", Start: 0x20000, Size: 0x10000, Unit: true},
}

// TestWriteSPIKeepsUnitRegion: re-flashing the firmware region (the
// default) writes the new image everywhere in it except the nested unit
// region, which keeps the chip's bytes (the unit's credentials).
func TestWriteSPIKeepsUnitRegion(t *testing.T) {
	fr := realFlashrom(t)
	chip, old := emulatedChip(t, 11, chipSize)
	img := bytes.Clone(randBytes(12, chipSize))
	for i := 0x20000; i < 0x30000; i++ {
		img[i] = 0xff // the build leaves the unit region erased
	}
	given := bytes.Clone(img)
	res, err := WriteSPI(context.Background(), SPIOptions{AnyImage: true, Flashrom: fr,
		Programmer: "dummy:emulate=W25Q128FV,image=" + chip, Image: img, Regions: unitLayout, BackupDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	got := readFile(t, chip)
	switch {
	case !bytes.Equal(got[0x20000:0x30000], old[0x20000:0x30000]):
		t.Error("the unit region was overwritten by a firmware flash")
	case !bytes.Equal(got[0x10000:0x20000], img[0x10000:0x20000]) || !bytes.Equal(got[0x30000:], img[0x30000:]):
		t.Error("the rest of the bios region does not hold the image")
	case !bytes.Equal(got[:0x10000], old[:0x10000]):
		t.Error("vpd was modified")
	case !bytes.Equal(img, given):
		t.Error("WriteSPI modified the caller's image")
	}
	if !reflect.DeepEqual(res.Written, []string{"bios"}) || !reflect.DeepEqual(res.Kept, []string{"unit"}) {
		t.Errorf("Written %v Kept %v", res.Written, res.Kept)
	}
}

// TestWriteSPIUnitRegionAlone: the unit region is written only when named
// with the override (what fwbuild provision does), and then alone, with
// flashrom's nested layout; without the override it is refused unread.
func TestWriteSPIUnitRegionAlone(t *testing.T) {
	fr := realFlashrom(t)
	chip, old := emulatedChip(t, 13, chipSize)
	img := randBytes(14, chipSize)
	o := SPIOptions{AnyImage: true, Flashrom: fr, Programmer: "dummy:emulate=W25Q128FV,image=" + chip,
		Image: img, Regions: unitLayout, Write: []string{"unit"}, BackupDir: t.TempDir()}
	_, err := WriteSPI(context.Background(), o)
	if e := asError(t, err); !strings.Contains(e.Msg, "it holds the unit's credential record") || !strings.Contains(e.Hint, "--overwrite-preserved unit") {
		t.Errorf("error %v", err)
	}
	if !bytes.Equal(readFile(t, chip), old) {
		t.Fatal("refused write changed the chip")
	}
	o.OverwritePreserved = []string{"unit"}
	var shown []PreservedLoss
	o.ConfirmOverwrite = func(l []PreservedLoss) error { shown = l; return nil }
	res, err := WriteSPI(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	got := readFile(t, chip)
	if !bytes.Equal(got[0x20000:0x30000], img[0x20000:0x30000]) || !bytes.Equal(got[:0x20000], old[:0x20000]) || !bytes.Equal(got[0x30000:], old[0x30000:]) {
		t.Error("want the image's unit region and the chip's bytes everywhere else")
	}
	if !reflect.DeepEqual(res.Written, []string{"unit"}) || len(shown) != 1 || shown[0].Region != "unit" || shown[0].ChipSHA256 != sha(old[0x20000:0x30000]) {
		t.Errorf("Written %v shown %+v", res.Written, shown)
	}
}
