package main

// A damaged cache must never give rc 0 with artefacts that differ from what
// manifest.json and SHA256SUMS claim, nor poison later stages: every kind of
// damage below is repaired (rebuilt, unpacked or downloaded again) with a
// warning naming the damaged cache path.

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fwbuild/fwbuild/internal/testdeps"
)

func TestBuildRepairsDamagedCache(t *testing.T) {
	if testing.Short() {
		t.Skip("builds qemu-q35's stages in a fresh cache (minutes)")
	}
	cache := seededCache(t, false) // its own stages, so they can be damaged
	seedControlDomain(t, cache)
	b := testdeps.Board(t, "qemu-q35")
	xen, _ := b.Component("xen")
	yajl, _ := b.Component("libyajl")

	// The packages to damage are fetched into the test's own cache (their
	// .debs too: the shared cache may have pruned its copies, which a build
	// that finds the unpacked trees never needs again); the rest stay
	// symlinks into the shared cache, which the test must not touch.
	xenTree := filepath.Join(cache, "pkgs", string(xen.SHA256))
	os.Remove(xenTree)
	xenDeb := filepath.Join(cache, "debs", string(xen.SHA256)+".deb")

	out1 := filepath.Join(t.TempDir(), "out")
	if code, output := runIn(t, context.Background(), cache, "build", "--board", "qemu-q35", "--out", out1); code != 0 {
		t.Fatalf("first build: exit %d\n%s", code, output)
	}
	sums1, err := os.ReadFile(filepath.Join(out1, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}

	// 1. A bit flips in a stage output.
	usbImgs, _ := filepath.Glob(filepath.Join(cache, "stages", "usb", "*", "usb.img"))
	if len(usbImgs) != 1 {
		t.Fatalf("usb stage outputs: %v", usbImgs)
	}
	flipInPlace(t, usbImgs[0], 1<<20)
	// 2. A file of an unpacked package is modified, and the payload that
	// used it is gone: it must be built from the pristine file again.
	xenEFI := filepath.Join(xenTree, filepath.FromSlash(xen.Files["efi"]))
	flipInPlace(t, xenEFI, 4096)
	os.RemoveAll(filepath.Join(cache, "stages", "payload"))
	// 3. A cached .deb is replaced by another valid .deb (and its tree is
	// gone, so it would be unpacked).
	yajlDeb := filepath.Join(cache, "debs", string(yajl.SHA256)+".deb")
	other, err := os.ReadFile(xenDeb)
	if err != nil {
		t.Fatalf("the first build did not fetch xen into the test's cache: %v", err)
	}
	os.WriteFile(yajlDeb, other, 0o644)
	os.Remove(filepath.Join(cache, "pkgs", string(yajl.SHA256)))

	out2 := filepath.Join(t.TempDir(), "out")
	code, output := runIn(t, context.Background(), cache, "build", "--board", "qemu-q35", "--out", out2)
	if code != 0 {
		t.Fatalf("build on a damaged cache: exit %d\n%s", code, output)
	}
	sums2, _ := os.ReadFile(filepath.Join(out2, "SHA256SUMS"))
	if !bytes.Equal(sums1, sums2) {
		t.Errorf("artefacts differ from the undamaged build's:\n%s\nvs\n%s", sums1, sums2)
	}
	check := exec.Command("sha256sum", "--strict", "-c", "SHA256SUMS")
	check.Dir = out2
	if b, err := check.CombinedOutput(); err != nil {
		t.Errorf("SHA256SUMS lies: %v\n%s", err, b)
	}
	for _, damaged := range []string{filepath.Dir(usbImgs[0]), xenTree, yajlDeb} {
		if !strings.Contains(output, damaged) {
			t.Errorf("no warning names the damaged %s:\n%s", damaged, output)
		}
	}
}

// flipInPlace flips one bit of p at off, keeping its inode, as a disk or a
// careless editor would.
func flipInPlace(t *testing.T, p string, off int64) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x20
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}
