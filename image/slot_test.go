package image

import (
	"bytes"
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
