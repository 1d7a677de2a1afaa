package image

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/fwbuild/fwbuild/internal/testdeps"
	qemutests "github.com/fwbuild/fwbuild/qemu-tests"
)

var testEpoch = time.Date(2024, 5, 17, 12, 34, 56, 0, time.UTC)

func xenEFI(t testing.TB) []byte {
	return readComponent(t, "xen", "efi")
}

// espOf copies the image's ESP into its own file for fsck.fat.
func espOf(t *testing.T, img string) string {
	t.Helper()
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	start, end, err := espRange(int64(len(b)))
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

// fsckClean runs fsck.fat -n and fails on anything but its banner and
// summary line (it exits 0 for some defects it reports).
func fsckClean(t *testing.T, fsck, esp string) {
	t.Helper()
	out := runTool(t, fsck, "-n", esp)
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.HasPrefix(l, "fsck.fat ") && !strings.HasPrefix(l, esp+": ") {
			t.Errorf("fsck.fat -n reports: %s\n(full output:\n%s)", l, out)
			return
		}
	}
}

func TestWriteUSB(t *testing.T) {
	fsck := needTool(t, "fsck.fat", "dosfstools")
	sgdisk := needTool(t, "sgdisk", "gdisk")
	payload := xenEFI(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "usb.img")
	// The smallest image, 64 MiB (a size go-diskfs sizes the FAT wrong for
	// unless the partition is aligned), odd sizes and a sweep.
	sizes := []int64{36 << 20, 64 << 20, 100<<20 + 512*7, 128<<20 - 512}
	for s := int64(37 << 20); s <= 80<<20; s += 3<<20 + 4096 {
		sizes = append(sizes, s)
	}
	for _, size := range sizes {
		if err := WriteUSB(context.Background(), img, USBSpec{Size: size, Payload: payload, Name: "qemu-q35", Epoch: testEpoch}); err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if fi, err := os.Stat(img); err != nil || fi.Size() != size {
			t.Fatalf("size %d: image is %v (%v)", size, fi, err)
		}
		fsckClean(t, fsck, espOf(t, img))
		if out := runTool(t, sgdisk, "-v", img); !strings.Contains(out, "No problems found") {
			t.Errorf("size %d: sgdisk -v:\n%s", size, out)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("directory holds %v, want only usb.img", ents)
	}
}

func TestWriteUSBReadBack(t *testing.T) {
	mcopy := needTool(t, "mcopy", "mtools")
	payload := xenEFI(t)
	img := filepath.Join(t.TempDir(), "usb.img")
	if err := WriteUSB(context.Background(), img, USBSpec{Size: 48 << 20, Payload: payload, Name: "qemu-q35", Epoch: testEpoch}); err != nil {
		t.Fatal(err)
	}
	// Read back with go-diskfs...
	d, err := diskfs.Open(img, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	fs, err := d.GetFilesystem(1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := fs.ReadFile(bootPath)
	d.Close()
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("go-diskfs reads back %d bytes (%v), want the %d-byte payload", len(got), err, len(payload))
	}
	// ...and with an independent FAT implementation.
	out := filepath.Join(t.TempDir(), "BOOTX64.EFI")
	runTool(t, mcopy, "-n", "-i", espOf(t, img), "::/EFI/BOOT/BOOTX64.EFI", out)
	if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("mcopy reads back %d bytes (%v), want the payload", len(got), err)
	}
	// Times are the epoch, names and GUIDs as documented.
	mdir := runTool(t, strings.TrimSuffix(mcopy, "mcopy")+"mdir", "-i", espOf(t, img), "::/EFI/BOOT")
	if !strings.Contains(mdir, "2024-05-17") || !strings.Contains(mdir, "12:34") {
		t.Errorf("BOOTX64.EFI not stamped with the epoch:\n%s", mdir)
	}
	n, err := Inspect(img)
	if err != nil {
		t.Fatal(err)
	}
	if n.GUID != strings.ToUpper(nameGUID("qemu-q35", "disk")) && n.GUID != nameGUID("qemu-q35", "disk") {
		t.Errorf("disk GUID %s, want %s", n.GUID, nameGUID("qemu-q35", "disk"))
	}
	if len(n.Children) != 1 || !strings.EqualFold(n.Children[0].GUID, nameGUID("qemu-q35", "esp")) ||
		n.Children[0].Offset != firstLBA*sector || n.Children[0].Type != "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" {
		t.Fatalf("partitions: %+v", n.Children)
	}
	f := n.find("file", bootPath)
	if f == nil || f.Size != int64(len(payload)) {
		t.Fatalf("inspect finds %+v for %s", f, bootPath)
	}
	if _, err := json.Marshal(n); err != nil {
		t.Fatal(err)
	}
}

// TestWriteUSBReproducible builds twice with different clocks and
// SOURCE_DATE_EPOCH settings: only USBSpec decides the bytes.
func TestWriteUSBReproducible(t *testing.T) {
	payload := xenEFI(t)
	dir := t.TempDir()
	a, b, c := filepath.Join(dir, "a.img"), filepath.Join(dir, "b.img"), filepath.Join(dir, "c.img")
	spec := USBSpec{Size: 40 << 20, Payload: payload, Name: "qemu-q35", Epoch: testEpoch}
	if err := WriteUSB(context.Background(), a, spec); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2100 * time.Millisecond) // FAT stores seconds/2
	t.Setenv("SOURCE_DATE_EPOCH", "1000000000")
	if err := WriteUSB(context.Background(), b, spec); err != nil {
		t.Fatal(err)
	}
	ab, _ := os.ReadFile(a)
	bb, _ := os.ReadFile(b)
	if !bytes.Equal(ab, bb) {
		t.Fatalf("two builds of the same spec differ")
	}
	spec.Name = "other-board"
	if err := WriteUSB(context.Background(), c, spec); err != nil {
		t.Fatal(err)
	}
	cb, _ := os.ReadFile(c)
	if bytes.Equal(ab, cb) {
		t.Errorf("a different name gives the same image (GUIDs not derived from it)")
	}
}

func TestWriteUSBErrors(t *testing.T) {
	pe := minimalPE(4096)
	cases := []struct {
		name string
		spec USBSpec
		want string
	}{
		{"too small", USBSpec{Size: 30 << 20, Payload: pe, Name: "b", Epoch: testEpoch}, "too small"},
		{"odd size", USBSpec{Size: 40<<20 + 1, Payload: pe, Name: "b", Epoch: testEpoch}, "multiple of 512"},
		{"no name", USBSpec{Size: 40 << 20, Payload: pe, Epoch: testEpoch}, "needs a name"},
		{"not PE", USBSpec{Size: 40 << 20, Payload: []byte("#!/bin/sh"), Name: "b", Epoch: testEpoch}, "not a PE32"},
		{"epoch 1970", USBSpec{Size: 40 << 20, Payload: pe, Name: "b", Epoch: time.Unix(0, 0)}, "1980"},
		{"payload too big", USBSpec{Size: 40 << 20, Payload: minimalPE(41 << 20), Name: "b", Epoch: testEpoch}, "BOOTX64.EFI"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			err := WriteUSB(context.Background(), filepath.Join(dir, "usb.img"), c.spec)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "image: ") {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("failed write left %v", ents)
			}
		})
	}
}

// TestFixFAT shows each defect go-diskfs leaves and that fixFAT removes it.
func TestFixFAT(t *testing.T) {
	fsck := needTool(t, "fsck.fat", "dosfstools")
	img := filepath.Join(t.TempDir(), "raw.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	u := USBSpec{Size: 40 << 20, Payload: minimalPE(3000), Name: "x", Epoch: testEpoch}
	start, end, err := espRange(u.Size)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeESPDisk(f, u, start, end, false); err != nil {
		t.Fatal(err)
	}
	b, _ := exec.Command(fsck, "-n", espOf(t, img)).CombinedOutput() // exits 1: defects
	out := string(b)
	for _, defect := range []string{"Invalid '..' entry", "Free cluster summary uninitialized"} {
		if !strings.Contains(out, defect) {
			t.Errorf("go-diskfs no longer leaves %q (drop that fix?); fsck says:\n%s", defect, out)
		}
	}
	if err := fixFAT(f, int64(start)*sector, testEpoch, 0x12345678); err != nil {
		t.Fatal(err)
	}
	f.Close()
	esp := espOf(t, img)
	fsckClean(t, fsck, esp)
	if out := runTool(t, fsck, "-n", "-v", esp); !strings.Contains(out, " 2048 hidden sectors") {
		t.Errorf("boot sector does not count the sectors before the ESP:\n%s", out)
	}
	b, _ = os.ReadFile(esp)
	if got := b[0x43:0x47]; !bytes.Equal(got, []byte{0x78, 0x56, 0x34, 0x12}) {
		t.Errorf("volume serial %x", got)
	}
	if got := b[6*512+0x43 : 6*512+0x47]; !bytes.Equal(got, []byte{0x78, 0x56, 0x34, 0x12}) {
		t.Errorf("backup boot sector serial %x", got)
	}
}

func TestDosTime(t *testing.T) {
	d, tm, tenth := dosTime(time.Date(2024, 5, 17, 12, 34, 57, 250_000_000, time.UTC))
	if d != (2024-1980)<<9|5<<5|17 || tm != 12<<11|34<<5|28 || tenth != 125 {
		t.Errorf("dosTime = %#x %#x %d", d, tm, tenth)
	}
}

// TestBootUSB boots the image as a USB key with stock OVMF (pflash CODE +
// a copy of VARS): OVMF's removable-media boot must find BOOTX64.EFI (the
// GRUB test app) and start it.
func TestBootUSB(t *testing.T) {
	t.Parallel()
	needTool(t, "qemu-system-x86_64", "qemu-system-x86")
	img := filepath.Join(t.TempDir(), "usb.img")
	if err := WriteUSB(context.Background(), img, USBSpec{Size: 40 << 20, Payload: grubTestApp(t), Name: "qemu-q35", Epoch: testEpoch}); err != nil {
		t.Fatal(err)
	}
	bootToMarker(t, qemutests.Machine{
		Firmware: qemutests.PflashOVMF(testdeps.File(t, "ovmf", "code"), testdeps.File(t, "ovmf", "vars")),
		Disks:    []qemutests.Disk{qemutests.USBKey(img)},
	})
}
