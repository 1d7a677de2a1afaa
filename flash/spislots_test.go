package flash

import (
	"bytes"
	"context"
	"reflect"
	"testing"

	"github.com/fwbuild/fwbuild/boardcfg"
)

// On a board with two payload slots, `fwbuild flash spi --region payload-b`
// writes slot b's region only: slot a, the rest of the BIOS region and the
// factory data keep the chip's bytes (real flashrom, dummy programmer).
func TestWriteSPIOnePayloadSlot(t *testing.T) {
	fr := realFlashrom(t)
	layout := []boardcfg.Region{
		{Name: "vpd", Start: 0, Size: 0x10000, Preserve: true},
		{Name: "bios", Start: 0x10000, Size: chipSize - 0x10000, Firmware: true},
		{Name: "payload-a", Start: 0x100000, Size: 0x400000, Payload: true, Slot: "a"},
		{Name: "payload-b", Start: 0x500000, Size: 0x400000, Payload: true, Slot: "b"},
	}
	chip, old := emulatedChip(t, 3, chipSize)
	img := randBytes(4, chipSize)
	res, err := WriteSPI(context.Background(), SPIOptions{AnyImage: true, Flashrom: fr,
		Programmer: "dummy:emulate=W25Q128FV,image=" + chip, Image: img, Regions: layout,
		Write: []string{"payload-b"}, BackupDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	got := readFile(t, chip)
	if !bytes.Equal(got[0x500000:0x900000], img[0x500000:0x900000]) {
		t.Error("slot b's region does not hold the image's bytes")
	}
	if !bytes.Equal(got[:0x500000], old[:0x500000]) || !bytes.Equal(got[0x900000:], old[0x900000:]) {
		t.Error("bytes outside slot b's region changed (slot a, the BIOS region or the factory data)")
	}
	if !reflect.DeepEqual(res.Written, []string{"payload-b"}) || res.Verified["payload-b"] != sha(img[0x500000:0x900000]) {
		t.Errorf("Written %v Verified %v, want payload-b only", res.Written, res.Verified)
	}
}
