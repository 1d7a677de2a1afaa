package image

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// A guest bundle is what a board's guests region holds: a fixed header, then
// a newc cpio of the guests' xl configs, kernels and initramfs files. ctld
// reads it from the memory-mapped chip at boot (its own reader, cmd/ctld,
// must agree with this layout), so the header lets it tell an erased or
// stale region from a good one before it unpacks anything:
//
//	offset  size  field
//	0       8     magic "FWGUESTS"
//	8       4     format version, 1 (little endian)
//	12      4     zero
//	16      8     archive length in bytes (little endian)
//	24      32    SHA-256 of the archive
//	56      n     the archive
const (
	GuestBundleMagic   = "FWGUESTS"
	GuestBundleVersion = 1
	GuestBundleHeader  = 56
)

// GuestBundle wraps a cpio archive in the bundle header.
func GuestBundle(archive []byte) []byte {
	out := make([]byte, GuestBundleHeader, GuestBundleHeader+len(archive))
	copy(out, GuestBundleMagic)
	binary.LittleEndian.PutUint32(out[8:], GuestBundleVersion)
	binary.LittleEndian.PutUint64(out[16:], uint64(len(archive)))
	sum := sha256.Sum256(archive)
	copy(out[24:], sum[:])
	return append(out, archive...)
}

// ParseGuestBundle returns the archive of a bundle at the start of b (a
// region, with whatever follows the bundle) after checking its header and hash.
func ParseGuestBundle(b []byte) ([]byte, error) {
	if len(b) < GuestBundleHeader {
		return nil, fmt.Errorf("guest bundle: %d bytes, shorter than its %d-byte header", len(b), GuestBundleHeader)
	}
	if string(b[:8]) != GuestBundleMagic {
		if bytes.Count(b[:8], []byte{0xff}) == 8 {
			return nil, errors.New("guest bundle: the region is erased (no bundle written)")
		}
		return nil, fmt.Errorf("guest bundle: magic %q, want %q", b[:8], GuestBundleMagic)
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != GuestBundleVersion {
		return nil, fmt.Errorf("guest bundle: format version %d, this fwbuild reads %d", v, GuestBundleVersion)
	}
	if r := binary.LittleEndian.Uint32(b[12:]); r != 0 {
		return nil, fmt.Errorf("guest bundle: reserved header field is %#x, want 0", r)
	}
	n := binary.LittleEndian.Uint64(b[16:])
	if n > uint64(len(b)-GuestBundleHeader) {
		return nil, fmt.Errorf("guest bundle: archive of %d bytes does not fit the %d bytes after the header", n, len(b)-GuestBundleHeader)
	}
	archive := b[GuestBundleHeader : GuestBundleHeader+int(n)]
	if sum := sha256.Sum256(archive); !bytes.Equal(sum[:], b[24:56]) {
		return nil, fmt.Errorf("guest bundle: SHA-256 of the archive is %x, the header says %x", sum, b[24:56])
	}
	return archive, nil
}
