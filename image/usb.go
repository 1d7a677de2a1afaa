package image

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path"
	"time"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/google/uuid"

	"github.com/fwbuild/fwbuild/contract"
	"github.com/fwbuild/fwbuild/internal/atomicfile"
)

// USBSpec describes a bootable USB/disk image: GPT with one EFI System
// Partition holding \EFI\BOOT\BOOTX64.EFI.
type USBSpec struct {
	Size    int64  // bytes, a multiple of 512
	Payload []byte // the EFI application started by removable-media boot
	Name    string // seeds the disk and partition GUIDs and the FAT serial (board name)
	Epoch   time.Time
	// Slots, when set, is the ESP slots' state file (contract.SlotsFile):
	// the payload also goes into slot A (contract.SlotFile), the state file
	// next to it, so ctld can update the disk in place (A/B).
	Slots []byte
	// Images are the files of the guest-images partition (GPT name
	// contract.ImagesPartitionName, FAT32), which follows the ESP at the
	// disk's end, sized for them. None: no such partition, the ESP fills
	// the disk.
	Images []USBFile
}

// USBFile is a file for the guest-images partition.
type USBFile struct {
	Path string // in the partition, slash-separated, relative: debian/vmlinuz
	Src  string // host file
}

const (
	sector      = 512
	firstLBA    = 2048 // 1 MiB, the usual alignment
	gptReserved = 33   // backup partition array (32 sectors) + backup header
	minESP      = 34 << 20
	espLabel    = "FWBUILD"
	bootPath    = "/EFI/BOOT/BOOTX64.EFI"
)

// fwbuildNS is the UUIDv5 namespace for GUIDs derived from names.
var fwbuildNS = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://github.com/fwbuild/fwbuild"))

// nameGUID derives a stable GUID from the image name and a purpose.
func nameGUID(name, purpose string) string {
	return uuid.NewSHA1(fwbuildNS, []byte(purpose+"\x00"+name)).String()
}

// espRange is the ESP's first and last LBA on a disk of size bytes. The
// partition ends on a 2048-sector boundary: go-diskfs v1.9.4 miscomputes
// the FAT size for some partition sizes, never for these.
func espRange(size int64) (start, end uint64, err error) {
	if size <= 0 || size%sector != 0 {
		return 0, 0, fmt.Errorf("image: USB image size %d must be a positive multiple of %d", size, sector)
	}
	lastUsable := uint64(size/sector) - gptReserved - 1
	end = (lastUsable+1)/firstLBA*firstLBA - 1
	if end < firstLBA || (end+1-firstLBA)*sector < minESP {
		return 0, 0, fmt.Errorf("image: USB image size %d too small: the ESP needs at least %d MiB (FAT32 minimum), so the image at least %d MiB", size, minESP>>20, minESP>>20+2)
	}
	return firstLBA, end, nil
}

// WriteUSB writes the image to path through a temporary file in the same
// directory. Same spec, same bytes. The file is sparse: only the GPT, the
// FAT and the payload's clusters are written, so a 4 GiB image takes the
// payload's size on disk. It checks ctx between its steps (each is
// milliseconds; go-diskfs takes no context), and path is left untouched on
// cancellation.
func WriteUSB(ctx context.Context, path string, u USBSpec) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if u.Name == "" {
		return errors.New("image: USB image needs a name (the board name) to derive its GUIDs")
	}
	if err := checkPE("ESP payload", u.Payload); err != nil {
		return err
	}
	if y := u.Epoch.UTC().Year(); y < 1980 || y > 2107 {
		return fmt.Errorf("image: epoch %v is outside what FAT can store (1980-2107); set SOURCE_DATE_EPOCH to a later time", u.Epoch)
	}
	start, end, err := espRange(u.Size)
	if err != nil {
		return err
	}
	var images *imagesPart
	if len(u.Images) > 0 {
		if images, err = planImages(u.Images, end); err != nil {
			return err
		}
		if images.start <= start || (images.start-start)*sector < minESP {
			return fmt.Errorf("image: USB image size %d MiB too small for the ESP (at least %d MiB) and the guest-images partition (%d MiB): make it at least %d MiB",
				u.Size>>20, minESP>>20, (images.end+1-images.start)*sector>>20, (u.Size+minESP-int64(images.start-start)*sector)>>20+1)
		}
		end = images.start - 1
	}
	err = atomicfile.Write(path, 0o644, func(f *os.File) error {
		if err := writeESPDiskCtx(ctx, f, u, start, end, true, images); err != nil {
			return err
		}
		if images == nil {
			return nil
		}
		return writeImages(ctx, f, u, images)
	})
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("image: write %s: %w", path, err)
	}
	return nil
}

func writeESPDisk(f *os.File, u USBSpec, start, end uint64, fix bool) error {
	return writeESPDiskCtx(context.Background(), f, u, start, end, fix, nil)
}

func writeESPDiskCtx(ctx context.Context, f *os.File, u USBSpec, start, end uint64, fix bool, images *imagesPart) error {
	// Truncate, not zero-fill: the image stays sparse, and so does its copy
	// into the output directory (which skips holes and zero blocks).
	if err := f.Truncate(u.Size); err != nil {
		return err
	}
	d, err := diskfs.OpenBackend(file.New(f, false), diskfs.WithOpenMode(diskfs.ReadWrite))
	if err != nil {
		return fmt.Errorf("open disk: %w", err)
	}
	table := &gpt.Table{
		LogicalSectorSize:  sector,
		PhysicalSectorSize: sector,
		ProtectiveMBR:      true,
		GUID:               nameGUID(u.Name, "disk"),
		Partitions: []*gpt.Partition{{
			Index: 1,
			Start: start,
			End:   end,
			Type:  gpt.EFISystemPartition,
			Name:  contract.ESPPartitionName,
			GUID:  nameGUID(u.Name, "esp"),
		}},
	}
	if images != nil {
		table.Partitions = append(table.Partitions, &gpt.Partition{
			Index: 2, Start: images.start, End: images.end, Type: gpt.MicrosoftBasicData,
			Name: contract.ImagesPartitionName, GUID: nameGUID(u.Name, "images"),
		})
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := d.Partition(table); err != nil {
		return fmt.Errorf("write GPT: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	fs, err := d.CreateFilesystem(disk.FilesystemSpec{
		Partition: 1, FSType: filesystem.TypeFat32, VolumeLabel: espLabel, Reproducible: true,
	})
	if err != nil {
		return fmt.Errorf("create FAT32 ESP: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := fs.Mkdir(path.Dir(bootPath)); err != nil {
		return fmt.Errorf("ESP: mkdir %s: %w", path.Dir(bootPath), err)
	}
	files := []struct {
		path string
		data []byte
	}{{bootPath, u.Payload}}
	if u.Slots != nil {
		if err := fs.Mkdir(path.Dir("/" + contract.SlotFile(contract.SlotA))); err != nil {
			return fmt.Errorf("ESP: mkdir %s: %w", path.Dir(contract.SlotFile(contract.SlotA)), err)
		}
		files = append(files, struct {
			path string
			data []byte
		}{"/" + contract.SlotFile(contract.SlotA), u.Payload}, struct {
			path string
			data []byte
		}{"/" + contract.SlotsFile, u.Slots})
	}
	for _, f := range files {
		w, err := fs.OpenFile(f.path, os.O_CREATE|os.O_RDWR)
		if err != nil {
			return fmt.Errorf("ESP: create %s: %w", f.path, err)
		}
		if n, err := w.Write(f.data); err != nil || n != len(f.data) {
			w.Close()
			return fmt.Errorf("ESP: write %s (%d bytes; ESP is %d bytes): %d written, %v", f.path, len(f.data), (end+1-start)*sector, n, err)
		}
		if err := w.Close(); err != nil {
			return fmt.Errorf("ESP: close %s: %w", f.path, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if !fix {
		return nil
	}
	// go-diskfs stamps entries with SOURCE_DATE_EPOCH from the environment
	// (a process global) and writes ".." wrong; fix both in place.
	h := sha256.Sum256([]byte("fat-serial\x00" + u.Name))
	serial := binary.LittleEndian.Uint32(h[:4])
	if err := fixFAT(f, int64(start)*sector, u.Epoch, serial); err != nil {
		return fmt.Errorf("ESP: fix up FAT: %w", err)
	}
	return nil
}
