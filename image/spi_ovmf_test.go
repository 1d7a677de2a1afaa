package image

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/boardcfg"
	"github.com/fwbuild/fwbuild/internal/testdeps"
	qemutests "github.com/fwbuild/fwbuild/qemu-tests"
)

const bootMarker = "FWBUILD-SPI-BOOT-OK"

var (
	grubOnce sync.Once
	grubBin  []byte
	grubErr  error
)

// grubTestApp builds (once) a standalone GRUB EFI application whose
// embedded config prints bootMarker on the serial line and reboots.
func grubTestApp(t testing.TB) []byte {
	t.Helper()
	mkimage := needTool(t, "grub-mkimage", "grub-common")
	mods := testdeps.File(t, "grub", "modules")
	grubOnce.Do(func() {
		dir, err := os.MkdirTemp("", "grubapp")
		if err != nil {
			grubErr = err
			return
		}
		defer os.RemoveAll(dir)
		cfg := "serial --unit=0 --speed=115200\nterminal_output serial\necho " + bootMarker + "\nreboot\n"
		if err := os.WriteFile(filepath.Join(dir, "early.cfg"), []byte(cfg), 0o644); err != nil {
			grubErr = err
			return
		}
		out := filepath.Join(dir, "app.efi")
		cmd := exec.Command(mkimage, "-O", "x86_64-efi", "-p", "/", "-d", mods, "-c", filepath.Join(dir, "early.cfg"),
			"-o", out, "serial", "terminal", "echo", "reboot")
		if b, err := cmd.CombinedOutput(); err != nil {
			grubErr = errors.New("grub-mkimage: " + err.Error() + ": " + string(b))
			return
		}
		grubBin, grubErr = os.ReadFile(out)
	})
	if grubErr != nil {
		t.Fatal(grubErr)
	}
	return grubBin
}

// padPE grows a PE to n bytes with incompressible overlay data, which
// firmware loaders ignore: the worst case for the budget.
func padPE(pe []byte, n int) []byte { return randomAfter(pe, n, 42) }

// randomAfter is head followed by seeded random bytes, n bytes in all.
func randomAfter(head []byte, n int, seed uint64) []byte {
	out := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, uint64(n)))
	for i := range out {
		out[i] = byte(r.Uint32())
	}
	copy(out, head)
	return out
}

// spi16 is the qemu-q35 chip built once with a GRUB test app padded to
// exactly the slot budget, shared by the tests that only read it.
type spi16Fixture struct {
	spec   SPISpec
	budget int64
	chip   []byte
	took   time.Duration
}

var (
	spi16Once sync.Once
	spi16     spi16Fixture
	spi16Err  error
)

func q35Chip(t testing.TB) *spi16Fixture {
	t.Helper()
	code, app := ovmfCode(t), grubTestApp(t)
	spi16Once.Do(func() {
		s := q35Spec16(code, nil)
		spi16.budget, spi16Err = SlotBudget(context.Background(), s)
		if spi16Err != nil {
			return
		}
		s.Payload = padPE(app, int(spi16.budget))
		spi16.spec = s
		start := time.Now()
		spi16.chip, spi16Err = BuildSPI(context.Background(), s)
		spi16.took = time.Since(start)
	})
	if spi16Err != nil {
		t.Fatal(spi16Err)
	}
	return &spi16
}

func TestBuildSPIQ35(t *testing.T) {
	t.Parallel()
	f := q35Chip(t)
	t.Logf("budget %d bytes; build with a full slot took %v", f.budget, f.took)
	if len(f.chip) != 16<<20 {
		t.Fatalf("chip is %#x bytes, want 16 MiB", len(f.chip))
	}
	if !bytes.Equal(f.chip[:0x10000], bytes.Repeat([]byte{0xFF}, 0x10000)) {
		t.Errorf("preserved vpd region is not erased")
	}
	code := f.spec.BaseFirmware
	const secfv = 0x34000
	if !bytes.Equal(f.chip[len(f.chip)-secfv:], code[len(code)-secfv:]) {
		t.Errorf("SECFV is not unchanged at the top of the chip")
	}
	n, err := inspectFirmware(f.chip)
	if err != nil {
		t.Fatal(err)
	}
	main := n.find("fv", growGUID)
	if main == nil || main.Offset != 0x10000 || main.Size != 0xFF0000-secfv {
		t.Fatalf("FVMAIN_COMPACT: %+v, want offset 0x10000 size %#x", main, 0xFF0000-secfv)
	}
	if dxe := n.find("fv", dxeGUID); dxe == nil || dxe.Size != 0xC00000 {
		t.Fatalf("DXEFV: %+v, want 0xC00000 bytes", dxe)
	}
	if got := slotPE(t, f.chip, shellGUID); !bytes.Equal(got, f.spec.Payload) {
		t.Errorf("Shell slot holds %d bytes, not the %d-byte payload", len(got), len(f.spec.Payload))
	}

	// Same inputs, same bytes.
	again, err := BuildSPI(context.Background(), f.spec)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, f.chip) {
		t.Errorf("two builds of the chip image differ")
	}
}

// TestSlotBudgetQ35 checks the exact budget against fiano itself: at the
// budget DXEFV keeps 0xC00000 bytes, one byte more grows it; and the build
// refuses that byte before assembling anything.
func TestSlotBudgetQ35(t *testing.T) {
	s := q35Spec16(ovmfCode(t), nil)
	budget, err := SlotBudget(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("16 MiB slot budget: %d bytes (FIELD-NOTES measured 8,163,328 by booting at 4 KiB steps)", budget)
	p, err := planSPI(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		n    int64
		grow bool
	}{{budget, false}, {budget + 1, true}} {
		err := withFiano(pinnedXZ, func(l *fianoLogger) error {
			tr, err := openSlot(p, l)
			if err != nil {
				return err
			}
			if err := tr.setPayload(randomPE(c.n)); err != nil {
				return err
			}
			if err := assembleFV(tr.slotFV); err != nil {
				return err
			}
			if grew := tr.slotFV.Length != 0xC00000; grew != c.grow {
				t.Errorf("payload %d: DXEFV is %#x bytes after assembly", c.n, tr.slotFV.Length)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	s.Payload = padPE(grubTestApp(t), int(budget)+1)
	_, err = BuildSPI(context.Background(), s)
	var be *BudgetError
	if !errors.As(err, &be) || be.Overflow() != 1 || !be.Exact || be.Payload != budget+1 {
		t.Fatalf("1 byte over budget: %v", err)
	}
	if !strings.Contains(be.Error(), dxeGUID) {
		t.Errorf("error does not name DXEFV: %v", be)
	}
}

func TestBuildSPIQ35Flashrom(t *testing.T) {
	flashrom := needTool(t, "flashrom", "flashrom")
	f := q35Chip(t)
	dir := t.TempDir()
	img, layout, chip := filepath.Join(dir, "spi.bin"), filepath.Join(dir, "spi.layout"), filepath.Join(dir, "chip.bin")
	if err := os.WriteFile(img, f.chip, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(layout, []byte(boardcfg.FlashromLayout(f.spec.Regions)), 0o644); err != nil {
		t.Fatal(err)
	}
	// A chip whose vpd region holds factory data that must survive.
	vpd := bytes.Repeat([]byte("serial=FW123456;"), 0x10000/16)
	old := bytes.Repeat([]byte{0x5A}, 16<<20)
	copy(old, vpd)
	if err := os.WriteFile(chip, old, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, flashrom, "-p", "dummy:emulate=W25Q128FV,image="+chip,
		"-l", layout, "-i", "bios", "-w", img).CombinedOutput()
	if err != nil {
		t.Fatalf("flashrom: %v\n%s", err, out)
	}
	got, err := os.ReadFile(chip)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[:0x10000], vpd) {
		t.Errorf("flashrom -i bios changed the vpd region")
	}
	if !bytes.Equal(got[0x10000:], f.chip[0x10000:]) {
		t.Errorf("bios region on the chip differs from spi.bin")
	}
}

// TestBootSPIQ35 boots the chip image with -bios, as the board's QEMU test
// does, and waits for the GRUB test app in the Shell slot to print its
// marker: the layout, the grown FVMAIN_COMPACT, the pure-Go LZMA and a
// payload of exactly the budget all work in real OVMF.
func TestBootSPIQ35(t *testing.T) {
	t.Parallel()
	needTool(t, "qemu-system-x86_64", "qemu-system-x86")
	f := q35Chip(t)
	img := filepath.Join(t.TempDir(), "spi.bin")
	if err := os.WriteFile(img, f.chip, 0o644); err != nil {
		t.Fatal(err)
	}
	bootToMarker(t, qemutests.Machine{Firmware: qemutests.BIOS(img)})
}
