package flash

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/boardcfg"
)

const chipSize = 16 << 20 // W25Q128FV

// qemuLayout is the qemu-q35 board's chip: preserved factory data at the bottom, fwbuild's BIOS above.
var qemuLayout = []boardcfg.Region{
	{Name: "vpd", Start: 0, Size: 0x10000, Preserve: true},
	{Name: "bios", Start: 0x10000, Size: chipSize - 0x10000},
}

// realFlashrom returns the installed flashrom or fails the test with the apt line.
func realFlashrom(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("flashrom"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/flashrom"); err == nil {
		return "/usr/sbin/flashrom"
	}
	t.Fatalf("flashrom not installed: %s", aptFlashrom)
	return ""
}

func randBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 42}))
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// emulatedChip creates the dummy programmer's backing file. It must exist with the chip's
// exact size: flashrom 1.3 silently ignores a missing or wrong-size file (the chip then
// reads as 0xFF) and writes the emulated chip back to the file when it exits.
func emulatedChip(t *testing.T, seed uint64, size int) (path string, content []byte) {
	t.Helper()
	content = randBytes(seed, size)
	path = filepath.Join(t.TempDir(), "chip.bin")
	if err := os.WriteFile(path, content, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, content
}

func readFile(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sha(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func asError(t *testing.T, err error) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("want *flash.Error, got %T: %v", err, err)
	}
	t.Logf("error as printed:\n%v", err)
	return e
}

func TestWriteSPIWritesOnlyRequestedRegion(t *testing.T) {
	fr := realFlashrom(t)
	chip, old := emulatedChip(t, 1, chipSize)
	img := randBytes(2, chipSize) // stands in for spi.bin
	backups := filepath.Join(t.TempDir(), "backups")
	var phases []string
	res, err := WriteSPI(context.Background(), SPIOptions{AnyImage: true,
		Flashrom:   fr,
		Programmer: "dummy:emulate=W25Q128FV,image=" + chip,
		Image:      img,
		Regions:    qemuLayout,
		BackupDir:  backups,
		Progress: func(p Progress) {
			if p.Final {
				phases = append(phases, fmt.Sprintf("%s %d/%d", p.Phase, p.Done, p.Total))
				t.Logf("phase %-13s %8d bytes in %v", p.Phase, p.Total, p.Elapsed.Round(time.Millisecond))
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := readFile(t, chip)
	if !bytes.Equal(got[0x10000:], img[0x10000:]) {
		t.Error("bios region does not hold the image")
	}
	if !bytes.Equal(got[:0x10000], old[:0x10000]) {
		t.Error("preserved vpd region was modified")
	}
	if !bytes.Equal(readFile(t, res.Backup), old) {
		t.Errorf("backup %s does not equal the chip before writing", res.Backup)
	}
	if filepath.Dir(res.Backup) != backups || !strings.HasPrefix(filepath.Base(res.Backup), "spi-backup-") {
		t.Errorf("backup path %s not a timestamped file in %s", res.Backup, backups)
	}
	if side := string(readFile(t, res.Backup+".sha256")); !strings.HasPrefix(side, sha(old)+"  ") {
		t.Errorf("backup sidecar %q does not hold the backup's sha256", side)
	}
	if !reflect.DeepEqual(res.Written, []string{"bios"}) || res.Verified["bios"] != sha(img[0x10000:]) {
		t.Errorf("Written %v Verified %v", res.Written, res.Verified)
	}
	if res.Chip != "W25Q128.V" || res.ChipSize != chipSize {
		t.Errorf("chip %q size %d", res.Chip, res.ChipSize)
	}
	if len(res.Changed) != 1 || res.Changed[0].Blocks != 4080 || res.Changed[0].ChangedBlocks != 4080 {
		t.Errorf("Changed = %+v, want bios 4080 of 4080 blocks", res.Changed)
	}
	wantPhases := []string{"probe 0/0", "backup 16777216/16777216", "backup-verify 16777216/16777216",
		"write 16711680/16711680", "verify 16777216/16777216"}
	if !reflect.DeepEqual(phases, wantPhases) {
		t.Errorf("phases %q, want %q", phases, wantPhases)
	}
	if w := res.Commands[3]; !strings.Contains(w, " -i bios ") || strings.Contains(w, "vpd") || !strings.Contains(w, " -l ") {
		t.Errorf("write command %q", w)
	}
	if want := fr + " -p dummy:emulate=W25Q128FV,image=" + chip + " -w " + res.Backup; res.Restore != want {
		t.Errorf("restore %q, want %q", res.Restore, want)
	}
}

func TestWriteSPIDryRunThenWriteChangedBlocks(t *testing.T) {
	fr := realFlashrom(t)
	chip, old := emulatedChip(t, 3, chipSize)
	img := bytes.Clone(old)
	for i := 0; i < 0x10000; i++ { // vpd differs everywhere, but is preserved
		img[i] ^= 0x5a
	}
	for i := 0x20000; i < 0x22000; i++ { // two bios blocks
		img[i] ^= 0xff
	}
	img[0x80123] ^= 1 // one byte -> one block
	opts := SPIOptions{AnyImage: true,
		Flashrom:   fr,
		Programmer: "dummy:emulate=W25Q128FV,image=" + chip,
		Image:      img,
		Regions:    qemuLayout,
		BackupDir:  t.TempDir(),
		DryRun:     true,
	}
	res, err := WriteSPI(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readFile(t, chip), old) {
		t.Fatal("dry run modified the chip")
	}
	want := []RegionChange{{Region: "bios", Start: 0x10000, Size: chipSize - 0x10000, BlockSize: 4096, Blocks: 4080,
		ChangedBlocks: 3, Ranges: []BlockRange{{0x20000, 0x21fff}, {0x80000, 0x80fff}}}}
	if !reflect.DeepEqual(res.Changed, want) {
		t.Errorf("Changed = %+v\nwant %+v", res.Changed, want)
	}
	if s := res.Changed[0].String(); s != "bios 0x10000-0xffffff: 3 of 4080 4 KiB blocks differ: 0x20000-0x21fff, 0x80000-0x80fff" {
		t.Errorf("String() = %q", s)
	}
	if len(res.Written) != 0 || !res.DryRun {
		t.Errorf("dry run reports written %v", res.Written)
	}
	if len(res.Commands) != 5 || !strings.Contains(res.Commands[3], "-i bios") || !strings.Contains(res.Commands[4], " -r ") {
		t.Errorf("dry-run commands %q", res.Commands)
	}
	if res.Layout != "00000000:0000ffff vpd\n00010000:00ffffff bios\n" {
		t.Errorf("layout %q", res.Layout)
	}
	if !bytes.Equal(readFile(t, res.Backup), old) {
		t.Error("dry-run backup differs from chip")
	}

	opts.DryRun = false
	res, err = WriteSPI(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	want2 := bytes.Clone(old)
	copy(want2[0x10000:], img[0x10000:])
	if !bytes.Equal(readFile(t, chip), want2) {
		t.Error("chip after write: want old vpd + image bios")
	}

	// Same image again: nothing differs, nothing is written.
	res, err = WriteSPI(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if !res.UpToDate || len(res.Written) != 0 || res.Changed[0].ChangedBlocks != 0 || len(res.Commands) != 3 {
		t.Errorf("second write: UpToDate %v Written %v Changed %+v Commands %q", res.UpToDate, res.Written, res.Changed, res.Commands)
	}
}

// A preserved region is written only with the override naming it again, and only after
// ConfirmOverwrite was shown what it held (the refusals are in preserve_test.go).
func TestWriteSPIPreservedRegionOnlyWithOverride(t *testing.T) {
	fr := realFlashrom(t)
	chip, old := emulatedChip(t, 4, chipSize)
	img := randBytes(5, chipSize)
	var shown []PreservedLoss
	res, err := WriteSPI(context.Background(), SPIOptions{AnyImage: true,
		Flashrom: fr, Programmer: "dummy:emulate=W25Q128FV,image=" + chip,
		Image: img, Regions: qemuLayout, Write: []string{"vpd"}, OverwritePreserved: []string{"vpd"}, BackupDir: t.TempDir(),
		ConfirmOverwrite: func(l []PreservedLoss) error {
			shown = l
			if now := readFile(t, chip); !bytes.Equal(now, old) {
				t.Error("chip written before ConfirmOverwrite returned")
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := readFile(t, chip)
	if !bytes.Equal(got[:0x10000], img[:0x10000]) || !bytes.Equal(got[0x10000:], old[0x10000:]) {
		t.Error("want image vpd + old bios")
	}
	if !reflect.DeepEqual(res.Written, []string{"vpd"}) {
		t.Errorf("Written %v", res.Written)
	}
	want := []PreservedLoss{{Region: "vpd", Start: 0, End: 0xffff, ChipSHA256: sha(old[:0x10000]), ImageSHA256: sha(img[:0x10000]), Backup: res.Backup}}
	if !reflect.DeepEqual(shown, want) || !reflect.DeepEqual(res.Overwritten, want) {
		t.Errorf("shown %+v\nwant %+v", shown, want)
	}
}

func TestWriteSPIRefusesWrongSizeImage(t *testing.T) {
	fr := realFlashrom(t)
	chip, old := emulatedChip(t, 6, chipSize)
	backups := filepath.Join(t.TempDir(), "b")
	_, err := WriteSPI(context.Background(), SPIOptions{AnyImage: true,
		Flashrom: fr, Programmer: "dummy:emulate=W25Q128FV,image=" + chip,
		Image:   randBytes(7, 8<<20),
		Regions: []boardcfg.Region{{Name: "bios", Start: 0, Size: 8 << 20}}, BackupDir: backups,
	})
	e := asError(t, err)
	if e.Op != "spi check" || !strings.Contains(e.Msg, "image is 8388608 bytes (8 MiB)") ||
		!strings.Contains(e.Msg, "16777216 bytes (16 MiB)") || !strings.Contains(e.Hint, "nothing was written") {
		t.Errorf("error: %v", err)
	}
	if !bytes.Equal(readFile(t, chip), old) {
		t.Error("chip modified")
	}
	if _, err := os.Stat(backups); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("backup dir created before the size check: %v", err)
	}
}

func TestWriteSPIRefusesUnknownRegion(t *testing.T) {
	chip, old := emulatedChip(t, 8, chipSize)
	marker := filepath.Join(t.TempDir(), "ran")
	// flashrom must not even run: this stand-in records any call.
	fake := writeScript(t, "#!/bin/sh\ntouch "+marker+"\nexit 1\n")
	_, err := WriteSPI(context.Background(), SPIOptions{AnyImage: true,
		Flashrom: fake, Programmer: "dummy:emulate=W25Q128FV,image=" + chip,
		Image: randBytes(9, chipSize), Regions: qemuLayout, Write: []string{"bios", "coreboot"}, BackupDir: t.TempDir(),
	})
	e := asError(t, err)
	if e.Op != "spi check" || !strings.Contains(e.Msg, `region "coreboot" is not in the layout (regions: vpd, bios)`) {
		t.Errorf("error: %v", err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("flashrom ran although the request was invalid")
	}
	if !bytes.Equal(readFile(t, chip), old) {
		t.Error("chip modified")
	}
}

func writeScript(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "flashrom")
	if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// corruptingFlashrom wraps the real flashrom and, after every successful region write
// (-i ... -w), flips the byte at off in the emulated chip file, as a bad connection could.
// Whole-chip writes (the restore command) pass through untouched.
func corruptingFlashrom(t *testing.T, real, chip string, off int) string {
	return writeScript(t, fmt.Sprintf(`#!/bin/sh
%s "$@" || exit $?
case " $* " in *" -i "*" -w "*) ;; *) exit 0;; esac
b=$(od -An -tu1 -j %d -N1 %s | tr -d ' ')
printf "$(printf '\\%%03o' $((b ^ 255)))" | dd of=%s bs=1 seek=%d conv=notrunc status=none
`, real, off, chip, chip, off))
}

func TestWriteSPIVerifyFailureIsRestorable(t *testing.T) {
	fr := realFlashrom(t)
	for _, tc := range []struct {
		name string
		off  int
		want string
	}{
		{"inside written region", 0x123456, `region "bios": sha256`},
		{"outside written region", 0x1234, "0x0-0xffff (region vpd, preserved) was not to be written but 1 bytes differ from the backup, first at 0x1234"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chip, old := emulatedChip(t, 10, chipSize)
			img := randBytes(11, chipSize)
			res, err := WriteSPI(context.Background(), SPIOptions{AnyImage: true,
				Flashrom: corruptingFlashrom(t, fr, chip, tc.off), Programmer: "dummy:emulate=W25Q128FV,image=" + chip,
				Image: img, Regions: qemuLayout, BackupDir: t.TempDir(),
			})
			e := asError(t, err)
			if e.Op != "spi verify" || e.Chip != ChipModified || !strings.Contains(e.Msg, tc.want) {
				t.Fatalf("error: %v", err)
			}
			if len(res.Written) != 0 {
				t.Errorf("Written %v after failed verify", res.Written)
			}
			if !bytes.Equal(readFile(t, e.Backup), old) {
				t.Fatal("backup differs from the chip before writing")
			}
			if !strings.Contains(err.Error(), "restore: "+e.Restore) || !strings.Contains(err.Error(), "backup: "+e.Backup) {
				t.Errorf("message does not print backup and restore command: %v", err)
			}
			// The printed command, run by a shell as a user would, must restore the chip.
			if out, err := exec.Command("sh", "-c", e.Restore).CombinedOutput(); err != nil {
				t.Fatalf("restore %q: %v\n%s", e.Restore, err, out)
			}
			if !bytes.Equal(readFile(t, chip), old) {
				t.Error("chip after restore differs from the backup")
			}
		})
	}
}

func TestWriteSPIWriteProtectedChip(t *testing.T) {
	fr := realFlashrom(t)
	chip, old := emulatedChip(t, 12, chipSize)
	// SRP0 + BP2..0 set and WP# asserted: flashrom cannot lift the protection.
	_, err := WriteSPI(context.Background(), SPIOptions{AnyImage: true,
		Flashrom: fr, Programmer: "dummy:emulate=W25Q128FV,spi_status=0x9c,hwwp=yes,image=" + chip,
		Image: randBytes(13, chipSize), Regions: qemuLayout, BackupDir: t.TempDir(),
	})
	e := asError(t, err)
	if e.Op != "spi write" || e.Chip != ChipUnchanged || !strings.Contains(e.Hint, "--wp-disable") || e.Restore == "" {
		t.Errorf("error: %v", err)
	}
	if !containsLine(e.Flashrom, "Block protection could not be disabled!") ||
		!containsLine(e.Flashrom, "At least part of the erase range is write protected!") {
		t.Errorf("flashrom lines %q", e.Flashrom)
	}
	if !bytes.Equal(readFile(t, chip), old) {
		t.Error("chip modified")
	}
}

// flashrom 1.3 falls back to larger erase commands, up to a whole-chip erase, when one
// fails: the failed write then damages regions that were never requested. The error must
// say so and point at the backup.
func TestWriteSPIFailedWriteReportsModifiedChip(t *testing.T) {
	fr := realFlashrom(t)
	chip, old := emulatedChip(t, 14, chipSize)
	_, err := WriteSPI(context.Background(), SPIOptions{AnyImage: true,
		Flashrom: fr, Programmer: "dummy:emulate=W25Q128FV,spi_blacklist=0x02,image=" + chip, // page program refused
		Image: randBytes(15, chipSize), Regions: qemuLayout, BackupDir: t.TempDir(),
	})
	e := asError(t, err)
	if e.Op != "spi write" || e.Chip != ChipModified || !containsLine(e.Flashrom, "Erase/write failed") {
		t.Errorf("error: %v", err)
	}
	if bytes.Equal(readFile(t, chip), old) {
		t.Error("expected flashrom's erase fallback to change the chip")
	}
	if !bytes.Equal(readFile(t, e.Backup), old) || !strings.HasSuffix(e.Restore, " -w "+e.Backup) {
		t.Errorf("backup/restore: %v", err)
	}
}

func TestWriteSPIMultipleChipDefinitions(t *testing.T) {
	fr := realFlashrom(t)
	const size = 8 << 20
	chip, old := emulatedChip(t, 16, size)
	img := randBytes(17, size)
	opts := SPIOptions{AnyImage: true,
		Flashrom: fr, Programmer: "dummy:emulate=MX25L6436,image=" + chip,
		Image:     img,
		Regions:   []boardcfg.Region{{Name: "vars", Start: 0, Size: 0x84000, Preserve: true}, {Name: "code", Start: 0x84000, Size: size - 0x84000}},
		BackupDir: t.TempDir(),
	}
	_, err := WriteSPI(context.Background(), opts)
	e := asError(t, err)
	const name = "MX25L6436E/MX25L6445E/MX25L6465E/MX25L6473E/MX25L6473F"
	if e.Op != "spi probe" || !strings.Contains(e.Hint, "--chip") || !strings.Contains(e.Hint, `"`+name+`"`) ||
		!containsLine(e.Flashrom, "Multiple flash chip definitions match") {
		t.Fatalf("error: %v", err)
	}
	opts.Chip = name
	res, err := WriteSPI(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	got := readFile(t, chip)
	if !bytes.Equal(got[:0x84000], old[:0x84000]) || !bytes.Equal(got[0x84000:], img[0x84000:]) {
		t.Error("want old vars + image code")
	}
	if !strings.Contains(res.Restore, "-c "+name+" -w ") {
		t.Errorf("restore lacks the chip: %q", res.Restore)
	}
}

func TestWriteSPINoChip(t *testing.T) {
	fr := realFlashrom(t)
	_, err := WriteSPI(context.Background(), SPIOptions{AnyImage: true,
		Flashrom: fr, Programmer: "dummy", // emulates nothing
		Image: randBytes(18, chipSize), Regions: qemuLayout, BackupDir: t.TempDir(),
	})
	e := asError(t, err)
	if e.Op != "spi probe" || !containsLine(e.Flashrom, "No EEPROM/flash device found.") || !strings.Contains(e.Hint, "clip") {
		t.Errorf("error: %v", err)
	}
}

func TestWriteSPIMissingFlashrom(t *testing.T) {
	_, err := WriteSPI(context.Background(), SPIOptions{AnyImage: true,
		Flashrom: filepath.Join(t.TempDir(), "flashrom"), Programmer: "dummy",
		Image: []byte{1}, Regions: []boardcfg.Region{{Name: "a", Size: 1}}, BackupDir: t.TempDir(),
	})
	if err == nil || !strings.Contains(err.Error(), aptFlashrom) {
		t.Errorf("error %v does not give the apt line", err)
	}
}

func TestWriteSPITimeout(t *testing.T) {
	hang := writeScript(t, "#!/bin/sh\nexec sleep 60\n")
	start := time.Now()
	_, err := WriteSPI(context.Background(), SPIOptions{AnyImage: true,
		Flashrom: hang, Programmer: "dummy", Timeout: 300 * time.Millisecond,
		Image: []byte{1}, Regions: []boardcfg.Region{{Name: "a", Size: 1}}, BackupDir: t.TempDir(),
	})
	e := asError(t, err)
	if e.Op != "spi probe" || !strings.Contains(e.Msg, "timed out after 300ms") {
		t.Errorf("error: %v", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("timeout took %v", d)
	}

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	_, err = WriteSPI(ctx, SPIOptions{AnyImage: true,
		Flashrom: hang, Programmer: "dummy",
		Image: []byte{1}, Regions: []boardcfg.Region{{Name: "a", Size: 1}}, BackupDir: t.TempDir(),
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancel: %v", err)
	}
}

func containsLine(lines []string, sub string) bool {
	for _, l := range lines {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

func BenchmarkWriteSPI16MiB(b *testing.B) {
	fr := realFlashrom(b)
	dir := b.TempDir()
	chip := filepath.Join(dir, "chip.bin")
	imgs := [][]byte{randBytes(20, chipSize), randBytes(21, chipSize)}
	if err := os.WriteFile(chip, imgs[1], 0o644); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(chipSize - 0x10000)
	for i := 0; b.Loop(); i++ {
		if _, err := WriteSPI(context.Background(), SPIOptions{AnyImage: true,
			Flashrom: fr, Programmer: "dummy:emulate=W25Q128FV,image=" + chip,
			Image: imgs[i%2], Regions: qemuLayout, BackupDir: dir,
		}); err != nil {
			b.Fatal(err)
		}
	}
}
