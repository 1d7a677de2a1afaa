package image

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/linuxboot/fiano/pkg/uefi"
)

// TestTreeWalk checks that the walk reaches every node fiano parses,
// including the types the walk has no use for (an NVAR store and its
// variable, padding between volumes), with each node's ancestors.
func TestTreeWalk(t *testing.T) {
	base := synthNestedBase(t)
	shell := mustGUID(t, shellGUID)
	seen := map[string]int{}
	var shellPath []string
	err := withFiano(pinnedXZ, func(l *fianoLogger) error {
		r, err := uefi.NewBIOSRegion(base, nil, uefi.RegionTypeBIOS)
		if err != nil {
			return fmt.Errorf("%v%s", err, l.detail())
		}
		return walk(r, func(f uefi.Firmware, ancestors []uefi.Firmware) {
			seen[fmt.Sprintf("%T", f)]++
			if file, ok := f.(*uefi.File); ok && file.Header.GUID == shell {
				for _, a := range ancestors {
					shellPath = append(shellPath, fmt.Sprintf("%T", a))
				}
			}
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	for typ, want := range map[string]int{
		"*uefi.BIOSRegion": 1, "*uefi.BIOSPadding": 1, "*uefi.FirmwareVolume": 4,
		"*uefi.NVarStore": 1, "*uefi.NVar": 1,
	} {
		if seen[typ] != want {
			t.Errorf("walk visited %d nodes of type %s, want %d (all: %v)", seen[typ], typ, want, seen)
		}
	}
	want := "*uefi.BIOSRegion *uefi.FirmwareVolume *uefi.File *uefi.Section *uefi.FirmwareVolume " +
		"*uefi.File *uefi.Section *uefi.Section *uefi.FirmwareVolume"
	if got := strings.Join(shellPath, " "); got != want {
		t.Errorf("ancestors of the Shell file:\n got %s\nwant %s", got, want)
	}
}

// TestOpenSlot finds the slot file where it lies in each synthetic
// layout and the volumes and compressed section around it.
func TestOpenSlot(t *testing.T) {
	cases := []struct {
		name       string
		base       []byte
		slotFV     string
		compressed bool
		volumes    int // in the container, itself included
	}{
		{"flat", synthBase(t), synthGrow, false, 1},
		{"compressed", synthCompressedBase(t), synthDXE, true, 2},
		{"nested", synthNestedBase(t), synthDXE, true, 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := withFiano(pinnedXZ, func(l *fianoLogger) error {
				tr, err := openSlot(&spiPlan{region: c.base, slot: mustGUID(t, shellGUID)}, l)
				if err != nil {
					return err
				}
				if got := fvName(tr.container); got != synthGrow {
					t.Errorf("container %s, want %s", got, synthGrow)
				}
				if got := fvName(tr.slotFV); got != c.slotFV {
					t.Errorf("slot volume %s, want %s", got, c.slotFV)
				}
				if (tr.compressed != nil) != c.compressed {
					t.Errorf("compressed section %v, want one: %v", tr.compressed != nil, c.compressed)
				}
				if len(tr.before) != c.volumes {
					t.Errorf("%d volumes in the container, want %d: %v", len(tr.before), c.volumes, tr.before)
				}
				if tr.pe == nil || !bytes.HasPrefix(tr.pe.Buf()[4:], []byte("MZ")) {
					t.Errorf("slot PE32 section not found")
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestBuildSPINested builds a chip from the nested layout: the payload
// lands two volume levels down, and inspection shows the whole path to it.
func TestBuildSPINested(t *testing.T) {
	s := synthSpec(t, minimalPE(3500))
	s.BaseFirmware = synthNestedBase(t)
	chip, err := BuildSPI(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	if got := slotPE(t, chip, shellGUID); !bytes.Equal(got, s.Payload) {
		t.Fatal("slot does not hold the payload")
	}
	n, err := inspectFirmware(chip)
	if err != nil {
		t.Fatal(err)
	}
	outer := n.find("fv", synthGrow)
	if outer == nil || len(n.Children) != 2 || n.find("fv", synthSec) == nil {
		t.Fatalf("top-level nodes %+v: want the two volumes and no padding", n.Children)
	}
	if f := outer.find("file", nvarGUID); f == nil || f.Type != "EFI_FV_FILETYPE_RAW" {
		t.Errorf("NVAR store file: %+v", f)
	}
	mid := outer.find("fv", synthMid)
	if mid == nil || mid.Size != 0x8000 || mid.Note != "" {
		t.Fatalf("middle volume: %+v", mid)
	}
	inner := mid.find("fv", synthDXE)
	if inner == nil || inner.Size != 0x4000 || inner.Note != "in LZMA section" {
		t.Fatalf("inner volume: %+v", inner)
	}
	if f := inner.find("file", "Shell"); f == nil || f.GUID != shellGUID {
		t.Errorf("Shell in the inner volume: %+v", f)
	}
}
