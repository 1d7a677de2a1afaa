package image

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

type readWriterAt interface {
	io.ReaderAt
	io.WriterAt
}

// fat32 is the geometry of a FAT32 file system, from its boot sector.
type fat32 struct {
	off       int64 // of the file system in the image
	bps       int64 // bytes per sector
	cluster   int64 // bytes per cluster
	backupBS  int64 // sector of the backup boot sector
	fat       []byte
	dataStart int64
	root      uint32
	clusters  uint32 // data clusters
	fsinfo    int64  // sector of the FSInfo sector
}

func readFAT32(d io.ReaderAt, off int64) (*fat32, error) {
	bs := make([]byte, 512)
	if _, err := d.ReadAt(bs, off); err != nil {
		return nil, fmt.Errorf("read boot sector: %w", err)
	}
	if bs[510] != 0x55 || bs[511] != 0xAA {
		return nil, errors.New("no boot sector signature")
	}
	f := &fat32{off: off}
	f.bps = int64(binary.LittleEndian.Uint16(bs[0x0B:]))
	spc := int64(bs[0x0D])
	rsvd := int64(binary.LittleEndian.Uint16(bs[0x0E:]))
	nfats := int64(bs[0x10])
	fatsz := int64(binary.LittleEndian.Uint32(bs[0x24:]))
	f.backupBS = int64(binary.LittleEndian.Uint16(bs[0x32:]))
	f.root = binary.LittleEndian.Uint32(bs[0x2C:])
	if f.bps != 512 && f.bps != 4096 || spc == 0 || spc&(spc-1) != 0 || nfats == 0 || fatsz == 0 || f.root < 2 ||
		binary.LittleEndian.Uint16(bs[0x16:]) != 0 {
		return nil, errors.New("not a FAT32 boot sector")
	}
	f.cluster = spc * f.bps
	f.fat = make([]byte, fatsz*f.bps)
	if _, err := d.ReadAt(f.fat, off+rsvd*f.bps); err != nil {
		return nil, fmt.Errorf("read FAT: %w", err)
	}
	f.dataStart = off + (rsvd+nfats*fatsz)*f.bps
	total := int64(binary.LittleEndian.Uint32(bs[0x20:]))
	if total <= rsvd+nfats*fatsz {
		return nil, errors.New("no data area")
	}
	f.clusters = uint32(min((total-rsvd-nfats*fatsz)/spc, int64(len(f.fat)/4-2)))
	f.fsinfo = int64(binary.LittleEndian.Uint16(bs[0x30:]))
	return f, nil
}

// chain lists the clusters of the chain starting at c.
func (f *fat32) chain(c uint32) ([]uint32, error) {
	var out []uint32
	max := uint32(len(f.fat) / 4)
	for c >= 2 && c < 0x0FFFFFF8 {
		if c >= max || len(out) > int(max) {
			return nil, fmt.Errorf("broken cluster chain at %d", c)
		}
		out = append(out, c)
		c = binary.LittleEndian.Uint32(f.fat[4*c:]) & 0x0FFFFFFF
	}
	return out, nil
}

func (f *fat32) clusterOff(c uint32) int64 { return f.dataStart + int64(c-2)*f.cluster }

// dosTime encodes t (UTC) as FAT date, time and 10 ms units.
func dosTime(t time.Time) (date, tim uint16, tenth uint8) {
	t = t.UTC()
	date = uint16(t.Year()-1980)<<9 | uint16(t.Month())<<5 | uint16(t.Day())
	tim = uint16(t.Hour())<<11 | uint16(t.Minute())<<5 | uint16(t.Second()/2)
	tenth = uint8(t.Second()%2*100 + t.Nanosecond()/10_000_000)
	return date, tim, tenth
}

// fixFAT makes a go-diskfs FAT32 reproducible and fsck-clean, in place:
//   - every directory entry gets epoch as its times (go-diskfs takes them
//     from SOURCE_DATE_EPOCH in the environment, a process global, or the
//     clock);
//   - ".." entries that point at the root directory get cluster 0 as the
//     FAT spec says (go-diskfs writes the root's cluster; fsck.fat reports
//     "Invalid '..' entry");
//   - the FSInfo free-cluster count and hint are filled in (go-diskfs leaves
//     them unset; fsck.fat reports "Free cluster summary uninitialized");
//   - the boot sector (and its backup) get the volume serial and the
//     partition's start as hidden sectors.
func fixFAT(d readWriterAt, off int64, epoch time.Time, serial uint32) error {
	f, err := readFAT32(d, off)
	if err != nil {
		return err
	}
	var ser, hidden [4]byte
	binary.LittleEndian.PutUint32(ser[:], serial)
	binary.LittleEndian.PutUint32(hidden[:], uint32(off/f.bps))
	for _, s := range []int64{0, f.backupBS} {
		if _, err := d.WriteAt(ser[:], off+s*f.bps+0x43); err != nil {
			return err
		}
		if _, err := d.WriteAt(hidden[:], off+s*f.bps+0x1C); err != nil {
			return err
		}
	}
	date, tim, tenth := dosTime(epoch)
	if err := f.fixDir(d, f.root, 0, date, tim, tenth); err != nil {
		return err
	}
	return f.fixFSInfo(d)
}

// fixFSInfo writes the free-cluster count and next-free hint into the
// FSInfo sector and, if present, its copy after the backup boot sector.
func (f *fat32) fixFSInfo(d readWriterAt) error {
	var free, next uint32 = 0, 0xFFFFFFFF
	for c := uint32(2); c < f.clusters+2; c++ {
		if binary.LittleEndian.Uint32(f.fat[4*c:])&0x0FFFFFFF == 0 {
			if free == 0 {
				next = c
			}
			free++
		}
	}
	for _, s := range []int64{f.fsinfo, f.backupBS + f.fsinfo} {
		if s == 0 || s == f.backupBS {
			continue
		}
		sec := make([]byte, 512)
		if _, err := d.ReadAt(sec, f.off+s*f.bps); err != nil {
			return err
		}
		if binary.LittleEndian.Uint32(sec[0:]) != 0x41615252 || binary.LittleEndian.Uint32(sec[484:]) != 0x61417272 {
			continue
		}
		binary.LittleEndian.PutUint32(sec[488:], free)
		binary.LittleEndian.PutUint32(sec[492:], next)
		if _, err := d.WriteAt(sec, f.off+s*f.bps); err != nil {
			return err
		}
	}
	return nil
}

func (f *fat32) fixDir(d readWriterAt, first uint32, depth int, date, tim uint16, tenth uint8) error {
	if depth > 32 {
		return errors.New("directories nested too deep")
	}
	clusters, err := f.chain(first)
	if err != nil {
		return err
	}
	var subdirs []uint32
	buf := make([]byte, f.cluster)
	for _, c := range clusters {
		if _, err := d.ReadAt(buf, f.clusterOff(c)); err != nil {
			return err
		}
		end := false
		for i := 0; i < len(buf) && !end; i += 32 {
			e := buf[i : i+32]
			switch {
			case e[0] == 0:
				end = true
				continue
			case e[0] == 0xE5 || e[11] == 0x0F: // deleted, long-name slot
				continue
			}
			e[13] = tenth
			binary.LittleEndian.PutUint16(e[14:], tim)
			binary.LittleEndian.PutUint16(e[16:], date)
			binary.LittleEndian.PutUint16(e[18:], date)
			binary.LittleEndian.PutUint16(e[22:], tim)
			binary.LittleEndian.PutUint16(e[24:], date)
			name := string(e[:11])
			cl := uint32(binary.LittleEndian.Uint16(e[20:]))<<16 | uint32(binary.LittleEndian.Uint16(e[26:]))
			switch {
			case name == "..         ":
				if cl == f.root {
					binary.LittleEndian.PutUint16(e[20:], 0)
					binary.LittleEndian.PutUint16(e[26:], 0)
				}
			case name == ".          ":
			case e[11]&0x10 != 0:
				subdirs = append(subdirs, cl)
			}
		}
		if _, err := d.WriteAt(buf, f.clusterOff(c)); err != nil {
			return err
		}
		if end {
			break
		}
	}
	for _, c := range subdirs {
		if err := f.fixDir(d, c, depth+1, date, tim, tenth); err != nil {
			return err
		}
	}
	return nil
}
