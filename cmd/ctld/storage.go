package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/ext4"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/fwbuild/fwbuild/contract"
)

// The data disk. ctld finds it by the profile's stable identifier and
// decides what it holds before writing a byte:
//
//   - blank: all zero in its first and last MiB (where partition tables and
//     file-system superblocks live). ctld writes a GPT with one partition
//     (contract.DataPartitionName, Linux data type) and an ext4 file
//     system in it, made with go-diskfs (the control domain has no
//     e2fsprogs), then mounts it.
//   - fwbuild's: a GPT with exactly that one partition. Mounted, never
//     formatted again, whatever happens.
//   - anything else is foreign: never written. ctld prints a FAILED storage
//     line naming the identifier and the device, unless the profile says
//     wipe: true, in which case it zeroes the first and last MiB and
//     prepares the disk as a blank one.

// diskState is what classifyDisk found.
type diskState int

const (
	diskBlank diskState = iota
	diskOurs
	diskForeign
)

const mib = 1 << 20

// classifyDisk reads a disk's first and last MiB and its GPT. For a foreign
// disk, what says what it holds.
func classifyDisk(f io.ReaderAt, size int64) (st diskState, what string, err error) {
	if size < 4*mib {
		return diskForeign, "", fmt.Errorf("%d bytes: too small for a data disk", size)
	}
	head := make([]byte, mib)
	tail := make([]byte, mib)
	if _, err := f.ReadAt(head, 0); err != nil {
		return 0, "", fmt.Errorf("read first MiB: %w", err)
	}
	if _, err := f.ReadAt(tail, size-mib); err != nil {
		return 0, "", fmt.Errorf("read last MiB: %w", err)
	}
	if allZero(head) && allZero(tail) {
		return diskBlank, "", nil
	}
	if t, err := gpt.Read(sizedReader{f, size}, 512, 512); err == nil {
		var parts []*gpt.Partition
		for _, p := range t.Partitions {
			if p != nil && p.Type != gpt.Unused {
				parts = append(parts, p)
			}
		}
		if len(parts) == 1 && parts[0].Name == contract.DataPartitionName && strings.EqualFold(string(parts[0].Type), contract.DataPartitionType) {
			return diskOurs, "", nil
		}
		var names []string
		for _, p := range parts {
			names = append(names, fmt.Sprintf("%q", p.Name))
		}
		return diskForeign, fmt.Sprintf("a GPT with %d partition(s) (%s)", len(parts), strings.Join(names, ", ")), nil
	}
	switch {
	case head[510] == 0x55 && head[511] == 0xAA:
		return diskForeign, "an MBR partition table or boot sector", nil
	case head[1080] == 0x53 && head[1081] == 0xEF:
		return diskForeign, "an ext2/3/4 file system", nil
	}
	return diskForeign, "data (non-zero bytes in its first or last MiB)", nil
}

func allZero(b []byte) bool {
	return len(bytes.Trim(b, "\x00")) == 0
}

// sizedReader is an io.ReaderAt as go-diskfs's backend.File: it seeks only
// to learn the size (for the backup GPT).
type sizedReader struct {
	r    io.ReaderAt
	size int64
}

func (s sizedReader) ReadAt(p []byte, off int64) (int, error) { return s.r.ReadAt(p, off) }
func (s sizedReader) Read([]byte) (int, error)                { return 0, errors.New("sequential read not supported") }
func (s sizedReader) Close() error                            { return nil }
func (s sizedReader) Stat() (os.FileInfo, error)              { return nil, errors.New("no stat") }
func (s sizedReader) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
		return off, nil
	case io.SeekEnd:
		return s.size + off, nil
	}
	return 0, errors.New("seek from current not supported")
}

// dataPartition is where prepareDisk puts the one partition: from 1 MiB to
// the last whole MiB before the backup GPT.
func dataPartition(size int64) (start, end uint64) {
	sectors := uint64(size / 512)
	end = (sectors-34)/2048*2048 - 1
	return 2048, end
}

// prepareDisk writes the GPT and the ext4 file system to f (the whole
// disk, size bytes). The GPT goes first: a prepare interrupted after it
// leaves fwbuild's partition with no or half a file system, whose mount
// fails on the next boot and says so; nothing is ever formatted over it.
func prepareDisk(f *os.File, size int64) error {
	start, end := dataPartition(size)
	t := &gpt.Table{
		LogicalSectorSize:  512,
		PhysicalSectorSize: 512,
		ProtectiveMBR:      true,
		Partitions: []*gpt.Partition{{
			Index: 1, Start: start, End: end,
			Type: gpt.Type(contract.DataPartitionType), Name: contract.DataPartitionName,
		}},
	}
	b := file.New(f, false)
	w, err := b.Writable()
	if err != nil {
		return err
	}
	if err := t.Write(w, size); err != nil {
		return fmt.Errorf("write GPT: %w", err)
	}
	partSize := int64(end-start+1) * 512
	if _, err := ext4.Create(b, partSize, int64(start)*512, 512, &ext4.Params{VolumeName: contract.DataPartitionName}); err != nil {
		return fmt.Errorf("make ext4 file system: %w", err)
	}
	return f.Sync()
}

// wipeDisk zeroes the first and last MiB: what classifyDisk looks at.
func wipeDisk(f *os.File, size int64) error {
	z := make([]byte, mib)
	if _, err := f.WriteAt(z, 0); err != nil {
		return err
	}
	if _, err := f.WriteAt(z, size-mib); err != nil {
		return err
	}
	return f.Sync()
}

// diskOps is the block layer the data disk needs.
type diskOps interface {
	// openDisk opens a whole-disk device and returns its size.
	openDisk(dev string, write bool) (*os.File, int64, error)
	// rereadPartitions asks the kernel to read a disk's partition table
	// again (BLKRRPART).
	rereadPartitions(f *os.File) error
	mountExt4(dev, target string) error
}

// findDisk finds the block device an identifier names in /sys/block:
// serial in <dev>/serial (virtio-blk) or <dev>/device/serial (SCSI, NVMe);
// wwn in <dev>/wwid or <dev>/device/wwid (with or without its "naa." /
// "eui." prefix); path as udev's by-path name for virtio-blk and NVMe
// ("pci-0000:00:05.0", "pci-0000:00:04.0-nvme-1").
func (a *agent) findDisk(id string) (string, error) {
	kind, value, err := contract.ParseDiskID(id)
	if err != nil {
		return "", err
	}
	// Every block device has a dev file (major:minor).
	devs, err := a.sys.glob("/sys/block/*/dev")
	if err != nil {
		return "", err
	}
	var found []string
	for _, dv := range devs {
		d := path.Dir(dv)
		name := path.Base(d)
		if strings.HasPrefix(name, "loop") || strings.HasPrefix(name, "ram") {
			continue
		}
		read := func(rel string) string {
			b, err := a.sys.readFile(path.Join(d, rel))
			if err != nil {
				return ""
			}
			return strings.TrimSpace(string(b))
		}
		switch kind {
		case contract.IDSerial:
			if value == read("serial") || value == read("device/serial") {
				found = append(found, name)
			}
		case contract.IDWWN:
			for _, w := range []string{read("wwid"), read("device/wwid")} {
				_, bare, _ := strings.Cut(w, ".")
				if w != "" && (w == value || bare == value) {
					found = append(found, name)
					break
				}
			}
		case contract.IDPath:
			if p, err := a.sys.readlink(d); err == nil && byPath(name, p) == value {
				found = append(found, name)
			}
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("no disk with %s", id)
	case 1:
		return "/dev/" + found[0], nil
	}
	return "", fmt.Errorf("%d disks match %s (%s): use an identifier only one has", len(found), id, strings.Join(found, ", "))
}

// byPath is udev's path_id for the disks it knows: the PCI function, and
// for NVMe the namespace.
func byPath(name, sysPath string) string {
	pci := lastPCIAddr(sysPath)
	if pci == "" {
		return ""
	}
	if strings.HasPrefix(name, "nvme") {
		if _, ns, ok := strings.Cut(name, "n"); ok {
			if i := strings.Index(ns[1:], "n"); i >= 0 {
				return "pci-" + pci + "-nvme-" + ns[i+2:]
			}
		}
		return ""
	}
	return "pci-" + pci
}

// partitionDev is the device node of a disk's first partition.
func partitionDev(disk string) string {
	last := disk[len(disk)-1]
	if last >= '0' && last <= '9' {
		return disk + "p1" // nvme0n1p1, mmcblk0p1
	}
	return disk + "1"
}

// setUpDataDisk finds, checks, if need be prepares, and mounts the data
// disk, and prints the data-disk line or a FAILED storage line.
func (a *agent) setUpDataDisk(ctx context.Context, d diskOps, cfg contract.DataDisk, wait time.Duration) error {
	fail := func(err error) error {
		a.say(contract.Failed{Step: "storage", Reason: err.Error()})
		return err
	}
	var dev string
	deadline := time.Now().Add(wait)
	for {
		var err error
		if dev, err = a.findDisk(cfg.ID); err == nil {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fail(fmt.Errorf("data disk %s: %w", cfg.ID, err))
		}
		time.Sleep(a.cfg.Poll)
	}
	f, size, err := d.openDisk(dev, false)
	if err != nil {
		return fail(fmt.Errorf("data disk %s (%s): %w", cfg.ID, dev, err))
	}
	st, what, err := classifyDisk(f, size)
	f.Close()
	if err != nil {
		return fail(fmt.Errorf("data disk %s (%s): %w", cfg.ID, dev, err))
	}
	action := "found"
	if st == diskForeign && !cfg.Wipe {
		return fail(fmt.Errorf("data disk %s (%s) holds %s that fwbuild did not write: not touched; to let ctld erase it, set storage.data.wipe: true in the profile", cfg.ID, dev, what))
	}
	if st != diskOurs {
		action = "prepared"
		f, size, err := d.openDisk(dev, true)
		if err != nil {
			return fail(fmt.Errorf("data disk %s (%s): %w", cfg.ID, dev, err))
		}
		err = func() error {
			defer f.Close()
			if st == diskForeign {
				if err := wipeDisk(f, size); err != nil {
					return fmt.Errorf("wipe (storage.data.wipe): %w", err)
				}
			}
			if err := prepareDisk(f, size); err != nil {
				return err
			}
			return d.rereadPartitions(f)
		}()
		if err != nil {
			return fail(fmt.Errorf("data disk %s (%s): prepare: %w", cfg.ID, dev, err))
		}
	}
	part := partitionDev(dev)
	for !a.sys.exists(part) {
		if time.Now().After(deadline.Add(5*time.Second)) || ctx.Err() != nil {
			return fail(fmt.Errorf("data disk %s (%s): partition %s did not appear", cfg.ID, dev, part))
		}
		time.Sleep(a.cfg.Poll)
	}
	if err := a.sys.mkdirAll(contract.DataMount); err != nil {
		return fail(err)
	}
	if err := d.mountExt4(part, contract.DataMount); err != nil {
		return fail(fmt.Errorf("data disk %s (%s): mount %s on %s: %w (fwbuild's partition; not reformatted)", cfg.ID, dev, part, contract.DataMount, err))
	}
	a.say(contract.DataDiskReady{ID: cfg.ID, Dev: dev, Action: action})
	return nil
}
