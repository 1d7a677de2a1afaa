package main

// Publishing and cancellation, from the outside: the output directory is
// always one whole build, a cancelled build never publishes, a bad --out
// fails before the first stage.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/internal/testdeps"
)

func sha256sumOK(t *testing.T, dir string) {
	t.Helper()
	cmd := exec.Command("sha256sum", "--strict", "-c", "SHA256SUMS")
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("sha256sum -c SHA256SUMS in %s: %v\n%s", dir, err, b)
	}
}

func diskUsage(t *testing.T, p string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

func fileSize(t *testing.T, p string) int64 {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

func mustBuild(t *testing.T, cache string, args ...string) string {
	t.Helper()
	code, output := runIn(t, context.Background(), cache, append([]string{"build"}, args...)...)
	if code != 0 {
		t.Fatalf("fwbuild build %v: exit %d:\n%s", args, code, output)
	}
	return output
}

// The file system fills in the middle of the publish, after the first
// changed artefact: the previous build stays, whole, and its SHA256SUMS
// still checks. (Renaming each artefact as it was copied left guests.cpio
// new and the rest old.)
func TestBuildFullOutputDirMidPublish(t *testing.T) {
	cache := seededCache(t, true)
	// Another guest memory changes guests.cpio, the ESP payload and the images.
	next := variant(t, "fullfs", "guests:\n  - {name: demo, memory: 96MiB, vcpus: 1, kernel: dom0, after: poweroff, autostart: true}\n")
	scratch := t.TempDir()
	mustBuild(t, cache, "--board", next, "--out", scratch)
	gNew := diskUsage(t, filepath.Join(scratch, "guests.cpio"))
	espNew := fileSize(t, filepath.Join(scratch, "payload-esp.efi"))

	out := filepath.Join(t.TempDir(), "out")
	os.MkdirAll(out, 0o755)
	if b, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=512m", "fwbuild-test", out).CombinedOutput(); err != nil {
		t.Fatalf("mount a tmpfs (the test runs as root, as CI does): %v\n%s", err, b)
	}
	defer exec.Command("umount", out).Run()
	mustBuild(t, cache, "--board", "qemu-q35", "--out", out)
	sha256sumOK(t, out)
	gOld := diskUsage(t, filepath.Join(out, "guests.cpio"))
	// Leave room for the new guests.cpio and 1 MiB: writing artefacts one
	// by one, the ESP payload after it no longer fits.
	if espNew-gOld < 4<<20 {
		t.Fatalf("payload-esp.efi (%d bytes) is not much larger than guests.cpio (%d): the fill level below does not work", espNew, gOld)
	}
	var fs syscall.Statfs_t
	syscall.Statfs(out, &fs)
	free := int64(fs.Bavail) * fs.Bsize
	filler := free - (gNew + 1<<20)
	if err := os.WriteFile(filepath.Join(out, "filler"), make([]byte, filler), 0o644); err != nil {
		t.Fatalf("fill the tmpfs: %v", err)
	}
	before := outState(t, out)
	code, output := runIn(t, context.Background(), cache, "build", "--board", next, "--out", out)
	if code != 1 || !strings.Contains(output, "output") || !strings.Contains(output, "no space left") {
		t.Fatalf("exit %d, want 1 with an output error naming the cause:\n%s", code, output)
	}
	if after := outState(t, out); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("a publish that ran out of space changed the directory:\nbefore %v\nafter  %v", before, after)
	}
	sha256sumOK(t, out)
	// With the space back, the same build publishes, whole.
	os.Remove(filepath.Join(out, "filler"))
	mustBuild(t, cache, "--board", next, "--out", out)
	sha256sumOK(t, out)
	if b, _ := os.ReadFile(filepath.Join(out, "manifest.json")); !strings.Contains(string(b), `"board": "fullfs"`) {
		t.Error("manifest.json is not the new build's")
	}
}

// Ctrl-C while the spi stage runs fiano (pure Go, 15 s) stops the build
// within 2 s and publishes nothing. It used to finish the stage and publish.
func TestInterruptDuringSPI(t *testing.T) {
	cache := seededCache(t, false)
	// Every stage but spi comes from the shared cache.
	real := testdeps.CacheDir(t)
	mustBuild(t, seededCache(t, true), "--board", "qemu-q35", "--out", t.TempDir())
	os.MkdirAll(filepath.Join(cache, "stages"), 0o755)
	for _, s := range []string{"initramfs", "guests", "payload", "usb"} {
		os.Symlink(filepath.Join(real, "stages", s), filepath.Join(cache, "stages", s))
	}
	out := filepath.Join(t.TempDir(), "out")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int)
	var output string
	go func() {
		var code int
		code, output = runIn(t, ctx, cache, "build", "--board", "qemu-q35", "--out", out)
		done <- code
	}()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		if m, _ := filepath.Glob(filepath.Join(cache, "stages", "spi", ".*.tmp-*")); len(m) > 0 {
			time.Sleep(1500 * time.Millisecond) // into fiano's assembly
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the spi stage never started")
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	cancelled := time.Now()
	var code int
	select {
	case code = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("build did not stop within 30 s of cancellation")
	}
	if d := time.Since(cancelled); d > 2*time.Second {
		t.Errorf("build stopped %v after the cancellation, want < 2s", d)
	}
	if code != 1 || !strings.Contains(output, "context canceled") {
		t.Errorf("exit %d, want 1 with a cancellation error:\n%s", code, output)
	}
	if entries, err := os.ReadDir(out); err == nil && len(entries) > 0 {
		t.Errorf("interrupted build published: %v", entries)
	}
}

// A bad --out is reported before the first stage runs, saying what is wrong.
func TestBuildBadOutDir(t *testing.T) {
	cache := seededCache(t, true)
	tmp := t.TempDir()
	dangling := filepath.Join(tmp, "dangling")
	os.Symlink(filepath.Join(tmp, "missing-target"), dangling)
	file := filepath.Join(tmp, "file")
	os.WriteFile(file, []byte("keep me"), 0o644)
	ro := filepath.Join(tmp, "ro")
	os.MkdirAll(ro, 0o755)
	if b, err := exec.Command("mount", "-t", "tmpfs", "-o", "ro,size=1m", "fwbuild-test", ro).CombinedOutput(); err != nil {
		t.Fatalf("mount a read-only tmpfs (the test runs as root, as CI does): %v\n%s", err, b)
	}
	defer exec.Command("umount", ro).Run()
	cases := []struct {
		out  string
		want []string
	}{
		{dangling, []string{"dangling symlink to " + filepath.Join(tmp, "missing-target")}},
		{filepath.Join(cache, "out", "q35"), []string{"inside the cache"}},
		{file, []string{file, "not a directory"}},
		{filepath.Join(file, "sub"), []string{"cannot create output directory", "not a directory"}},
		{ro, []string{"not writable", "read-only file system"}},
	}
	for _, c := range cases {
		start := time.Now()
		code, output := runIn(t, context.Background(), cache, "build", "--board", "qemu-q35", "--out", c.out)
		if code != 1 {
			t.Errorf("--out %s: exit %d, want 1:\n%s", c.out, code, output)
		}
		for _, w := range c.want {
			if !strings.Contains(output, w) {
				t.Errorf("--out %s: output does not say %q:\n%s", c.out, w, output)
			}
		}
		if strings.Contains(output, "] fetch") {
			t.Errorf("--out %s: stages ran before the error (%v):\n%s", c.out, time.Since(start), output)
		}
	}
	if b, _ := os.ReadFile(file); string(b) != "keep me" {
		t.Error("the file given as --out was modified")
	}
	if _, err := os.Lstat(filepath.Join(cache, "out")); err == nil {
		t.Error("an output directory was created inside the cache")
	}
	if _, err := os.Lstat(filepath.Join(tmp, "missing-target")); err == nil {
		t.Error("the dangling symlink's target was created")
	}
}

// usb.size: 4GiB publishes a sparse usb.img, and a no-op rebuild of it
// stays cheap.
func TestBuildLargeUSBSparse(t *testing.T) {
	cache := seededCache(t, true)
	board := variant(t, "big-usb", "outputs:\n  usb:\n    size: 4GiB\n")
	out := t.TempDir()
	mustBuild(t, cache, "--board", board, "--out", out)
	img := filepath.Join(out, "usb.img")
	if n := fileSize(t, img); n != 4<<30 {
		t.Fatalf("usb.img is %d bytes, want 4 GiB", n)
	}
	esp := fileSize(t, filepath.Join(out, "payload-esp.efi"))
	// The guest images' partition holds their files whole.
	images, _ := filepath.Glob(filepath.Join(out, "guest-*"))
	for _, p := range images {
		esp += fileSize(t, p)
	}
	if u := diskUsage(t, img); u > esp+64<<20 {
		t.Errorf("usb.img takes %d bytes on disk for %d bytes of payload and guest images: not sparse", u, esp)
	}
	sha256sumOK(t, out)
	start := time.Now()
	output := mustBuild(t, cache, "--board", board, "--out", out)
	if !strings.Contains(output, "(0 rewritten)") {
		t.Errorf("no-op rebuild rewrote something:\n%s", output)
	}
	t.Logf("no-op rebuild with a 4 GiB usb.img: %v", time.Since(start))
}

// An artefact corrupted in place, size and mtime kept, is rewritten by the
// next build instead of being reported fine (and then booted).
func TestBuildRepairsCorruptedOutput(t *testing.T) {
	cache := seededCache(t, true)
	out := t.TempDir()
	mustBuild(t, cache, "--board", "qemu-q35", "--out", out)
	for _, n := range []string{"usb.img", "spi.bin"} {
		p := filepath.Join(out, n)
		st, _ := os.Stat(p)
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 1)
		f.ReadAt(b, 1<<20)
		b[0] ^= 0x40
		f.WriteAt(b, 1<<20)
		f.Close()
		os.Chtimes(p, st.ModTime(), st.ModTime())
	}
	cmd := exec.Command("sha256sum", "-c", "--quiet", "SHA256SUMS")
	cmd.Dir = out
	if err := cmd.Run(); err == nil {
		t.Fatal("the corruption did not take")
	}
	output := mustBuild(t, cache, "--board", "qemu-q35", "--out", out)
	if !strings.Contains(output, "(2 rewritten)") {
		t.Errorf("rebuild did not rewrite the two corrupted artefacts:\n%s", output)
	}
	sha256sumOK(t, out)
}
