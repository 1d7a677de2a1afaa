// Package bundle is the format of a board's guests region, part of the
// contract between the build and the control domain. It is a package of its
// own because it hashes: guestinit imports package contract, and
// crypto/sha256 would add some 170 KB to every guest's init.
package bundle

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// A bundle is what a board's guests region holds: a fixed header,
// then a newc cpio of the guests' xl configs, kernels and initramfs files.
// ctld reads it from the memory-mapped chip at boot; the header lets it tell
// an erased or stale region from a good one before it reads the archive:
//
//	offset  size  field
//	0       8     magic "FWGUESTS"
//	8       4     format version, 1 (little endian)
//	12      4     zero
//	16      8     archive length in bytes (little endian)
//	24      32    SHA-256 of the archive
//	56      n     the archive
const (
	Magic      = "FWGUESTS"
	Version    = 1
	HeaderSize = 56
)

// Encode wraps a cpio archive in the bundle header.
func Encode(archive []byte) []byte {
	out := make([]byte, HeaderSize, HeaderSize+len(archive))
	copy(out, Magic)
	binary.LittleEndian.PutUint32(out[8:], Version)
	binary.LittleEndian.PutUint64(out[16:], uint64(len(archive)))
	sum := sha256.Sum256(archive)
	copy(out[24:], sum[:])
	return append(out, archive...)
}

// Header is a decoded bundle header.
type Header struct {
	Length uint64   // of the archive that follows the header
	SHA256 [32]byte // of the archive
}

// ParseHeader checks the header at the start of h, the first bytes of a
// region of regionSize bytes that the archive must fit.
func ParseHeader(h []byte, regionSize uint64) (Header, error) {
	if len(h) < HeaderSize {
		return Header{}, fmt.Errorf("header of %d bytes, want %d", len(h), HeaderSize)
	}
	if regionSize < HeaderSize {
		return Header{}, fmt.Errorf("a %d-byte region cannot hold the %d-byte header", regionSize, HeaderSize)
	}
	room := regionSize - HeaderSize
	if string(h[:8]) != Magic {
		if bytes.Equal(h[:8], bytes.Repeat([]byte{0xff}, 8)) {
			return Header{}, errors.New("the region is erased: no guests were written to it (fwbuild flash spi writes them)")
		}
		return Header{}, fmt.Errorf("magic %q, want %q: the region does not hold fwbuild guests", h[:8], Magic)
	}
	if v := binary.LittleEndian.Uint32(h[8:]); v != Version {
		return Header{}, fmt.Errorf("format version %d, this reader takes %d", v, Version)
	}
	if r := binary.LittleEndian.Uint32(h[12:]); r != 0 {
		return Header{}, fmt.Errorf("reserved header field is %#x, want 0", r)
	}
	bh := Header{Length: binary.LittleEndian.Uint64(h[16:])}
	copy(bh.SHA256[:], h[24:HeaderSize])
	if bh.Length > room {
		return Header{}, fmt.Errorf("archive of %d bytes does not fit the %d-byte region", bh.Length, room)
	}
	return bh, nil
}

// Check verifies the archive against the header's length and SHA-256.
func (h Header) Check(archive []byte) error {
	if uint64(len(archive)) != h.Length {
		return fmt.Errorf("archive of %d bytes, the header says %d", len(archive), h.Length)
	}
	if sum := sha256.Sum256(archive); sum != h.SHA256 {
		return fmt.Errorf("SHA-256 of the archive is %x, the header says %x: the region is corrupt (flash it again)", sum[:8], h.SHA256[:8])
	}
	return nil
}

// Decode returns the archive of a bundle at the start of region (with
// whatever follows the bundle) after checking its header and hash.
func Decode(region []byte) ([]byte, error) {
	if len(region) < HeaderSize {
		return nil, fmt.Errorf("guests bundle: %d bytes, shorter than its %d-byte header", len(region), HeaderSize)
	}
	h, err := ParseHeader(region, uint64(len(region)))
	if err != nil {
		return nil, fmt.Errorf("guests bundle: %w", err)
	}
	archive := region[HeaderSize : HeaderSize+h.Length]
	if err := h.Check(archive); err != nil {
		return nil, fmt.Errorf("guests bundle: %w", err)
	}
	return archive, nil
}
