package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/creack/pty"
)

// runTTY runs fwbuild with stdout and stderr on a pseudo-terminal, as a
// person at a terminal does, and returns what the terminal received.
func runTTY(t *testing.T, cacheDir string, args ...string) (int, string) {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatalf("open a pseudo-terminal: %v", err)
	}
	defer ptmx.Close()
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 40, Cols: 120}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		io.Copy(&out, ptmx) // ends with EIO once the terminal side is closed
	}()
	code := run(context.Background(), append([]string{"--boards", "../../boards", "--cache", cacheDir}, args...), tty, tty)
	tty.Close()
	wg.Wait()
	return code, out.String()
}

// barMarks are what progressbar draws; plain output has none of them.
func hasBar(s string) bool { return strings.Contains(s, "█") && strings.Contains(s, "100%") }

// fullCount finds a bar's "(n/n)": all of the objects counted.
func fullCount(s string) bool {
	for _, m := range regexp.MustCompile(`\((\d+)/(\d+)\)`).FindAllStringSubmatch(s, -1) {
		if m[1] == m[2] && m[1] != "0" {
			return true
		}
	}
	return false
}

func checkPlain(t *testing.T, what, s string) {
	t.Helper()
	for _, bad := range []string{"\r", "\x1b[", "█", "%|"} {
		if strings.Contains(s, bad) {
			t.Errorf("%s without a terminal: output holds %q, want plain lines:\n%s", what, bad, s)
		}
	}
}

func TestFlashSPIProgressBar(t *testing.T) {
	good := qemuSPIImage(t, 4)
	out := filepath.Join(t.TempDir(), "out")
	fakeBuild(t, out, "qemu-q35", "spi.bin", good, hexSHA(good))
	flash := func(run func(...string) (int, string)) string {
		t.Helper()
		chip := filepath.Join(t.TempDir(), "chip.bin")
		os.WriteFile(chip, noise(5, flashChipSize), 0o644)
		code, output := run("flash", "spi", "--board", "qemu-q35", "--out", out, "--programmer", flashDummy(chip), "--backup-dir", t.TempDir())
		if code != 0 {
			t.Fatalf("exit %d:\n%s", code, output)
		}
		// qemu-q35's unit region (0xA00000, 64 KiB, in bios) keeps the chip's bytes.
		if now, _ := os.ReadFile(chip); !bytes.Equal(now[0x400000:0xA00000], good[0x400000:0xA00000]) || !bytes.Equal(now[0xA10000:], good[0xA10000:]) {
			t.Error("the chip's bios region is not the image's")
		} else if !bytes.Equal(now[0xA00000:0xA10000], noise(5, flashChipSize)[0xA00000:0xA10000]) {
			t.Error("the chip's unit region was not kept")
		}
		return output
	}
	term := flash(func(a ...string) (int, string) { return runTTY(t, t.TempDir(), a...) })
	if !hasBar(term) || !strings.Contains(term, "flash: write") || !strings.Contains(term, "flash: verify") {
		t.Errorf("on a terminal: want bars for the write and verify phases:\n%q", term)
	}
	plain := flash(func(a ...string) (int, string) { return runIn(t, context.Background(), t.TempDir(), a...) })
	checkPlain(t, "flash spi", plain)
	for _, want := range []string{"flash: write 29360128 bytes ...\n", "flash: write: 29360128/29360128 bytes in ", "flash: verify: "} {
		if !strings.Contains(plain, want) {
			t.Errorf("without a terminal: output lacks %q:\n%s", want, plain)
		}
	}
	// --json and -v keep the plain lines on a terminal too.
	chip := filepath.Join(t.TempDir(), "chip.bin")
	os.WriteFile(chip, noise(5, flashChipSize), 0o644)
	if code, output := runTTY(t, t.TempDir(), "flash", "spi", "-v", "--board", "qemu-q35", "--out", out, "--programmer", flashDummy(chip), "--backup-dir", t.TempDir()); code != 0 || hasBar(output) {
		t.Errorf("-v on a terminal: exit %d, want no bar:\n%s", code, output)
	}
}

func TestFlashUSBProgressBar(t *testing.T) {
	img := filepath.Join(t.TempDir(), "usb.img")
	writeUSBImage(t, img)
	want, _ := os.ReadFile(img)
	flash := func(run func(...string) (int, string)) string {
		t.Helper()
		target := filepath.Join(t.TempDir(), "key.img")
		code, output := run("flash", "usb", "--device", target, "--image", img)
		if got, _ := os.ReadFile(target); code != 0 || !bytes.Equal(got, want) {
			t.Fatalf("exit %d, target holds the image: %v:\n%s", code, bytes.Equal(got, want), output)
		}
		return output
	}
	term := flash(func(a ...string) (int, string) { return runTTY(t, t.TempDir(), a...) })
	if !hasBar(term) || !strings.Contains(term, "flash: write") || !strings.Contains(term, "flash: verify") || !strings.Contains(term, "40/40 MiB") {
		t.Errorf("on a terminal: want bars for the write and verify phases, in bytes:\n%q", term)
	}
	plain := flash(func(a ...string) (int, string) { return runIn(t, context.Background(), t.TempDir(), a...) })
	checkPlain(t, "flash usb", plain)
	if !strings.Contains(plain, "flash: write: 41943040/41943040 bytes in ") {
		t.Errorf("without a terminal: no write line:\n%s", plain)
	}
}

// The kernel stage reports objects through the progress seam: a cached
// kernel shows as a full bar of the objects it compiled (a cold build's
// counting is TestBuildReportsObjects in hvcore/kbuild, with a real make).
func TestKernelProgressBar(t *testing.T) {
	cache := seededCache(t, true)
	code, term := runTTY(t, cache, "build", "--board", "qemu-q35", "--only", "kernel", "--out", t.TempDir())
	if code != 0 || !hasBar(term) || !strings.Contains(term, "kernel (cached)") || !fullCount(term) {
		t.Errorf("on a terminal: exit %d, want a full bar of the cached kernel's objects:\n%q", code, term)
	}
	code, plain := runIn(t, context.Background(), cache, "build", "--board", "qemu-q35", "--only", "kernel", "--out", t.TempDir())
	if code != 0 || !strings.Contains(plain, "[qemu-q35] kernel: cached") {
		t.Errorf("without a terminal: exit %d:\n%s", code, plain)
	}
	checkPlain(t, "build --only kernel", plain)
}
