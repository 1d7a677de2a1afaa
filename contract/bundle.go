package contract

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// A guests bundle is what a board's guests region holds: a fixed header,
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
	BundleMagic      = "FWGUESTS"
	BundleVersion    = 1
	BundleHeaderSize = 56
)

// EncodeBundle wraps a cpio archive in the bundle header.
func EncodeBundle(archive []byte) []byte {
	out := make([]byte, BundleHeaderSize, BundleHeaderSize+len(archive))
	copy(out, BundleMagic)
	binary.LittleEndian.PutUint32(out[8:], BundleVersion)
	binary.LittleEndian.PutUint64(out[16:], uint64(len(archive)))
	sum := sha256.Sum256(archive)
	copy(out[24:], sum[:])
	return append(out, archive...)
}

// BundleHeader is a decoded bundle header.
type BundleHeader struct {
	Length uint64   // of the archive that follows the header
	SHA256 [32]byte // of the archive
}

// ParseBundleHeader checks the header at the start of h; room is how many
// bytes follow the header in the region, which the archive must fit.
func ParseBundleHeader(h []byte, room uint64) (BundleHeader, error) {
	if len(h) < BundleHeaderSize {
		return BundleHeader{}, fmt.Errorf("header of %d bytes, want %d", len(h), BundleHeaderSize)
	}
	if string(h[:8]) != BundleMagic {
		if bytes.Equal(h[:8], bytes.Repeat([]byte{0xff}, 8)) {
			return BundleHeader{}, errors.New("the region is erased: no guests were written to it (fwbuild flash spi writes them)")
		}
		return BundleHeader{}, fmt.Errorf("magic %q, want %q: the region does not hold fwbuild guests", h[:8], BundleMagic)
	}
	if v := binary.LittleEndian.Uint32(h[8:]); v != BundleVersion {
		return BundleHeader{}, fmt.Errorf("format version %d, this reader takes %d", v, BundleVersion)
	}
	if r := binary.LittleEndian.Uint32(h[12:]); r != 0 {
		return BundleHeader{}, fmt.Errorf("reserved header field is %#x, want 0", r)
	}
	bh := BundleHeader{Length: binary.LittleEndian.Uint64(h[16:])}
	copy(bh.SHA256[:], h[24:BundleHeaderSize])
	if bh.Length > room {
		return BundleHeader{}, fmt.Errorf("archive of %d bytes does not fit the %d-byte region", bh.Length, room)
	}
	return bh, nil
}

// Check verifies the archive against the header's length and SHA-256.
func (h BundleHeader) Check(archive []byte) error {
	if uint64(len(archive)) != h.Length {
		return fmt.Errorf("archive of %d bytes, the header says %d", len(archive), h.Length)
	}
	if sum := sha256.Sum256(archive); sum != h.SHA256 {
		return fmt.Errorf("SHA-256 of the archive is %x, the header says %x: the region is corrupt (flash it again)", sum[:8], h.SHA256[:8])
	}
	return nil
}

// DecodeBundle returns the archive of a bundle at the start of region (with
// whatever follows the bundle) after checking its header and hash.
func DecodeBundle(region []byte) ([]byte, error) {
	if len(region) < BundleHeaderSize {
		return nil, fmt.Errorf("guests bundle: %d bytes, shorter than its %d-byte header", len(region), BundleHeaderSize)
	}
	h, err := ParseBundleHeader(region, uint64(len(region)-BundleHeaderSize))
	if err != nil {
		return nil, fmt.Errorf("guests bundle: %w", err)
	}
	archive := region[BundleHeaderSize : BundleHeaderSize+h.Length]
	if err := h.Check(archive); err != nil {
		return nil, fmt.Errorf("guests bundle: %w", err)
	}
	return archive, nil
}
