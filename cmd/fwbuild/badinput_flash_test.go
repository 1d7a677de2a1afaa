package main

// Bad input to `fwbuild flash`: each case must exit non-zero, say what was wrong and
// what to do, and leave the chip (or USB target) exactly as it was.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/image"
	"github.com/fwbuild/fwbuild/launcher"
	"github.com/linuxboot/fiano/pkg/guid"
)

const flashChipSize = 32 << 20 // qemu-q35's chip

// flashDummy is flashrom's dummy programmer emulating a chip of qemu-q35's size on file chip.
func flashDummy(chip string) string {
	return fmt.Sprintf("dummy:emulate=VARIABLE_SIZE,size=%d,image=%s", flashChipSize, chip)
}

func noise(seed byte, n int) []byte {
	b := make([]byte, n)
	x := uint32(seed)*2654435761 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

func hexSHA(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// qemuSPIImage is a 32 MiB image of qemu-q35's shape (fd, vpd, me, bios with guests
// and payload nested) whose bios region ends with a hand-built firmware volume
// holding the launcher's file (the file flash checks for on a launcher board), so
// no OVMF or build is needed.
func qemuSPIImage(t *testing.T, seed byte) []byte {
	t.Helper()
	g := func(s string) []byte {
		v, err := guid.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return v[:]
	}
	img := bytes.Repeat([]byte{0xFF}, flashChipSize)
	copy(img[0x400000:0x7F0000], noise(seed, 0x3F0000))
	const size = 0x10000
	fv := img[flashChipSize-size:]
	h := fv[:0x48]
	clear(h)
	copy(h[0x10:], g("8C8CE578-8A3D-4F1C-9935-896185C32DD3"))
	binary.LittleEndian.PutUint64(h[0x20:], size)
	copy(h[0x28:], "_FVH")
	binary.LittleEndian.PutUint32(h[0x2C:], 0x0004FEFF)
	binary.LittleEndian.PutUint16(h[0x30:], 0x48)
	h[0x37] = 2
	binary.LittleEndian.PutUint32(h[0x38:], size/0x1000)
	binary.LittleEndian.PutUint32(h[0x3C:], 0x1000)
	var c uint16
	for i := 0; i < 0x48; i += 2 {
		c += binary.LittleEndian.Uint16(h[i:])
	}
	binary.LittleEndian.PutUint16(h[0x32:], -c)
	data := append([]byte{0, 0, 0, 0x19}, noise(seed+1, 1000)...)
	n := len(data)
	data[0], data[1], data[2] = byte(n), byte(n>>8), byte(n>>16)
	fh := make([]byte, 24)
	copy(fh, g(launcher.FileGUID))
	fh[18] = 0x09
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
	return img
}

// fakeBuild writes what `fwbuild build` leaves for an artefact: the file, manifest.json
// and SHA256SUMS, the records listing sum (the file's own hash, or another to fake a
// stale record).
func fakeBuild(t *testing.T, dir, board, name string, data []byte, sum string) string {
	t.Helper()
	os.MkdirAll(dir, 0o755)
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	m := `{"board": "` + board + `", "outputs": [{"name": "` + name + `", "size": ` + "1" + `, "sha256": "` + sum + `"}]}`
	os.WriteFile(filepath.Join(dir, "manifest.json"), []byte(m), 0o644)
	os.WriteFile(filepath.Join(dir, "SHA256SUMS"), []byte(sum+"  "+name+"\n"), 0o644)
	return p
}

func checkHint(t *testing.T, output string) {
	t.Helper()
	for _, m := range regexp.MustCompile(`(?m)what to do:(.*)$`).FindAllStringSubmatch(output, -1) {
		if h := strings.TrimSpace(m[1]); h == "" || strings.HasPrefix(h, ";") {
			t.Errorf("empty hint in:\n%s", output)
		}
	}
}

func TestFlashSPIBadInputs(t *testing.T) {
	if _, err := exec.LookPath("flashrom"); err != nil {
		t.Fatal("flashrom not installed: apt-get install -y flashrom")
	}
	good := qemuSPIImage(t, 1)
	dir := t.TempDir()
	goodPath := filepath.Join(dir, "good.bin")
	os.WriteFile(goodPath, good, 0o644)
	randomPath := filepath.Join(dir, "random.bin")
	os.WriteFile(randomPath, noise(2, flashChipSize), 0o644)
	smallPath := filepath.Join(dir, "small.bin")
	os.WriteFile(smallPath, good[:8<<20], 0o644)
	// A build whose spi.bin changed after the build wrote its records.
	staleOut := filepath.Join(dir, "stale-out")
	stalePath := fakeBuild(t, staleOut, "qemu-q35", "spi.bin", good, hexSHA(qemuSPIImage(t, 3)))
	otherBoard := filepath.Join(dir, "other-board")
	otherPath := fakeBuild(t, otherBoard, "rpi5", "spi.bin", good, hexSHA(good))

	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"preserved region named", []string{"--image", goodPath, "--region", "vpd"},
			[]string{"refusing to write region vpd (0x1000-0x10fff): the board profile marks it preserve", "--overwrite-preserved vpd"}},
		{"preserved region among others", []string{"--image", goodPath, "--region", "bios", "--region", "vpd"},
			[]string{"refusing to write region vpd"}},
		{"override alone does not select", []string{"--image", goodPath, "--overwrite-preserved", "vpd"},
			[]string{"--overwrite-preserved vpd without writing vpd"}},
		{"override of a region that is not preserved", []string{"--image", goodPath, "--region", "bios", "--overwrite-preserved", "bios"},
			[]string{`region "bios" is not marked preserve`}},
		{"random 32 MiB", []string{"--image", randomPath},
			[]string{"the image is not firmware for this board: no firmware volume in region bios (0x400000-0x1ffffff)"}},
		{"8 MiB image", []string{"--image", smallPath},
			[]string{"image is 8 MiB, the board's chip is 32 MiB (outputs.spi.chip_size)"}},
		{"explicit image off its manifest", []string{"--image", stalePath},
			[]string{"the image's SHA-256 " + hexSHA(good) + " differs from manifest.json's " + hexSHA(qemuSPIImage(t, 3))}},
		{"default image off its manifest", []string{"--out", staleOut},
			[]string{"differs from manifest.json's"}},
		{"another board's build", []string{"--image", otherPath},
			[]string{`is a build of board "rpi5", not "qemu-q35"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			chip := filepath.Join(t.TempDir(), "chip.bin")
			before := noise(9, flashChipSize)
			os.WriteFile(chip, before, 0o644)
			backups := filepath.Join(t.TempDir(), "backups")
			args := append([]string{"flash", "spi", "--board", "qemu-q35", "--programmer", flashDummy(chip),
				"--backup-dir", backups}, c.args...)
			code, output := runIn(t, context.Background(), t.TempDir(), args...)
			if code != 1 {
				t.Errorf("exit %d, want 1:\n%s", code, output)
			}
			for _, w := range c.want {
				if !strings.Contains(output, w) {
					t.Errorf("output lacks %q:\n%s", w, output)
				}
			}
			checkHint(t, output)
			if now, _ := os.ReadFile(chip); !bytes.Equal(now, before) {
				t.Errorf("the chip was modified (vpd intact: %v)", bytes.Equal(now[0x1000:0x11000], before[0x1000:0x11000]))
			}
			if _, err := os.Stat(backups); err == nil {
				t.Error("refused before reading the chip, yet a backup directory was made")
			}
		})
	}
}

// The override writes the preserved region, printing what is lost before the write.
func TestFlashSPIOverwritePreserved(t *testing.T) {
	good := qemuSPIImage(t, 4)
	out := filepath.Join(t.TempDir(), "out")
	fakeBuild(t, out, "qemu-q35", "spi.bin", good, hexSHA(good))
	chip := filepath.Join(t.TempDir(), "chip.bin")
	before := noise(5, flashChipSize)
	os.WriteFile(chip, before, 0o644)
	code, output := runIn(t, context.Background(), t.TempDir(), "flash", "spi", "--board", "qemu-q35", "--out", out,
		"--programmer", flashDummy(chip), "--region", "vpd", "--overwrite-preserved", "vpd")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, output)
	}
	warn := "WARNING: preserved region vpd 0x1000-0x10fff (64 KiB) will be OVERWRITTEN: the chip holds data (sha256 " + hexSHA(before[0x1000:0x11000]) +
		"), the image has blank (all 0xFF) (sha256 " + hexSHA(good[0x1000:0x11000]) + "); the chip's bytes stay in the backup "
	if !strings.Contains(output, warn) {
		t.Errorf("output lacks %q:\n%s", warn, output)
	}
	now, _ := os.ReadFile(chip)
	if !bytes.Equal(now[0x1000:0x11000], good[0x1000:0x11000]) || !bytes.Equal(now[:0x1000], before[:0x1000]) || !bytes.Equal(now[0x11000:], before[0x11000:]) {
		t.Error("want the image's vpd and the rest of the chip untouched")
	}
	if m, _ := filepath.Glob(filepath.Join(out, "backups", "spi-backup-*.bin")); len(m) != 1 {
		t.Errorf("backups %v", m)
	} else if b, _ := os.ReadFile(m[0]); !bytes.Equal(b, before) {
		t.Error("backup does not hold the factory data")
	}
}

// Ctrl-C mid-write is reported as an interruption, with the chip's state, the backup
// and the restore command, and a hint that is not empty.
func TestFlashSPIInterrupted(t *testing.T) {
	real, err := exec.LookPath("flashrom")
	if err != nil {
		t.Fatal("flashrom not installed: apt-get install -y flashrom")
	}
	good := qemuSPIImage(t, 6)
	img := filepath.Join(t.TempDir(), "spi.bin")
	os.WriteFile(img, good, 0o644)
	chip := filepath.Join(t.TempDir(), "chip.bin")
	before := noise(7, flashChipSize)
	os.WriteFile(chip, before, 0o644)
	// flashrom, except that the write hangs until killed, as a slow programmer's does.
	hang := filepath.Join(t.TempDir(), "flashrom")
	writing := filepath.Join(t.TempDir(), "writing")
	os.WriteFile(hang, []byte("#!/bin/sh\ncase \" $* \" in *\" -w \"*) touch "+writing+"; exec sleep 60;; esac\nexec "+real+" \"$@\"\n"), 0o755)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		// The write starts once the backup (about 3 s with the dummy programmer) is done.
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if _, err := os.Stat(writing); err == nil {
				time.Sleep(300 * time.Millisecond)
				break
			}
		}
		cancel()
	}()
	code, output := runIn(t, ctx, t.TempDir(), "flash", "spi", "--board", "qemu-q35", "--image", img, "--flashrom", hang,
		"--programmer", flashDummy(chip), "--backup-dir", t.TempDir())
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	for _, w := range []string{"interrupted while writing bios", "chip: state unknown", "backup: ", "restore: " + hang + " -p dummy",
		"what to do: do not power the board off"} {
		if !strings.Contains(output, w) {
			t.Errorf("output lacks %q:\n%s", w, output)
		}
	}
	if strings.Contains(output, "does not read the same twice") {
		t.Errorf("interrupt reported as a bad connection:\n%s", output)
	}
	checkHint(t, output)
	if now, _ := os.ReadFile(chip); !bytes.Equal(now, before) {
		t.Error("chip modified")
	}
}

// writeUSBImage writes a 40 MiB usb.img holding a minimal PE as its BOOTX64.EFI.
func writeUSBImage(t *testing.T, path string) {
	t.Helper()
	pe := make([]byte, 4096)
	copy(pe, "MZ")
	binary.LittleEndian.PutUint32(pe[0x3C:], 0x40)
	copy(pe[0x40:], "PE\x00\x00")
	binary.LittleEndian.PutUint16(pe[0x44:], 0x8664)
	binary.LittleEndian.PutUint16(pe[0x54:], 240)
	binary.LittleEndian.PutUint16(pe[0x56:], 0x22)
	binary.LittleEndian.PutUint16(pe[0x58:], 0x20B)
	binary.LittleEndian.PutUint32(pe[0x58+32:], 0x1000)
	binary.LittleEndian.PutUint32(pe[0x58+36:], 0x200)
	binary.LittleEndian.PutUint16(pe[0x58+68:], 10)
	binary.LittleEndian.PutUint32(pe[0x58+108:], 16)
	os.MkdirAll(filepath.Dir(path), 0o755)
	if err := image.WriteUSB(context.Background(), path, image.USBSpec{Size: 40 << 20, Payload: pe, Name: "t", Epoch: time.Unix(1704067200, 0)}); err != nil {
		t.Fatal(err)
	}
}

func TestFlashUSBBadInputs(t *testing.T) {
	dir := t.TempDir()
	goodPath := filepath.Join(dir, "good", "usb.img")
	writeUSBImage(t, goodPath)
	good, _ := os.ReadFile(goodPath)
	randomPath := filepath.Join(dir, "random.img")
	os.WriteFile(randomPath, noise(8, 40<<20), 0o644)
	stalePath := fakeBuild(t, filepath.Join(dir, "stale"), "qemu-q35", "usb.img", good, hexSHA(noise(9, 10)))
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"random image", []string{"--image", randomPath}, "the image is not a bootable disk image: not a GPT disk image"},
		{"image off its manifest", []string{"--image", stalePath, "--board", "qemu-q35"}, "differs from manifest.json's"},
	} {
		t.Run(c.name, func(t *testing.T) {
			target := filepath.Join(t.TempDir(), "key.img")
			code, output := runIn(t, context.Background(), t.TempDir(), append([]string{"flash", "usb", "--device", target}, c.args...)...)
			if code != 1 || !strings.Contains(output, c.want) {
				t.Errorf("exit %d (want 1), output lacks %q:\n%s", code, c.want, output)
			}
			checkHint(t, output)
			if _, err := os.Stat(target); err == nil {
				t.Error("refused image was written")
			}
		})
	}
	target := filepath.Join(t.TempDir(), "key.img")
	if code, output := runIn(t, context.Background(), t.TempDir(), "flash", "usb", "--device", target, "--image", goodPath); code != 0 {
		t.Errorf("good image: exit %d:\n%s", code, output)
	}
}
