package flash

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/hvcore/pe/pesynth"

	"github.com/fwbuild/fwbuild/image"
)

// diskImage builds a real fwbuild USB image (GPT + ESP with BOOTX64.EFI) of size bytes.
func diskImage(t *testing.T, size int64) (string, []byte) {
	t.Helper()
	pe := pesynth.Image(pesynth.Options{})
	p := filepath.Join(t.TempDir(), "usb.img")
	if err := image.WriteUSB(context.Background(), p, image.USBSpec{Size: size, Payload: pe, Name: "flash-test", Epoch: time.Unix(1704067200, 0)}); err != nil {
		t.Fatal(err)
	}
	return p, readFile(t, p)
}

// sgdiskVerify runs `sgdisk -v` and returns its output; "No problems found" is its all-clear.
func sgdiskVerify(t *testing.T, path string) string {
	t.Helper()
	needTool(t, "sgdisk", "gdisk")
	out, _ := exec.Command("sgdisk", "-v", path).CombinedOutput()
	return string(out)
}

func TestWriteUSBRefusesNonDisk(t *testing.T) {
	good, _ := diskImage(t, 40<<20)
	wiped := readFile(t, good)
	clear(wiped[1<<20 : 2<<20]) // the ESP's boot sector and FATs
	for _, tc := range []struct {
		name string
		img  []byte
		want string
	}{
		{"random bytes", randBytes(40, 40<<20), "the image is not a bootable disk image: not a GPT disk image"},
		{"GPT without a file system", wiped, "EFI System Partition"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			imgPath := writeTemp(t, "usb.img", tc.img)
			target := filepath.Join(t.TempDir(), "key.img")
			_, err := WriteUSB(context.Background(), USBOptions{Device: target, Image: imgPath})
			if e := asError(t, err); e.Op != "usb check" || !strings.Contains(e.Msg, tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
			checkWhatToDo(t, err.Error())
			if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) {
				t.Error("refused image was written")
			}
		})
	}
}

func TestWriteUSBRefusesImageOffManifest(t *testing.T) {
	imgPath, img := diskImage(t, 40<<20)
	stale := sha(append(bytes.Clone(img[:4096]), 1))
	writeManifest(t, filepath.Dir(imgPath), "qemu-q35", "usb.img", stale)
	built, err := FindBuilt(imgPath, "qemu-q35")
	if err != nil {
		t.Fatal(err)
	}
	target := writeTemp(t, "key.img", []byte("previous"))
	_, err = WriteUSB(context.Background(), USBOptions{Device: target, Image: imgPath, Built: built})
	if e := asError(t, err); !strings.Contains(e.Msg, "the image's SHA-256 "+sha(img)+" differs from manifest.json's "+stale+" for usb.img") {
		t.Errorf("err %v", err)
	}
	if string(readFile(t, target)) != "previous" {
		t.Error("target modified")
	}
	writeManifest(t, filepath.Dir(imgPath), "qemu-q35", "usb.img", sha(img))
	built, _ = FindBuilt(imgPath, "qemu-q35")
	if _, err := WriteUSB(context.Background(), USBOptions{Device: target, Image: imgPath, Built: built}); err != nil {
		t.Errorf("matching manifest: %v", err)
	}
}

// relocateBackupGPT on a file standing for a larger device: sgdisk must find no problem.
func TestRelocateBackupGPT(t *testing.T) {
	_, img := diskImage(t, 40<<20)
	dev := filepath.Join(t.TempDir(), "dev.img")
	if err := os.WriteFile(dev, img, 0o644); err != nil {
		t.Fatal(err)
	}
	const devSize = 100<<20 + 4096
	if err := os.Truncate(dev, devSize); err != nil {
		t.Fatal(err)
	}
	if out := sgdiskVerify(t, dev); strings.Contains(out, "No problems found") {
		t.Fatalf("sgdisk finds no problem with the backup GPT in the middle; the test proves nothing:\n%s", out)
	}
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	rel, moved, err := relocateBackupGPT(f, f, f.Sync, int64(len(img)), devSize)
	f.Close()
	if err != nil || !moved || rel.From != 40<<20/512-1 || rel.To != devSize/512-1 {
		t.Fatalf("relocate: %+v %v %v", rel, moved, err)
	}
	if out := sgdiskVerify(t, dev); !strings.Contains(out, "No problems found") {
		t.Errorf("sgdisk -v after relocation:\n%s", out)
	}
	got := readFile(t, dev)
	if !bytes.Equal(got[1024:40<<20-33*512], img[1024:40<<20-33*512]) {
		t.Error("relocation changed the partitions' bytes")
	}
	// Not a GPT image, or no larger device: nothing is touched.
	for _, tc := range []struct {
		b        []byte
		img, dev int64
	}{{randBytes(41, 1<<20), 1 << 20, 2 << 20}, {img, int64(len(img)), int64(len(img))}} {
		p := writeTemp(t, "x.img", tc.b)
		f, _ := os.OpenFile(p, os.O_RDWR, 0)
		_, moved, err := relocateBackupGPT(f, f, f.Sync, tc.img, tc.dev)
		f.Close()
		if moved || err != nil || !bytes.Equal(readFile(t, p), tc.b) {
			t.Errorf("non-GPT or same size: moved %v err %v", moved, err)
		}
	}
}

// A 40 MiB usb.img on a 64 MiB device: the backup GPT ends up at the device's end.
func TestWriteUSBLargerDeviceMovesBackupGPT(t *testing.T) {
	imgPath, img := diskImage(t, 40<<20)
	dev, _ := loopDevice(t, 64<<20)
	res, err := WriteUSB(context.Background(), USBOptions{Device: dev, Image: imgPath, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.BackupGPTFrom != 40<<20/512-1 || res.BackupGPTTo != 64<<20/512-1 || res.SHA256 != sha(img) {
		t.Errorf("result %+v", res)
	}
	if out := sgdiskVerify(t, dev); !strings.Contains(out, "No problems found") {
		t.Errorf("sgdisk -v %s:\n%s", dev, out)
	}
	if err := image.CheckDisk(dev); err != nil {
		t.Errorf("written device does not check as a boot disk: %v", err)
	}
}
