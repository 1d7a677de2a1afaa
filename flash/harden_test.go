package flash

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/boardcfg"
	"github.com/linuxboot/fiano/pkg/guid"
)

// boardLayout is qemu-q35's chip as its profile gives it.
var boardLayout = []boardcfg.Region{
	{Name: "vpd", Start: 0, Size: 0x10000, Preserve: true},
	{Name: "guests", Start: 0x10000, Size: 0x3F0000, Guests: true},
	{Name: "bios", Start: 0x400000, Size: 0xC00000, Firmware: true},
}

const payloadGUID = "7C04A583-9E3E-4F1C-AD65-E05268D0B4D1" // qemu-q35's outputs.spi.payload_file

// synthVolume builds a PI-spec firmware volume of size bytes holding one application
// file with the given GUID: the smallest thing image.CheckFirmware accepts, built by hand
// so that no OVMF download is needed.
func synthVolume(t testing.TB, fileGUID string, size int) []byte {
	t.Helper()
	g := func(s string) []byte {
		v, err := guid.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return v[:]
	}
	fv := bytes.Repeat([]byte{0xFF}, size)
	h := fv[:0x48]
	clear(h)
	copy(h[0x10:], g("8C8CE578-8A3D-4F1C-9935-896185C32DD3")) // FFS2
	binary.LittleEndian.PutUint64(h[0x20:], uint64(size))
	copy(h[0x28:], "_FVH")
	binary.LittleEndian.PutUint32(h[0x2C:], 0x0004FEFF)
	binary.LittleEndian.PutUint16(h[0x30:], 0x48)
	h[0x37] = 2
	binary.LittleEndian.PutUint32(h[0x38:], uint32(size/0x1000))
	binary.LittleEndian.PutUint32(h[0x3C:], 0x1000)
	var c uint16
	for i := 0; i < 0x48; i += 2 {
		c += binary.LittleEndian.Uint16(h[i:])
	}
	binary.LittleEndian.PutUint16(h[0x32:], -c)
	// One FFS file: a raw section of noise.
	data := append([]byte{0, 0, 0, 0x19}, randBytes(77, 1000)...)
	n := len(data)
	data[0], data[1], data[2] = byte(n), byte(n>>8), byte(n>>16)
	fh := make([]byte, 24)
	copy(fh, g(fileGUID))
	fh[18] = 0x09 // application
	n += 24
	fh[20], fh[21], fh[22] = byte(n), byte(n>>8), byte(n>>16)
	var sum byte
	for i, b := range fh {
		if i != 17 && i != 23 {
			sum += b
		}
	}
	fh[16], fh[17], fh[23] = -sum, 0xAA, 0xF8
	copy(fv[0x48:], append(fh, data...))
	return fv
}

// boardImage is a 16 MiB chip image of qemu-q35's shape: factory data, guests, and a
// firmware volume holding fileGUID at the start of the bios region.
func boardImage(t testing.TB, seed uint64, fileGUID string) []byte {
	img := bytes.Repeat([]byte{0xFF}, chipSize)
	copy(img[0x10000:0x400000], randBytes(seed, 0x3F0000))
	copy(img[0x400000:], synthVolume(t, fileGUID, 0x10000))
	return img
}

// noFlashrom is a stand-in flashrom that records any call: a refused request must not
// even probe the chip.
func noFlashrom(t *testing.T) (bin, marker string) {
	marker = filepath.Join(t.TempDir(), "ran")
	return writeScript(t, "#!/bin/sh\ntouch "+marker+"\nexit 1\n"), marker
}

func flashromRan(marker string) bool { _, err := os.Stat(marker); return err == nil }

// checkWhatToDo fails if the printed error has an empty or ";"-led hint.
func checkWhatToDo(t *testing.T, msg string) {
	t.Helper()
	m := regexp.MustCompile(`(?m)^  what to do: (.*)$`).FindAllStringSubmatch(msg, -1)
	if len(m) != 1 || strings.TrimSpace(m[0][1]) == "" || strings.HasPrefix(m[0][1], ";") {
		t.Errorf("want exactly one non-empty \"what to do\" line:\n%s", msg)
	}
}

func TestWriteSPIRefusesPreservedRegion(t *testing.T) {
	img := boardImage(t, 1, payloadGUID)
	confirm := func([]PreservedLoss) error { return nil }
	for _, tc := range []struct {
		name      string
		write     []string
		overwrite []string
		confirm   func([]PreservedLoss) error
		want      []string
	}{
		{"preserved region named alone", []string{"vpd"}, nil, confirm,
			[]string{"refusing to write region vpd (0x0-0xffff): the board profile marks it preserve", "--overwrite-preserved vpd"}},
		{"preserved region among others", []string{"bios", "vpd"}, nil, confirm,
			[]string{"refusing to write region vpd (0x0-0xffff)"}},
		{"override without naming the region", []string{"bios"}, []string{"vpd"}, confirm,
			[]string{"--overwrite-preserved vpd without writing vpd", "--region vpd --overwrite-preserved vpd"}},
		{"override with the default regions", nil, []string{"vpd"}, confirm,
			[]string{"--overwrite-preserved vpd without writing vpd"}},
		{"override of a region that is not preserved", []string{"bios"}, []string{"bios"}, confirm,
			[]string{`region "bios" is not marked preserve`}},
		{"override of an unknown region", []string{"vpd"}, []string{"vdp"}, confirm,
			[]string{`no region "vdp" in the layout`}},
		{"override nobody is shown", []string{"vpd"}, []string{"vpd"}, nil,
			[]string{"ConfirmOverwrite is not"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chip, old := emulatedChip(t, 2, chipSize)
			fr, marker := noFlashrom(t)
			_, err := WriteSPI(context.Background(), SPIOptions{
				Flashrom: fr, Programmer: "dummy:emulate=W25Q128FV,image=" + chip, ChipSize: chipSize,
				Image: img, Regions: boardLayout, PayloadFile: payloadGUID, BackupDir: t.TempDir(),
				Write: tc.write, OverwritePreserved: tc.overwrite, ConfirmOverwrite: tc.confirm,
			})
			e := asError(t, err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q", w)
				}
			}
			if e.Op != "spi check" || flashromRan(marker) {
				t.Errorf("op %q, flashrom ran %v", e.Op, flashromRan(marker))
			}
			checkWhatToDo(t, err.Error())
			if !bytes.Equal(readFile(t, chip), old) {
				t.Error("chip modified")
			}
		})
	}
}

// With the override, the loss is shown before writing (also on a dry run), and a
// ConfirmOverwrite that says no stops with the chip untouched.
func TestWriteSPIOverridePreservedShowsLoss(t *testing.T) {
	fr := realFlashrom(t)
	chip, old := emulatedChip(t, 3, chipSize)
	img := boardImage(t, 4, payloadGUID) // vpd blank (all 0xFF) in the image
	var shown []string
	opts := SPIOptions{
		Flashrom: fr, Programmer: "dummy:emulate=W25Q128FV,image=" + chip, ChipSize: chipSize,
		Image: img, Regions: boardLayout, PayloadFile: payloadGUID, BackupDir: t.TempDir(),
		Write: []string{"vpd"}, OverwritePreserved: []string{"vpd"}, DryRun: true,
		ConfirmOverwrite: func(ls []PreservedLoss) error {
			for _, l := range ls {
				shown = append(shown, l.String())
			}
			return errors.New("operator said no")
		},
	}
	_, err := WriteSPI(context.Background(), opts)
	e := asError(t, err)
	if e.Chip != ChipUnchanged || !strings.Contains(err.Error(), "operator said no") {
		t.Errorf("declined: %v", err)
	}
	if len(shown) != 1 || !strings.Contains(shown[0], "preserved region vpd 0x0-0xffff (64 KiB) will be OVERWRITTEN: the chip holds data (sha256 "+sha(old[:0x10000])+"), the image has blank (all 0xFF) (sha256 ") ||
		!strings.Contains(shown[0], "the chip's bytes stay in the backup "+e.Backup) {
		t.Errorf("shown %q", shown)
	}
	if !bytes.Equal(readFile(t, chip), old) {
		t.Fatal("declined override modified the chip")
	}

	shown = nil
	opts.ConfirmOverwrite = func(ls []PreservedLoss) error {
		shown = append(shown, ls[0].String())
		if !bytes.Equal(readFile(t, chip), old) {
			t.Error("chip written before the loss was shown")
		}
		return nil
	}
	res, err := WriteSPI(context.Background(), opts)
	if err != nil || len(shown) != 1 || !bytes.Equal(readFile(t, chip), old) || len(res.Overwritten) != 1 {
		t.Fatalf("dry run: %v, shown %q", err, shown)
	}
	opts.DryRun = false
	res, err = WriteSPI(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	got := readFile(t, chip)
	if !bytes.Equal(got[:0x10000], img[:0x10000]) || !bytes.Equal(got[0x10000:], old[0x10000:]) {
		t.Error("want the image's vpd and the rest untouched")
	}
	if !bytes.Equal(readFile(t, res.Backup)[:0x10000], old[:0x10000]) {
		t.Error("backup lacks the overwritten factory data")
	}
}

func TestWriteSPIRefusesNonFirmware(t *testing.T) {
	for _, tc := range []struct {
		name string
		img  []byte
		want string
	}{
		{"random 16 MiB", randBytes(5, chipSize), "no firmware volume in region bios (0x400000-0xffffff)"},
		{"erased 16 MiB", bytes.Repeat([]byte{0xFF}, chipSize), "no firmware volume in region bios (0x400000-0xffffff)"},
		{"zeroes", make([]byte, chipSize), "no firmware volume in region bios (0x400000-0xffffff)"},
		{"firmware without the payload slot", boardImage(t, 6, "01234567-89AB-CDEF-0123-456789ABCDEF"),
			"region bios (0x400000-0xffffff) holds firmware volumes 8C8CE578-8A3D-4F1C-9935-896185C32DD3 but no file " + payloadGUID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chip, old := emulatedChip(t, 7, chipSize)
			fr, marker := noFlashrom(t)
			_, err := WriteSPI(context.Background(), SPIOptions{
				Flashrom: fr, Programmer: "dummy:emulate=W25Q128FV,image=" + chip, ChipSize: chipSize,
				Image: tc.img, Regions: boardLayout, PayloadFile: payloadGUID, BackupDir: t.TempDir(),
			})
			e := asError(t, err)
			if e.Op != "spi check" || !strings.Contains(e.Msg, "the image is not firmware for this board: "+tc.want) || flashromRan(marker) {
				t.Errorf("error %v (flashrom ran: %v)", err, flashromRan(marker))
			}
			checkWhatToDo(t, err.Error())
			if !bytes.Equal(readFile(t, chip), old) {
				t.Error("chip modified")
			}
		})
	}
}

// The firmware-shaped image is flashed: the check refuses what it must, not everything.
func TestWriteSPIBoardImage(t *testing.T) {
	fr := realFlashrom(t)
	chip, old := emulatedChip(t, 8, chipSize)
	img := boardImage(t, 9, payloadGUID)
	imgPath := writeTemp(t, "spi.bin", img)
	writeManifest(t, filepath.Dir(imgPath), "qemu-q35", "spi.bin", sha(img))
	built, err := FindBuilt(imgPath, "qemu-q35")
	if err != nil || len(built) != 2 {
		t.Fatalf("FindBuilt: %+v %v", built, err)
	}
	res, err := WriteSPI(context.Background(), SPIOptions{
		Flashrom: fr, Programmer: "dummy:emulate=W25Q128FV,image=" + chip, ChipSize: chipSize,
		Image: img, Regions: boardLayout, PayloadFile: payloadGUID, Built: built, BackupDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	got := readFile(t, chip)
	if !bytes.Equal(got[:0x10000], old[:0x10000]) || !bytes.Equal(got[0x10000:], img[0x10000:]) {
		t.Error("want old vpd + image guests and bios")
	}
	if strings.Join(res.Written, ",") != "guests,bios" {
		t.Errorf("written %v", res.Written)
	}
}

// writeManifest writes manifest.json and SHA256SUMS as a build of board would.
func writeManifest(t testing.TB, dir, board, name, sum string) {
	t.Helper()
	m := `{"board": "` + board + `", "outputs": [{"name": "other.bin", "size": 1, "sha256": "` + strings.Repeat("0", 64) + `"}, {"name": "` + name + `", "size": 1, "sha256": "` + sum + `"}]}`
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), []byte(m), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "SHA256SUMS"), []byte(strings.Repeat("1", 64)+"  other.bin\n"+sum+"  "+name+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestWriteSPIRefusesImageOffManifest(t *testing.T) {
	img := boardImage(t, 10, payloadGUID)
	dir := t.TempDir()
	imgPath := filepath.Join(dir, "spi.bin")
	os.WriteFile(imgPath, img, 0o644)
	stale := sha(boardImage(t, 11, payloadGUID))
	writeManifest(t, dir, "qemu-q35", "spi.bin", stale)
	built, err := FindBuilt(imgPath, "qemu-q35")
	if err != nil {
		t.Fatal(err)
	}
	chip, old := emulatedChip(t, 12, chipSize)
	fr, marker := noFlashrom(t)
	_, err = WriteSPI(context.Background(), SPIOptions{
		Flashrom: fr, Programmer: "dummy:emulate=W25Q128FV,image=" + chip, ChipSize: chipSize,
		Image: img, Regions: boardLayout, PayloadFile: payloadGUID, Built: built, BackupDir: t.TempDir(),
	})
	e := asError(t, err)
	want := "the image's SHA-256 " + sha(img) + " differs from manifest.json's " + stale + " for spi.bin (" + filepath.Join(dir, "manifest.json") + ")"
	if e.Op != "spi check" || !strings.Contains(e.Msg, want) || flashromRan(marker) {
		t.Errorf("error %v, want %q", err, want)
	}
	if !bytes.Equal(readFile(t, chip), old) {
		t.Error("chip modified")
	}
	// SHA256SUMS alone is checked as well.
	os.Remove(filepath.Join(dir, "manifest.json"))
	os.WriteFile(filepath.Join(dir, "SHA256SUMS"), []byte(stale+" *spi.bin\n"), 0o644)
	built, err = FindBuilt(imgPath, "qemu-q35")
	if err != nil || len(built) != 1 || checkBuilt(sha(img), built) == nil ||
		!strings.Contains(checkBuilt(sha(img), built).Error(), "differs from SHA256SUMS's "+stale) {
		t.Errorf("SHA256SUMS: %+v %v", built, err)
	}
}

func TestFindBuilt(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "spi.bin")
	if b, err := FindBuilt(img, "qemu-q35"); err != nil || len(b) != 0 {
		t.Errorf("no records: %+v %v", b, err)
	}
	writeManifest(t, dir, "other-board", "spi.bin", strings.Repeat("a", 64))
	if _, err := FindBuilt(img, "qemu-q35"); err == nil || !strings.Contains(err.Error(), `is a build of board "other-board", not "qemu-q35"`) {
		t.Errorf("other board: %v", err)
	}
	if b, err := FindBuilt(filepath.Join(dir, "renamed.bin"), "other-board"); err != nil || len(b) != 0 {
		t.Errorf("a name the records do not list: %+v %v", b, err)
	}
	os.WriteFile(filepath.Join(dir, "manifest.json"), []byte("{not json"), 0o644)
	if _, err := FindBuilt(img, ""); err == nil || !strings.Contains(err.Error(), "is not a build manifest") {
		t.Errorf("corrupt manifest: %v", err)
	}
}

// The size mismatch is named first, not a region that does not fit.
func TestWriteSPIWrongSizeNamesSizes(t *testing.T) {
	fr, marker := noFlashrom(t)
	small := boardImage(t, 13, payloadGUID)[:8<<20]
	opts := SPIOptions{Flashrom: fr, Programmer: "dummy", ChipSize: chipSize, Image: small, Regions: boardLayout,
		PayloadFile: payloadGUID, BackupDir: t.TempDir()}
	_, err := WriteSPI(context.Background(), opts)
	if e := asError(t, err); !strings.HasPrefix(e.Msg, "image is 8 MiB, the board's chip is 16 MiB (outputs.spi.chip_size)") || strings.Contains(e.Msg, "region") {
		t.Errorf("with ChipSize: %v", err)
	}
	opts.ChipSize = 0
	_, err = WriteSPI(context.Background(), opts)
	if e := asError(t, err); !strings.HasPrefix(e.Msg, "image is 8 MiB, but the layout's regions reach 0xffffff (16 MiB)") {
		t.Errorf("without ChipSize: %v", err)
	}
	if flashromRan(marker) {
		t.Error("flashrom ran")
	}
}

// interruptingFlashrom is the real flashrom, except that the run holding stage in its
// arguments hangs until it is killed, as a slow read or write would when Ctrl-C comes.
func interruptingFlashrom(t *testing.T, real, stage string) string {
	return writeScript(t, "#!/bin/sh\ncase \" $* \" in *\""+stage+"\"*) exec sleep 60;; esac\nexec "+real+" \"$@\"\n")
}

func TestWriteSPIInterrupted(t *testing.T) {
	fr := realFlashrom(t)
	for _, tc := range []struct {
		phase, stage string // the phase to interrupt, a word only that phase's flashrom run has
		op, chip     string
		want         string
		restore      bool
	}{
		{"probe", " --flash-size ", "spi probe", ChipUnchanged, "interrupted while probing the chip: nothing was written", false},
		{"backup", " -r ", "spi backup", ChipUnchanged, "interrupted while reading the chip for the backup: nothing was written", false},
		{"backup-verify", " -v ", "spi backup", ChipUnchanged, "interrupted while checking the backup against the chip: nothing was written", false},
		{"write", " -w ", "spi write", ChipUnknown, "interrupted while writing guests, bios: the chip may be partly written", true},
		// The real flashrom, killed a second into its 3-second write of the emulated chip.
		{"write", " no such argument ", "spi write", ChipUnknown, "interrupted while writing guests, bios: the chip may be partly written", true},
	} {
		t.Run(tc.phase+tc.stage, func(t *testing.T) {
			chip, old := emulatedChip(t, 14, chipSize)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			start := time.Now()
			res, err := WriteSPI(ctx, SPIOptions{
				Flashrom: interruptingFlashrom(t, fr, tc.stage), Programmer: "dummy:emulate=W25Q128FV,image=" + chip,
				ChipSize: chipSize, Image: boardImage(t, 15, payloadGUID), Regions: boardLayout, PayloadFile: payloadGUID,
				BackupDir: t.TempDir(),
				Progress: func(p Progress) {
					if p.Phase == tc.phase && !p.Final && p.Elapsed == 0 {
						time.AfterFunc(time.Second, cancel) // flashrom is running by then
					}
				},
			})
			if d := time.Since(start); d > 20*time.Second {
				t.Errorf("interrupt took %v", d)
			}
			e := asError(t, err)
			msg := err.Error()
			if e.Op != tc.op || e.Chip != tc.chip || !strings.Contains(e.Msg, tc.want) || !errors.Is(err, context.Canceled) {
				t.Errorf("got op %q chip %q: %v", e.Op, e.Chip, err)
			}
			if strings.Contains(msg, "does not read the same twice") || strings.Contains(msg, "check the clip") {
				t.Errorf("an interrupt reported as a bad connection:\n%s", msg)
			}
			checkWhatToDo(t, msg)
			if tc.restore {
				if e.Backup == "" || e.Restore == "" || !strings.Contains(msg, "backup: "+e.Backup) || !strings.Contains(msg, "restore: "+e.Restore) ||
					!bytes.Equal(readFile(t, e.Backup), old) || res.Backup != e.Backup {
					t.Errorf("no usable backup and restore command:\n%s", msg)
				}
			}
			if !bytes.Equal(readFile(t, chip), old) {
				t.Error("chip modified")
			}
		})
	}
}

// Whoever builds an Error, the printed hint is never empty nor starts with "; ".
func TestErrorWhatToDoNeverEmpty(t *testing.T) {
	for _, op := range []string{"spi check", "spi probe", "spi backup", "spi write", "spi verify", "usb check", "usb write", "usb verify"} {
		for _, hint := range []string{"", " ", ";", "; then restore", "check the clip"} {
			for _, chip := range []string{"", ChipUnchanged, ChipModified, ChipUnknown} {
				for _, restore := range []string{"", "flashrom -p x -w b"} {
					e := &Error{Op: op, Msg: "m", Hint: hint, Chip: chip, Restore: restore}
					checkWhatToDo(t, e.Error())
				}
			}
		}
	}
	if got := joinHints("", " ; ", "a", ";b;", ""); got != "a; b" {
		t.Errorf("joinHints = %q", got)
	}
	// flashrom's diagnosis has no hint for a problem it does not know: the Error still has one.
	e := &Error{Op: "spi write", Msg: "flashrom failed", Hint: diagnosis{}.hint("dummy"), Chip: ChipModified, Restore: "r"}
	if !strings.Contains(e.Error(), "what to do: restore the backup with the restore command above") {
		t.Errorf("fallback hint: %v", e)
	}
}
