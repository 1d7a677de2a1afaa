package image

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/fwbuild/fwbuild/boardcfg"
)

// slotPE returns the PE32 section data of the slot file in a chip image.
func slotPE(t testing.TB, chip []byte, slot string) []byte {
	t.Helper()
	n, err := inspectFirmware(chip)
	if err != nil {
		t.Fatal(err)
	}
	if n.find("file", slot) == nil {
		t.Fatalf("slot file %s not in image", slot)
	}
	var pe []byte
	err = withFiano(pinnedXZ, func(l *fianoLogger) error {
		// Parse the chip from its firmware volumes on; the slot's PE32 is
		// the payload as fiano reads it back.
		tr, err := openSlot(&spiPlan{region: chip, slot: mustGUID(t, slot)}, l)
		if err != nil {
			return err
		}
		pe = append([]byte(nil), tr.pe.Buf()[4:]...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return pe
}

func TestBuildSPISynthetic(t *testing.T) {
	s := synthSpec(t, nil)
	budget, err := SlotBudget(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	// Slot volume = grown volume 0x30000-0x4000 bytes, data from 0x60;
	// the other file (24+4+100 bytes) follows the slot at an 8-byte
	// boundary; the slot file is header 24 + PE32 section 4 + payload,
	// then the UI section (4 + 12) at a 4-byte boundary.
	const fvLen = 0x30000 - 0x4000
	var want int64
	for n := int64(0); ; n++ {
		slotEnd := 0x60 + 24 + (4+n+3)&^3 + 16
		if (slotEnd+7)&^7+128 > fvLen {
			break
		}
		want = n
	}
	if budget != want {
		t.Fatalf("budget %d, want %d by the PI spec layout", budget, want)
	}
	s.Payload = minimalPE(int(budget))
	chip, err := BuildSPI(context.Background(), s)
	if err != nil {
		t.Fatalf("payload of exactly the budget: %v", err)
	}
	if len(chip) != 0x40000 {
		t.Fatalf("chip is %#x bytes", len(chip))
	}
	if !bytes.HasPrefix(chip, []byte("factory\xff")) {
		t.Errorf("data region does not start with its fill")
	}
	if !bytes.Equal(chip[0x40000-0x4000:], s.BaseFirmware[0xC000:]) {
		t.Errorf("top volume changed or moved")
	}
	if got := slotPE(t, chip, shellGUID); !bytes.Equal(got, s.Payload) {
		t.Errorf("slot holds %d bytes, not the payload (%d)", len(got), len(s.Payload))
	}
	fvs := topLevelFVs(chip)
	if len(fvs) != 2 || fvs[0].Offset != 0x10000 || fvs[0].Length != fvLen || fvs[1].Offset != 0x3C000 {
		t.Errorf("volumes after build: %+v", fvs)
	}

	s.Payload = minimalPE(int(budget) + 1)
	_, err = BuildSPI(context.Background(), s)
	var be *BudgetError
	if !errors.As(err, &be) || be.Overflow() != 1 || !be.Exact || be.Budget != budget {
		t.Fatalf("payload 1 byte over budget: err %v (%#v)", err, be)
	}
}

func TestBuildSPINoGrow(t *testing.T) {
	s := synthSpec(t, minimalPE(5000))
	s.GrowFV = ""
	chip, err := BuildSPI(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	// Base at the top of the region, erased below it.
	base := 0x40000 - len(s.BaseFirmware)
	if !bytes.Equal(chip[0x10000:base], bytes.Repeat([]byte{0xFF}, base-0x10000)) {
		t.Errorf("region below the base firmware is not erased")
	}
	fvs := topLevelFVs(chip)
	if len(fvs) != 2 || fvs[0].Offset != base || fvs[0].Length != 0xC000 {
		t.Errorf("volumes: %+v", fvs)
	}
	if got := slotPE(t, chip, shellGUID); !bytes.Equal(got, s.Payload) {
		t.Errorf("slot does not hold the payload")
	}
}

func TestBuildSPIErrors(t *testing.T) {
	pe := minimalPE(1000)
	cases := []struct {
		name string
		edit func(*SPISpec)
		want string
	}{
		{"not UEFI", func(s *SPISpec) { s.BaseFirmware = bytes.Repeat([]byte("junk"), 4096) }, "not a UEFI image"},
		{"empty base", func(s *SPISpec) { s.BaseFirmware = nil }, "base firmware is empty"},
		{"no slot file", func(s *SPISpec) { s.SlotFile = "01234567-89AB-CDEF-0123-456789ABCDEF" }, "has no file 01234567-89AB-CDEF-0123-456789ABCDEF"},
		{"no grow volume", func(s *SPISpec) { s.GrowFV = "01234567-89AB-CDEF-0123-456789ABCDEF" }, "no top-level volume 01234567-89AB-CDEF-0123-456789ABCDEF"},
		{"grow volume not first", func(s *SPISpec) { s.GrowFV = synthSec }, "only a volume at offset 0"},
		{"bad guid", func(s *SPISpec) { s.SlotFile = "Shell" }, `slot file "Shell" is not a GUID`},
		{"payload not PE", func(s *SPISpec) { s.Payload = []byte("MZ not really") }, "not a PE32 EFI image"},
		{"base too big", func(s *SPISpec) { s.Regions[1].Size, s.Regions[1].Start, s.ChipSize = 0x8000, 0x10000, 0x18000 }, "larger than firmware region"},
		{"overlap", func(s *SPISpec) { s.Regions[0].Size = 0x11000 }, "overlap"},
		{"unaligned", func(s *SPISpec) { s.Regions[0].Size = 0x10800; s.Regions[1].Start = 0x10800 }, "erase block"},
		{"no firmware region", func(s *SPISpec) { s.Regions[1].Firmware = false }, "no region is marked as firmware"},
		{"preserved with fill", func(s *SPISpec) { s.Regions[0].Preserve = true }, "is preserved"},
		{"outside chip", func(s *SPISpec) { s.ChipSize = 0x30000 }, "does not fit"},
		{"space in name", func(s *SPISpec) { s.Regions[0].Name = "my data" }, "region name"},
		{"slot without PE32", func(s *SPISpec) { s.SlotFile = "AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE" }, "has no PE32 section"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := synthSpec(t, pe)
			c.edit(&s)
			_, err := BuildSPI(context.Background(), s)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got error %v, want one containing %q", err, c.want)
			}
			if !strings.HasPrefix(err.Error(), "image: ") {
				t.Errorf("error %q does not name the package", err)
			}
		})
	}
}

// TestBuildSPICompressed exercises the compression-bound budget on a small
// OVMF-shaped image: the estimate for incompressible payloads fits, 6 KiB
// more does not (the estimate keeps a 4 KiB margin), and the inner volume
// never changes size.
func TestBuildSPICompressed(t *testing.T) {
	s := synthCompressedSpec(t, nil)
	budget, exact, limit, err := slotBudget(s, pinnedXZ)
	if err != nil {
		t.Fatal(err)
	}
	if exact || !strings.Contains(limit, "compressed content of volume "+synthGrow) {
		t.Fatalf("budget %d exact=%v limit %q: want a compression-bound estimate", budget, exact, limit)
	}
	t.Logf("budget %d (%s)", budget, limit)
	if budget < 0x8000-0x2000 || budget > 0xC000 {
		t.Fatalf("budget %d is implausible for a 0xC000-byte volume", budget)
	}
	s.Payload = minimalPE(int(budget))
	chip, err := BuildSPI(context.Background(), s)
	if err != nil {
		t.Fatalf("random payload at the estimated budget: %v", err)
	}
	if got := slotPE(t, chip, shellGUID); !bytes.Equal(got, s.Payload) {
		t.Errorf("slot does not hold the payload")
	}
	n, err := inspectFirmware(chip)
	if err != nil {
		t.Fatal(err)
	}
	if in := n.find("fv", synthDXE); in == nil || in.Size != 0x10000 || in.Note != "in LZMA section" {
		t.Errorf("inner volume: %+v", in)
	}
	s.Payload = minimalPE(int(budget) + 6<<10)
	_, err = BuildSPI(context.Background(), s)
	var be *BudgetError
	if !errors.As(err, &be) || be.Exact || be.Overflow() <= 0 || be.Overflow() > 6<<10 {
		t.Fatalf("6 KiB over: %v", err)
	}
	t.Logf("6 KiB over: %v", be)
}

// FuzzBuildSPI feeds arbitrary bytes as base firmware: the build must
// return an error or a chip of the right size, never take the process
// down (fiano's Fatalf and panics are contained) nor touch the preserved
// region.
func FuzzBuildSPI(f *testing.F) {
	f.Add(synthBase(f))
	f.Add(synthCompressedBase(f))
	f.Add(synthBase(f)[:0xC000])
	f.Add(bytes.Repeat([]byte{0xFF}, 0x1000))
	f.Add([]byte("_FVH"))
	bad := synthCompressedBase(f)
	bad[0x60+24+4+24+8] ^= 0xFF // inside the LZMA stream
	f.Add(bad)
	payload := minimalPE(2000)
	f.Fuzz(func(t *testing.T, base []byte) {
		if len(base) > 1<<20 {
			return
		}
		size := (uint64(len(base)) + 0xFFF) &^ 0xFFF
		if size == 0 {
			size = 0x1000
		}
		s := SPISpec{
			ChipSize: 0x10000 + size,
			Regions: []boardcfg.Region{
				{Name: "vpd", Start: 0, Size: 0x10000, Preserve: true},
				{Name: "bios", Start: 0x10000, Size: boardcfg.Size(size), Firmware: true},
			},
			BaseFirmware: base, GrowFV: synthGrow, SlotFile: shellGUID, Payload: payload,
		}
		chip, err := BuildSPI(context.Background(), s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "image: ") {
				t.Fatalf("error without context: %v", err)
			}
			return
		}
		if uint64(len(chip)) != s.ChipSize {
			t.Fatalf("chip is %#x bytes, want %#x", len(chip), s.ChipSize)
		}
		if !bytes.Equal(chip[:0x10000], bytes.Repeat([]byte{0xFF}, 0x10000)) {
			t.Fatalf("preserved region written")
		}
	})
}
