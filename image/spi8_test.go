package image

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	qemutests "github.com/fwbuild/fwbuild/qemu-tests"
)

// TestBuildSPI8MiB is the 8 MiB variant: new values, same code. Its budget
// is bound by the compressed FVMAIN_COMPACT (0x748000 bytes), so it is an
// estimate for incompressible payloads: the GRUB app padded to it must
// build and boot; a fully random payload 16 KiB larger must fail with a
// BudgetError whose overflow shows the estimate is right to a few KiB.
func TestBuildSPI8MiB(t *testing.T) {
	t.Parallel()
	needTool(t, "qemu-system-x86_64", "qemu-system-x86")
	code, vars, app := ovmfCode(t), ovmfVars(t), grubTestApp(t)
	s := q35Spec8(code, vars, nil)
	start := time.Now()
	budget, err := SlotBudget(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("8 MiB slot budget: %d bytes, estimated in %v (FIELD-NOTES measured 6,729,728 by booting)", budget, time.Since(start))

	s.Payload = padPE(app, int(budget))
	chip, err := BuildSPI(context.Background(), s)
	if err != nil {
		t.Fatalf("payload at the estimated budget: %v", err)
	}
	if len(chip) != 8<<20 {
		t.Fatalf("chip is %#x bytes, want 8 MiB", len(chip))
	}
	if !bytes.Equal(chip[:len(vars)], vars) {
		t.Errorf("vars region does not hold OVMF VARS")
	}
	fvs := topLevelFVs(chip)
	var main *fvHeader
	for i := range fvs {
		if fvs[i].Name.String() == growGUID {
			main = &fvs[i]
		}
	}
	if main == nil || main.Offset != 0x84000 || main.Length != 0x748000 {
		t.Fatalf("FVMAIN_COMPACT: %+v, want at 0x84000 with 0x748000 bytes", main)
	}
	if !bytes.Equal(chip[len(chip)-0x34000:], code[len(code)-0x34000:]) {
		t.Errorf("SECFV changed")
	}

	// Boot it as FIELD-NOTES describes: split at 0x84000, CODE read-only.
	chipImg := filepath.Join(t.TempDir(), "spi.bin")
	if err := os.WriteFile(chipImg, chip, 0o644); err != nil {
		t.Fatal(err)
	}
	bootToMarker(t, qemutests.Machine{Firmware: qemutests.SplitPflash(chipImg, 0x84000)})

	// Incompressible: 16 KiB over the budget compresses to about 16.3 KiB
	// more than fits at the budget, which itself leaves a 4 KiB margin.
	s.Payload = minimalPE(int(budget) + 16<<10)
	_, err = BuildSPI(context.Background(), s)
	var be *BudgetError
	if !errors.As(err, &be) || be.Exact {
		t.Fatalf("random payload 16 KiB over the estimated budget: %v", err)
	}
	if o := be.Overflow(); o < 8<<10 || o > 16<<10 {
		t.Errorf("overflow %d bytes; want 8-16 KiB if the budget estimate is within 4 KiB", o)
	}
	if !strings.Contains(be.Error(), growGUID) {
		t.Errorf("error does not name FVMAIN_COMPACT: %v", be)
	}
	t.Logf("over budget: %v", be)
}

// bootToMarker boots m (q35, TCG, no network) and waits for bootMarker on
// the serial line.
func bootToMarker(t *testing.T, m qemutests.Machine) {
	t.Helper()
	res, err := qemutests.Run(context.Background(), m, []qemutests.Marker{qemutests.Substring("boot", bootMarker, time.Minute)},
		qemutests.Options{LogPath: filepath.Join(t.TempDir(), "console.log")})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("marker after %v", res.Elapsed)
}
