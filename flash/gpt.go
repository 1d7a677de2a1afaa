package flash

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
)

// A disk image's GPT describes a disk of the image's size: its backup header and
// partition array sit in the image's last sectors. Written to a larger device they end
// up in the middle, where firmware and tools look for them at the device's end, find
// nothing, and call the disk damaged (or "repair" it from whichever copy they like).
// relocateBackupGPT moves the backup to the device's end, as `sgdisk -e` does.

const gptSector = 512 // fwbuild's images use 512-byte sectors (image.USBSpec)

// gptHeader is the part of a GPT header (UEFI spec 5.3.2) that relocation rewrites.
type gptHeader struct {
	raw                    []byte // the whole sector
	size                   uint32 // header size, CRC covers raw[:size]
	myLBA, altLBA          uint64
	firstUsable, lastUsble uint64
	entriesLBA             uint64
	entries, entrySize     uint32
	entriesCRC             uint32
}

func parseGPTHeader(sec []byte) (gptHeader, error) {
	h := gptHeader{raw: bytes.Clone(sec)}
	le := binary.LittleEndian
	if string(sec[:8]) != "EFI PART" {
		return h, fmt.Errorf("no GPT signature")
	}
	h.size = le.Uint32(sec[12:])
	if h.size < 92 || h.size > gptSector {
		return h, fmt.Errorf("GPT header size %d", h.size)
	}
	crc := le.Uint32(sec[16:])
	tmp := bytes.Clone(sec[:h.size])
	clear(tmp[16:20])
	if crc32.ChecksumIEEE(tmp) != crc {
		return h, fmt.Errorf("GPT header CRC mismatch")
	}
	h.myLBA, h.altLBA = le.Uint64(sec[24:]), le.Uint64(sec[32:])
	h.firstUsable, h.lastUsble = le.Uint64(sec[40:]), le.Uint64(sec[48:])
	h.entriesLBA = le.Uint64(sec[72:])
	h.entries, h.entrySize, h.entriesCRC = le.Uint32(sec[80:]), le.Uint32(sec[84:]), le.Uint32(sec[88:])
	if h.entrySize < 128 || h.entries == 0 || uint64(h.entries)*uint64(h.entrySize) > 1<<20 {
		return h, fmt.Errorf("GPT partition array of %d entries of %d bytes", h.entries, h.entrySize)
	}
	return h, nil
}

// encode writes the fields back into the sector and recomputes the header CRC.
func (h gptHeader) encode() []byte {
	le := binary.LittleEndian
	b := bytes.Clone(h.raw)
	le.PutUint64(b[24:], h.myLBA)
	le.PutUint64(b[32:], h.altLBA)
	le.PutUint64(b[48:], h.lastUsble)
	le.PutUint64(b[72:], h.entriesLBA)
	clear(b[16:20])
	le.PutUint32(b[16:], crc32.ChecksumIEEE(b[:h.size]))
	return b
}

func (h gptHeader) arraySectors() uint64 {
	return (uint64(h.entries)*uint64(h.entrySize) + gptSector - 1) / gptSector
}

// gptRelocation is what relocateBackupGPT did, for the result and logs.
type gptRelocation struct {
	From, To uint64 // backup header LBA before and after
}

// relocateBackupGPT moves the backup GPT of an image of imageSize bytes, already
// written at the start of a device of devSize bytes, to the device's last sectors, and
// points the primary header at it. It does nothing (ok false) when the image holds no
// valid GPT whose backup ends the image, or the device is no larger. Order matters for a
// crash half-way: the new backup is written and synced before the primary header points
// at it, so the disk always has one consistent primary+backup pair.
func relocateBackupGPT(dev io.ReaderAt, w io.WriterAt, sync func() error, imageSize, devSize int64) (gptRelocation, bool, error) {
	var rel gptRelocation
	if devSize <= imageSize || imageSize%gptSector != 0 || devSize%gptSector != 0 {
		return rel, false, nil
	}
	sec := make([]byte, gptSector)
	if _, err := dev.ReadAt(sec, gptSector); err != nil {
		return rel, false, fmt.Errorf("read primary GPT header: %w", err)
	}
	p, err := parseGPTHeader(sec)
	if err != nil || p.myLBA != 1 {
		return rel, false, nil // not a GPT disk image: nothing to relocate
	}
	oldAlt := uint64(imageSize/gptSector) - 1
	if p.altLBA != oldAlt {
		return rel, false, nil // the backup is not where an image's belongs: leave it
	}
	arr := make([]byte, p.arraySectors()*gptSector)
	if _, err := dev.ReadAt(arr, int64(p.entriesLBA)*gptSector); err != nil {
		return rel, false, fmt.Errorf("read GPT partition array: %w", err)
	}
	if crc32.ChecksumIEEE(arr[:uint64(p.entries)*uint64(p.entrySize)]) != p.entriesCRC {
		return rel, false, fmt.Errorf("GPT partition array CRC mismatch on the written device")
	}
	if _, err := dev.ReadAt(sec, int64(oldAlt)*gptSector); err != nil {
		return rel, false, fmt.Errorf("read backup GPT header: %w", err)
	}
	b, err := parseGPTHeader(sec)
	if err != nil {
		return rel, false, fmt.Errorf("backup GPT header at LBA %d: %w", oldAlt, err)
	}
	last := uint64(devSize/gptSector) - 1
	n := p.arraySectors()
	// Partitions stay as they are; the usable area grows to the new backup array, as
	// sgdisk -e does, so the free space can be partitioned.
	newLastUsable := last - n - 1
	b.myLBA, b.altLBA, b.entriesLBA, b.lastUsble = last, 1, last-n, newLastUsable
	p.altLBA, p.lastUsble = last, newLastUsable
	if _, err := w.WriteAt(arr, int64(last-n)*gptSector); err != nil {
		return rel, false, fmt.Errorf("write backup GPT partition array: %w", err)
	}
	if _, err := w.WriteAt(b.encode(), int64(last)*gptSector); err != nil {
		return rel, false, fmt.Errorf("write backup GPT header: %w", err)
	}
	if err := sync(); err != nil {
		return rel, false, fmt.Errorf("sync backup GPT: %w", err)
	}
	if _, err := w.WriteAt(p.encode(), gptSector); err != nil {
		return rel, false, fmt.Errorf("write primary GPT header: %w", err)
	}
	// The protective MBR's 0xEE partition covers the whole disk (up to 2 TiB).
	mbr := make([]byte, gptSector)
	if _, err := dev.ReadAt(mbr, 0); err == nil && mbr[510] == 0x55 && mbr[511] == 0xAA && mbr[446+4] == 0xEE {
		binary.LittleEndian.PutUint32(mbr[446+12:], uint32(min(last, 0xFFFFFFFF)))
		if _, err := w.WriteAt(mbr, 0); err != nil {
			return rel, false, fmt.Errorf("write protective MBR: %w", err)
		}
	}
	// The old backup header now lies in free space; a stale "EFI PART" there could be
	// mistaken for a GPT by recovery tools.
	if _, err := w.WriteAt(make([]byte, gptSector), int64(oldAlt)*gptSector); err != nil {
		return rel, false, fmt.Errorf("clear the old backup GPT header: %w", err)
	}
	if err := sync(); err != nil {
		return rel, false, fmt.Errorf("sync GPT: %w", err)
	}
	return gptRelocation{From: oldAlt, To: last}, true, nil
}

// checkGPTAt reads both GPT headers of a disk of devSize bytes back and checks that each
// is valid and points at the other, the backup at the last LBA.
func checkGPTAt(dev io.ReaderAt, devSize int64) error {
	last := uint64(devSize/gptSector) - 1
	sec := make([]byte, gptSector)
	if _, err := dev.ReadAt(sec, gptSector); err != nil {
		return err
	}
	p, err := parseGPTHeader(sec)
	if err != nil {
		return fmt.Errorf("primary header: %w", err)
	}
	if _, err := dev.ReadAt(sec, int64(last)*gptSector); err != nil {
		return err
	}
	b, err := parseGPTHeader(sec)
	if err != nil {
		return fmt.Errorf("backup header at LBA %d: %w", last, err)
	}
	if p.altLBA != last || b.myLBA != last || b.altLBA != 1 || b.entriesCRC != p.entriesCRC {
		return fmt.Errorf("primary says backup at LBA %d, backup says it is at %d (device's last LBA %d)", p.altLBA, b.myLBA, last)
	}
	return nil
}
