package image

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	diskfs "github.com/diskfs/go-diskfs"
)

var testEpoch = time.Date(2024, 5, 17, 12, 34, 56, 0, time.UTC)

func xenEFI(t testing.TB) []byte {
	return readComponent(t, "xen", "boot/xen-4.17-amd64.efi")
}

// espOf copies the image's first partition into its own file for fsck.fat.
func espOf(t *testing.T, img string) string {
	t.Helper()
	d, err := diskfs.Open(img, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	start, end, err := espRange(d.Size)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "esp.fat")
	if err := os.WriteFile(p, b[start*sector:(end+1)*sector], 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func runTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestWriteUSB(t *testing.T) {
	fsck := needTool(t, "fsck.fat", "dosfstools")
	sgdisk := needTool(t, "sgdisk", "gdisk")
	payload := xenEFI(t)
	dir := t.TempDir()
	for _, size := range []int64{40 << 20, 64 << 20, 100<<20 + 512*7} {
		img := filepath.Join(dir, "usb.img")
		if err := WriteUSB(img, USBSpec{Size: size, Payload: payload, Name: "qemu-q35", Epoch: testEpoch}); err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		out := runTool(t, fsck, "-n", espOf(t, img))
		t.Logf("size %d fsck: %s", size, out)
		out = runTool(t, sgdisk, "-v", img)
		t.Logf("size %d sgdisk: %s", size, out)
	}
}
