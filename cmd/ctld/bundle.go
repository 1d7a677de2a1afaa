package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
)

// A board whose flash payload has no room for its guests keeps them in a
// region of the SPI chip. fwbuild then puts
//
//	fwbuild.guests=<address>,<size>
//
// on the dom0 command line: where the region appears in physical memory (the
// chip is mapped below 4 GiB). ctld reads it through /dev/mem, checks it, and
// unpacks the guests into the same places the USB payload's initramfs puts
// them, so everything after this step is the same for both.
//
// The region starts with a bundle; the layout is fwbuild's image.GuestBundle
// (TestBundleMatchesImage keeps the two in step):
//
//	0 magic "FWGUESTS" | 8 version 1 (LE32) | 12 zero (LE32) |
//	16 archive length (LE64) | 24 SHA-256 of the archive | 56 newc cpio
const (
	bundleParam   = "fwbuild.guests="
	bundleMagic   = "FWGUESTS"
	bundleVersion = 1
	bundleHeader  = 56
)

// guestsRegion finds fwbuild.guests=<address>,<size> on a kernel command line.
func guestsRegion(cmdline string) (addr, size uint64, ok bool, err error) {
	for _, f := range strings.Fields(cmdline) {
		v, found := strings.CutPrefix(f, bundleParam)
		if !found {
			continue
		}
		a, s, _ := strings.Cut(v, ",")
		addr, err1 := strconv.ParseUint(a, 0, 64)
		size, err2 := strconv.ParseUint(s, 0, 64)
		if err1 != nil || err2 != nil || size < bundleHeader || addr+size < addr {
			return 0, 0, true, fmt.Errorf("%q: want %s<address>,<size>", f, bundleParam)
		}
		return addr, size, true, nil
	}
	return 0, 0, false, nil
}

// bundleLength checks a bundle header and returns the archive's length.
func bundleLength(h []byte, room uint64) (uint64, error) {
	if len(h) < bundleHeader {
		return 0, fmt.Errorf("header of %d bytes, want %d", len(h), bundleHeader)
	}
	if string(h[:8]) != bundleMagic {
		if bytes.Equal(h[:8], bytes.Repeat([]byte{0xff}, 8)) {
			return 0, errors.New("the region is erased: no guests were written to it (fwbuild flash spi writes them)")
		}
		return 0, fmt.Errorf("magic %q, want %q: the region does not hold fwbuild guests", h[:8], bundleMagic)
	}
	if v := binary.LittleEndian.Uint32(h[8:]); v != bundleVersion {
		return 0, fmt.Errorf("bundle format %d, this ctld reads %d", v, bundleVersion)
	}
	if r := binary.LittleEndian.Uint32(h[12:]); r != 0 {
		return 0, fmt.Errorf("reserved header field is %#x, want 0", r)
	}
	n := binary.LittleEndian.Uint64(h[16:])
	if n > room {
		return 0, fmt.Errorf("archive of %d bytes does not fit the %d-byte region", n, room)
	}
	return n, nil
}

// checkBundle verifies the archive against the header's SHA-256.
func checkBundle(h, archive []byte) error {
	if sum := sha256.Sum256(archive); !bytes.Equal(sum[:], h[24:bundleHeader]) {
		return fmt.Errorf("SHA-256 of the archive is %x, the header says %x: the region is corrupt (flash it again)", sum[:8], h[24:32])
	}
	return nil
}

type cpioFile struct {
	Path string // cleaned, absolute
	Mode uint32 // type and permission bits, as in the archive
	Data []byte
}

const (
	cpioTypeMask = 0o170000
	cpioDir      = 0o040000
	cpioRegular  = 0o100000
)

// readNewc parses a newc ("070701") archive up to its trailer.
func readNewc(b []byte) ([]cpioFile, error) {
	var files []cpioFile
	off := 0
	for {
		if len(b)-off < 110 {
			return nil, fmt.Errorf("cpio: header at %d: archive ends (no trailer)", off)
		}
		h := b[off : off+110]
		if string(h[:6]) != "070701" {
			return nil, fmt.Errorf("cpio: header at %d: magic %q, want 070701 (newc)", off, h[:6])
		}
		var fld [13]uint64
		for i := range fld {
			v, err := strconv.ParseUint(string(h[6+8*i:14+8*i]), 16, 32)
			if err != nil {
				return nil, fmt.Errorf("cpio: header at %d: field %d: %w", off, i, err)
			}
			fld[i] = v
		}
		mode, size, nameSize := uint32(fld[1]), fld[6], fld[11]
		nameEnd := uint64(off) + 110 + nameSize
		if nameSize == 0 || nameEnd > uint64(len(b)) || b[nameEnd-1] != 0 {
			return nil, fmt.Errorf("cpio: header at %d: bad name size %d", off, nameSize)
		}
		name := string(b[uint64(off)+110 : nameEnd-1])
		dataStart := align4(nameEnd)
		if dataStart+size > uint64(len(b)) {
			return nil, fmt.Errorf("cpio: %s: %d bytes of data run past the archive", name, size)
		}
		if name == "TRAILER!!!" {
			return files, nil
		}
		files = append(files, cpioFile{Path: path.Clean("/" + name), Mode: mode, Data: b[dataStart : dataStart+size]})
		off = int(align4(dataStart + size))
	}
}

func align4(n uint64) uint64 { return (n + 3) &^ 3 }

// loadGuestBundle unpacks the guests region named on the command line, if
// any. Only regular files under the guests' two directories are written, so
// a bad region cannot replace anything else in the control domain.
func (a *agent) loadGuestBundle(context.Context) error {
	cmdline, err := a.sys.readFile("/proc/cmdline")
	if err != nil {
		return err
	}
	addr, size, ok, err := guestsRegion(string(cmdline))
	if !ok || err != nil {
		return err
	}
	where := fmt.Sprintf("guests region at %#x", addr)
	h, err := a.sys.readPhys(addr, bundleHeader)
	if err != nil {
		return fmt.Errorf("%s: read: %w", where, err)
	}
	n, err := bundleLength(h, size-bundleHeader)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	archive, err := a.sys.readPhys(addr+bundleHeader, n)
	if err != nil {
		return fmt.Errorf("%s: read: %w", where, err)
	}
	if err := checkBundle(h, archive); err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	files, err := readNewc(archive)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	roots := []string{a.cfg.GuestsDir, a.cfg.GuestImages}
	count := 0
	for _, f := range files {
		switch f.Mode & cpioTypeMask {
		case cpioDir:
			if !under(f.Path, roots) && !parentOf(f.Path, roots) {
				return fmt.Errorf("%s: directory %s is outside %s", where, f.Path, strings.Join(roots, " and "))
			}
		case cpioRegular:
			if !under(f.Path, roots) {
				return fmt.Errorf("%s: file %s is outside %s", where, f.Path, strings.Join(roots, " and "))
			}
			if err := a.sys.mkdirAll(path.Dir(f.Path)); err != nil {
				return err
			}
			if err := a.sys.writeFile(f.Path, f.Data, fs.FileMode(f.Mode&0o777)); err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
			count++
		default:
			return fmt.Errorf("%s: %s has mode %#o: only files and directories are unpacked", where, f.Path, f.Mode)
		}
	}
	sum := sha256.Sum256(archive)
	fmt.Fprintf(a.out, "fwbuild-ctld: %s: %d files, %d bytes, sha256 %x ok\n", where, count, n, sum[:8])
	return nil
}

// under says whether p is strictly inside one of the roots.
func under(p string, roots []string) bool {
	for _, r := range roots {
		if r != "" && strings.HasPrefix(p, strings.TrimSuffix(r, "/")+"/") {
			return true
		}
	}
	return false
}

// parentOf says whether p is one of the roots or a directory above one.
func parentOf(p string, roots []string) bool {
	for _, r := range roots {
		if r == p || p == "/" || strings.HasPrefix(r, p+"/") {
			return true
		}
	}
	return false
}
