package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"

	"github.com/cavaliergopher/cpio"
	"github.com/fwbuild/fwbuild/contract"
	"github.com/fwbuild/fwbuild/contract/bundle"
)

// A board whose flash payload has no room for its guests keeps them in a
// region of the SPI chip, and fwbuild tells ctld where on the dom0 command
// line (contract.GuestsRegion). ctld reads the region through privcmd,
// checks the bundle (bundle.ParseHeader), and unpacks the guests
// into the same places the USB payload's initramfs puts them, so everything
// after this step is the same for both.

type cpioFile struct {
	Path string // cleaned, absolute
	Mode cpio.FileMode
	Data []byte
}

// readNewc reads a newc archive up to its trailer. The archive comes from
// flash, so it is checked as it is read: a truncated entry or a missing
// trailer is an error, not a shorter list.
func readNewc(b []byte) ([]cpioFile, error) {
	br := bytes.NewReader(b)
	r := cpio.NewReader(br)
	var files []cpioFile
	for {
		before := br.Len()
		h, err := r.Next()
		if errors.Is(err, io.EOF) {
			if br.Len() == before {
				// The reader says EOF both at the trailer and when the
				// input simply stops; only the trailer consumes bytes.
				return nil, fmt.Errorf("cpio: archive ends after %d entries without a trailer", len(files))
			}
			return files, nil
		}
		if err != nil {
			return nil, fmt.Errorf("cpio: entry %d at offset %d: %w", len(files), len(b)-before, err)
		}
		var data []byte
		if h.Mode&cpio.ModeType == cpio.TypeReg {
			if h.Size < 0 || h.Size > int64(br.Len()) {
				return nil, fmt.Errorf("cpio: %s: %d bytes of data run past the archive", h.Name, h.Size)
			}
			data = make([]byte, h.Size)
			if _, err := io.ReadFull(r, data); err != nil {
				return nil, fmt.Errorf("cpio: %s: %w", h.Name, err)
			}
		}
		files = append(files, cpioFile{Path: path.Clean("/" + h.Name), Mode: h.Mode, Data: data})
	}
}

// loadGuestBundle unpacks the guests region named on the command line, if
// any. Only regular files under the guests' two directories are written, so
// a bad region cannot replace anything else in the control domain.
func (a *agent) loadGuestBundle(context.Context) error {
	cmdline, err := a.sys.readFile("/proc/cmdline")
	if err != nil {
		return err
	}
	reg, ok, err := contract.ParseGuestsRegion(string(cmdline))
	if !ok || err != nil {
		return err
	}
	where := fmt.Sprintf("guests region at %#x", reg.Addr)
	hb, err := a.sys.readPhys(reg.Addr, bundle.HeaderSize)
	if err != nil {
		return fmt.Errorf("%s: read: %w", where, err)
	}
	h, err := bundle.ParseHeader(hb, reg.Size)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	archive, err := a.sys.readPhys(reg.Addr+bundle.HeaderSize, h.Length)
	if err != nil {
		return fmt.Errorf("%s: read: %w", where, err)
	}
	if err := h.Check(archive); err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	// The header's hash only shows the region is whole; the payload's pin
	// shows it is the build's (a rewritten region carries a valid header too).
	switch got := hex.EncodeToString(h.SHA256[:]); {
	case reg.SHA256 == "":
		return fmt.Errorf("%s: the command line pins no SHA-256 (%s=<address>,<size>,sha256:<hex>): refusing an unauthenticated region", where, contract.GuestsRegionParam)
	case got != reg.SHA256:
		return fmt.Errorf("%s: holds a bundle with SHA-256 %.16s..., the payload pins %.16s...: the region was rewritten (flash the build's spi.bin again)", where, got, reg.SHA256)
	}
	files, err := readNewc(archive)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	roots := []string{a.cfg.GuestsDir, a.cfg.GuestImages}
	count := 0
	for _, f := range files {
		switch f.Mode & cpio.ModeType {
		case cpio.TypeDir:
			if !under(f.Path, roots) && !parentOf(f.Path, roots) {
				return fmt.Errorf("%s: directory %s is outside %s", where, f.Path, strings.Join(roots, " and "))
			}
		case cpio.TypeReg:
			if !under(f.Path, roots) {
				return fmt.Errorf("%s: file %s is outside %s", where, f.Path, strings.Join(roots, " and "))
			}
			if err := a.sys.mkdirAll(path.Dir(f.Path)); err != nil {
				return err
			}
			if err := a.sys.writeFile(f.Path, f.Data, fs.FileMode(f.Mode&cpio.ModePerm)); err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
			count++
		default:
			return fmt.Errorf("%s: %s has mode %#o: only files and directories are unpacked", where, f.Path, uint32(f.Mode))
		}
	}
	fmt.Fprintln(a.out, contract.BundleLoaded{Addr: reg.Addr, Files: count, Bytes: h.Length, SHA256: h.SHA256})
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
