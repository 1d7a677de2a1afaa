package image

import (
	"context"
	"os/exec"
	"testing"
)

// The LZMA encoder choice, measured (run with -bench . -benchtime 1x):
// bytes FVMAIN_COMPACT uses after the build and the 8 MiB layout's budget,
// with fiano's pure-Go encoder (what fwbuild pins) and with system xz.
func encoders(b *testing.B) map[string]string {
	m := map[string]string{"pure-go": pinnedXZ}
	if p, err := exec.LookPath("xz"); err == nil {
		m["system-xz"] = p
	} else {
		b.Log("xz not on PATH: measuring the pure-Go encoder only")
	}
	return m
}

func BenchmarkBuildSPI16(b *testing.B) {
	code, app := ovmfCode(b), grubTestApp(b)
	for name, xz := range encoders(b) {
		for _, p := range []struct {
			name    string
			payload []byte
		}{{"grub-176k", app}, {"full-slot", padPE(app, 8170376)}} {
			b.Run(name+"/"+p.name, func(b *testing.B) {
				var chip []byte
				for b.Loop() {
					var err error
					if chip, err = buildSPI(q35Spec16(code, p.payload), xz); err != nil {
						b.Fatal(err)
					}
				}
				n, err := inspectFirmware(chip)
				if err != nil {
					b.Fatal(err)
				}
				fv := n.find("fv", growGUID)
				b.ReportMetric(float64(fv.Size-*fv.Free), "fvmain-used-bytes")
			})
		}
	}
}

func BenchmarkSlotBudget8(b *testing.B) {
	code, vars := ovmfCode(b), ovmfVars(b)
	for name, xz := range encoders(b) {
		b.Run(name, func(b *testing.B) {
			var budget int64
			for b.Loop() {
				var err error
				if budget, _, _, err = slotBudget(q35Spec8(code, vars, nil), xz); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(budget), "budget-bytes")
		})
	}
}

func BenchmarkSlotBudget16(b *testing.B) {
	s := q35Spec16(ovmfCode(b), nil)
	for b.Loop() {
		if _, err := SlotBudget(context.Background(), s); err != nil {
			b.Fatal(err)
		}
	}
}
