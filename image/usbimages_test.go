package image

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/fwbuild/fwbuild/contract"
)

// usb.img with guest images: the ESP, then the fwbuild-images partition
// holding the files; sgdisk and fsck.fat find nothing wrong with either, the
// files read back, and the same spec gives the same bytes.
func TestWriteUSBWithImages(t *testing.T) {
	fsck := needTool(t, "fsck.fat", "dosfstools")
	sgdisk := needTool(t, "sgdisk", "gdisk")
	dir := t.TempDir()
	big := make([]byte, 40<<20+123)
	rand.Read(big)
	files := map[string][]byte{"debian/root.img": big, "debian/vmlinuz": []byte("kernel"), "debian-installer/initrd": bytes.Repeat([]byte{7}, 1<<20)}
	var images []USBFile
	for p, data := range files {
		src := filepath.Join(dir, strings.ReplaceAll(p, "/", "_"))
		if err := os.WriteFile(src, data, 0o644); err != nil {
			t.Fatal(err)
		}
		images = append(images, USBFile{Path: p, Src: src})
	}
	spec := USBSpec{Size: 128 << 20, Payload: xenEFI(t), Name: "t", Epoch: testEpoch, Images: images}
	var sums [][]byte
	for i := range 2 {
		img := filepath.Join(dir, "usb"+string(rune('a'+i))+".img")
		if err := WriteUSB(context.Background(), img, spec); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(img)
		sums = append(sums, b)
		if i == 1 {
			break
		}
		if out := runTool(t, sgdisk, "-v", img); !strings.Contains(out, "No problems found") {
			t.Errorf("sgdisk -v: %s", out)
		}
		d, err := diskfs.Open(img, diskfs.WithOpenMode(diskfs.ReadOnly))
		if err != nil {
			t.Fatal(err)
		}
		pt, err := d.GetPartitionTable()
		if err != nil {
			t.Fatal(err)
		}
		parts := pt.(*gpt.Table).Partitions
		if len(parts) != 2 || parts[0].Type != gpt.EFISystemPartition || parts[1].Name != contract.ImagesPartitionName || parts[1].Start != parts[0].End+1 {
			t.Fatalf("partitions: %+v", parts)
		}
		for n, p := range parts {
			part := filepath.Join(dir, "part.fat")
			b := sums[0][p.Start*sector : (p.End+1)*sector]
			if err := os.WriteFile(part, b, 0o644); err != nil {
				t.Fatal(err)
			}
			fsckClean(t, fsck, part)
			if n == 0 {
				continue
			}
			fs, err := d.GetFilesystem(2)
			if err != nil {
				t.Fatal(err)
			}
			for path, want := range files {
				r, err := fs.OpenFile("/"+path, os.O_RDONLY)
				if err != nil {
					t.Fatalf("%s: %v", path, err)
				}
				var got bytes.Buffer
				got.ReadFrom(r)
				if !bytes.Equal(got.Bytes(), want) {
					t.Errorf("%s reads back %d bytes, differing from the %d written", path, got.Len(), len(want))
				}
			}
		}
		d.Close()
	}
	if !bytes.Equal(sums[0], sums[1]) {
		t.Error("two writes of the same spec differ")
	}

	// Too small for both: the error says how large to make it.
	spec.Size = 64 << 20
	err := WriteUSB(context.Background(), filepath.Join(dir, "small.img"), spec)
	if err == nil || !strings.Contains(err.Error(), "too small for the ESP") || !strings.Contains(err.Error(), "make it at least") {
		t.Errorf("64 MiB with 42 MB of images: %v", err)
	}
}
