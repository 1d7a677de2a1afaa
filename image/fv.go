package image

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/linuxboot/fiano/pkg/guid"
	"github.com/linuxboot/fiano/pkg/uefi"
)

// EFI_FIRMWARE_VOLUME_HEADER field offsets (PI spec vol. 3, 3.2.1).
const (
	fvFileSystemGUID = 0x10
	fvLength         = 0x20
	fvSignature      = 0x28
	fvHeaderLength   = 0x30
	fvChecksum       = 0x32
	fvExtHeader      = 0x34
	fvBlockMap       = 0x38
	fvMinHeader      = fvBlockMap + 16 // one block entry + terminator
)

// fvHeader is what we need of a top-level firmware volume header. fiano
// parses much more, but without bounds on everything; we check these
// fields ourselves first so malformed input gets a clear error.
type fvHeader struct {
	Offset    int // in the buffer it was found in
	Length    uint64
	HeaderLen int
	Name      guid.GUID // ext-header FvName, or the file system GUID without one
	Blocks    [][2]uint32
}

// parseFVHeader validates the volume header at b[off:].
func parseFVHeader(b []byte, off int) (fvHeader, error) {
	h := fvHeader{Offset: off}
	if off < 0 || len(b)-off < fvMinHeader {
		return h, fmt.Errorf("no room for a volume header")
	}
	v := b[off:]
	if string(v[fvSignature:fvSignature+4]) != "_FVH" {
		return h, fmt.Errorf("no _FVH signature")
	}
	h.Length = binary.LittleEndian.Uint64(v[fvLength:])
	h.HeaderLen = int(binary.LittleEndian.Uint16(v[fvHeaderLength:]))
	if h.HeaderLen < fvMinHeader || h.HeaderLen%2 != 0 || uint64(h.HeaderLen) > h.Length {
		return h, fmt.Errorf("bad header length %#x", h.HeaderLen)
	}
	if h.Length > uint64(len(v)) {
		return h, fmt.Errorf("length %#x runs past the end of the image (%#x bytes left)", h.Length, len(v))
	}
	if checksum16(v[:h.HeaderLen]) != 0 {
		return h, fmt.Errorf("header checksum does not add up")
	}
	for o := fvBlockMap; ; o += 8 {
		if o+8 > h.HeaderLen {
			return h, fmt.Errorf("block map has no terminator")
		}
		n, sz := binary.LittleEndian.Uint32(v[o:]), binary.LittleEndian.Uint32(v[o+4:])
		if n == 0 && sz == 0 {
			break
		}
		h.Blocks = append(h.Blocks, [2]uint32{n, sz})
	}
	copy(h.Name[:], v[fvFileSystemGUID:fvFileSystemGUID+16])
	if ext := int(binary.LittleEndian.Uint16(v[fvExtHeader:])); ext != 0 {
		if uint64(ext)+20 > h.Length {
			return h, fmt.Errorf("extended header at %#x lies outside the volume", ext)
		}
		copy(h.Name[:], v[ext:ext+16])
	}
	return h, nil
}

// topLevelFVs finds the volumes fiano would find in a BIOS region: the
// first valid header at an 8-byte-aligned offset, then the next one after
// its end. Invalid candidates are skipped, so the result lists what is
// certainly a volume.
func topLevelFVs(b []byte) []fvHeader {
	var fvs []fvHeader
	for off := 0; off+fvMinHeader <= len(b); {
		i := bytes.Index(b[off+fvSignature:], []byte("_FVH"))
		if i < 0 {
			break
		}
		cand := off + i
		if cand%8 != 0 {
			off = cand + 1
			continue
		}
		h, err := parseFVHeader(b, cand)
		if err != nil || h.Length == 0 {
			off = cand + 8
			continue
		}
		fvs = append(fvs, h)
		off = cand + int(h.Length)
	}
	return fvs
}

// growFV rewrites the header at b[0:] for a volume of newLen bytes: the
// length, the block count of its single block-map entry and the header
// checksum. OVMF's SEC finds FVMAIN_COMPACT by walking down from SECFV, so
// a volume grown downwards this way is found and decompressed as before.
func growFV(b []byte, h fvHeader, newLen uint64) error {
	if len(h.Blocks) != 1 {
		return fmt.Errorf("volume %v has %d block-map entries; only one can be resized", h.Name, len(h.Blocks))
	}
	bs := uint64(h.Blocks[0][1])
	if bs == 0 || newLen%bs != 0 {
		return fmt.Errorf("new length %#x of volume %v is not a multiple of its block size %#x", newLen, h.Name, bs)
	}
	if newLen/bs > 0xFFFFFFFF {
		return fmt.Errorf("new length %#x of volume %v needs too many blocks", newLen, h.Name)
	}
	v := b[h.Offset:]
	binary.LittleEndian.PutUint64(v[fvLength:], newLen)
	binary.LittleEndian.PutUint32(v[fvBlockMap:], uint32(newLen/bs))
	binary.LittleEndian.PutUint16(v[fvChecksum:], 0)
	binary.LittleEndian.PutUint16(v[fvChecksum:], -checksum16(v[:h.HeaderLen]))
	return nil
}

func checksum16(b []byte) uint16 {
	var s uint16
	for i := 0; i+1 < len(b); i += 2 {
		s += binary.LittleEndian.Uint16(b[i:])
	}
	return s
}

// hasVolume reports whether b holds, at or after from, a firmware volume
// signature where fiano looks for one: in the header of a volume that
// starts 8-byte aligned in b. The header is not checked (fiano does not
// check its checksum either), so a volume fiano can read is not turned away.
func hasVolume(b []byte, from int) bool {
	for off := from; off >= 0 && off+fvSignature <= len(b); {
		i := bytes.Index(b[off+fvSignature:], []byte("_FVH"))
		if i < 0 {
			return false
		}
		if (off+i)%8 == 0 {
			return true
		}
		off += i + 1
	}
	return false
}

// fianoListsFiles reports whether fiano parses the files of a volume with
// this file system GUID. fiano v1.2.0 parses only FFS2 and FFS3 volumes
// (its unexported supportedFVs) and returns any other volume with no
// files, which looks just like an empty volume unless the caller says so.
func fianoListsFiles(fs guid.GUID) bool {
	return fs == *uefi.FFS2 || fs == *uefi.FFS3
}

// fvFormat names a volume's file system GUID for a message: fiano's short
// name (FFS1, NVRAM_EVSA, ...) with the GUID, or the GUID alone.
func fvFormat(fs guid.GUID) string {
	if name, ok := uefi.FVGUIDs[fs]; ok {
		return name + " (" + fs.String() + ")"
	}
	return fs.String()
}

// mayHoldFiles reports whether a volume of this format can hold FFS files
// (so a slot file may hide in it): NVRAM variable stores cannot.
func mayHoldFiles(fs guid.GUID) bool {
	return fs != *uefi.EVSA && fs != *uefi.EVSA2 && fs != *uefi.NVAR
}

// unsupportedNote is what a volume whose files fiano does not parse says.
func unsupportedNote(fs guid.GUID) string {
	return "unsupported volume format " + fvFormat(fs) + ": its files are not listed"
}

// truncatedFV finds a top-level volume that runs past the end of b, the
// way fiano walks a BIOS region (FindFirmwareVolumeOffset, then the next
// volume after each one's length), so that a truncated image can be
// listed up to the damage instead of failing as "not a UEFI image".
func truncatedFV(b []byte) (off int, length uint64, ok bool) {
	for at := 0; at < len(b); {
		o := uefi.FindFirmwareVolumeOffset(b[at:])
		if o < 0 {
			return 0, 0, false
		}
		start := at + int(o)
		if start+fvLength+8 > len(b) {
			return 0, 0, false
		}
		length = binary.LittleEndian.Uint64(b[start+fvLength:])
		if length > uint64(len(b)-start) {
			return start, length, true
		}
		if length < uefi.FirmwareVolumeMinSize {
			return 0, 0, false // fiano fails on this one for another reason
		}
		at = start + int(length)
	}
	return 0, 0, false
}
