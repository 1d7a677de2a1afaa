package image

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"

	"github.com/fwbuild/fwbuild/boardcfg"
	"github.com/linuxboot/fiano/pkg/compression"
	"github.com/linuxboot/fiano/pkg/guid"
)

// Synthetic firmware for tests that need no OVMF and for fuzz seeds: a
// volume built by hand per the PI spec, so fiano is checked against the
// spec and not against itself.

const ffs2 = "8C8CE578-8A3D-4F1C-9935-896185C32DD3"

func guidBytes(t testing.TB, s string) []byte {
	t.Helper()
	g, err := guid.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return g[:]
}

// minimalPE returns a PE32+ EFI application header that debug/pe accepts,
// padded to size bytes with deterministic noise (an overlay).
func minimalPE(size int) []byte {
	const peOff = 0x40
	hdr := make([]byte, peOff+4+20+240)
	copy(hdr, "MZ")
	binary.LittleEndian.PutUint32(hdr[0x3C:], peOff)
	copy(hdr[peOff:], "PE\x00\x00")
	fh := hdr[peOff+4:]
	binary.LittleEndian.PutUint16(fh[0:], 0x8664) // AMD64
	binary.LittleEndian.PutUint16(fh[16:], 240)   // SizeOfOptionalHeader
	binary.LittleEndian.PutUint16(fh[18:], 0x22)  // executable, large address aware
	oh := fh[20:]
	binary.LittleEndian.PutUint16(oh[0:], 0x20B)   // PE32+
	binary.LittleEndian.PutUint32(oh[32:], 0x1000) // SectionAlignment
	binary.LittleEndian.PutUint32(oh[36:], 0x200)  // FileAlignment
	binary.LittleEndian.PutUint16(oh[68:], 10)     // Subsystem: EFI application
	binary.LittleEndian.PutUint32(oh[108:], 16)    // NumberOfRvaAndSizes
	return randomAfter(hdr, max(size, len(hdr)), 1)
}

type synthFile struct {
	guid     string
	ftype    byte
	sections [][]byte // complete sections, header included
}

func section(typ byte, data []byte) []byte {
	n := len(data) + 4
	return append([]byte{byte(n), byte(n >> 8), byte(n >> 16), typ}, data...)
}

func uiSection(name string) []byte {
	var d []byte
	for _, c := range name + "\x00" {
		d = append(d, byte(c), 0)
	}
	return section(0x15, d)
}

// ffsFile builds an FFS file with valid header checksum, erase polarity 1.
func ffsFile(t testing.TB, f synthFile) []byte {
	var data []byte
	for _, s := range f.sections {
		for len(data)%4 != 0 {
			data = append(data, 0)
		}
		data = append(data, s...)
	}
	n := 24 + len(data)
	h := make([]byte, 24)
	copy(h, guidBytes(t, f.guid))
	h[18] = f.ftype
	h[19] = 0 // attributes: no checksum, alignment 1
	h[20], h[21], h[22] = byte(n), byte(n>>8), byte(n>>16)
	var sum byte
	for i, c := range h {
		if i != 17 && i != 23 { // file checksum and state are not summed
			sum += c
		}
	}
	h[16] = -sum
	h[17] = 0xAA
	h[23] = 0xF8 // header construction, header valid, data valid (inverted)
	return append(h, data...)
}

// synthFV builds a firmware volume of size bytes (4 KiB blocks) named name
// holding files, free space 0xFF.
func synthFV(t testing.TB, name string, size int, files ...synthFile) []byte {
	t.Helper()
	fv := bytes.Repeat([]byte{0xFF}, size)
	h := fv[:0x5C]
	clear(h)
	copy(h[0x10:], guidBytes(t, ffs2))
	binary.LittleEndian.PutUint64(h[0x20:], uint64(size))
	copy(h[0x28:], "_FVH")
	binary.LittleEndian.PutUint32(h[0x2C:], 0x0004FEFF) // erase polarity 1 and the usual caps
	binary.LittleEndian.PutUint16(h[0x30:], 0x48)
	binary.LittleEndian.PutUint16(h[0x34:], 0x48) // extended header right after
	h[0x37] = 2
	binary.LittleEndian.PutUint32(h[0x38:], uint32(size/0x1000))
	binary.LittleEndian.PutUint32(h[0x3C:], 0x1000)
	copy(h[0x48:], guidBytes(t, name))
	binary.LittleEndian.PutUint32(h[0x58:], 20)
	binary.LittleEndian.PutUint16(h[0x32:], -checksum16(h[:0x48]))
	off := 0x60
	for _, f := range files {
		b := ffsFile(t, f)
		if off+len(b) > size {
			t.Fatalf("synthetic volume %s: files exceed %d bytes", name, size)
		}
		copy(fv[off:], b)
		off = (off + len(b) + 7) &^ 7
	}
	return fv
}

const (
	synthGrow = "11111111-2222-3333-4444-555555555555"
	synthSec  = "99999999-8888-7777-6666-555555555555"
)

// synthBase is a 64 KiB "firmware": a 48 KiB volume with a Shell-like
// application (PE32 + UI) and another file, then a 16 KiB top volume.
func synthBase(t testing.TB) []byte {
	shell := synthFile{guid: shellGUID, ftype: 0x09, sections: [][]byte{section(0x10, minimalPE(3000)), uiSection("Shell")}}
	other := synthFile{guid: "AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE", ftype: 0x02, sections: [][]byte{section(0x19, bytes.Repeat([]byte{1}, 100))}}
	base := synthFV(t, synthGrow, 0xC000, shell, other)
	return append(base, synthFV(t, synthSec, 0x4000)...)
}

// synthSpec lays synthBase out on a 256 KiB chip: 64 KiB data + 192 KiB
// firmware region, the first volume grown to fill it.
func synthSpec(t testing.TB, payload []byte) SPISpec {
	return SPISpec{
		ChipSize: 0x40000,
		Regions: []boardcfg.Region{
			{Name: "data", Start: 0, Size: 0x10000},
			{Name: "bios", Start: 0x10000, Size: 0x30000, Firmware: true},
		},
		Fills:        map[string][]byte{"data": []byte("factory")},
		BaseFirmware: synthBase(t), GrowFV: synthGrow, SlotFile: shellGUID, Payload: payload,
	}
}

const (
	synthDXE = "7CB8BDC9-0000-4F34-AAEA-3EE4AF6516A1"
	lzmaGUID = "EE4E5898-3914-4259-9D6E-DC7BD79403CF"
)

// synthCompressedBase mirrors OVMF's shape in 48 KiB: the first volume
// holds one file with an LZMA section around a 64 KiB inner volume that
// holds the Shell-like slot; a 16 KiB top volume follows.
func synthCompressedBase(t testing.TB) []byte {
	shell := synthFile{guid: shellGUID, ftype: 0x09, sections: [][]byte{section(0x10, minimalPE(3000)), uiSection("Shell")}}
	inner := synthFV(t, synthDXE, 0x10000, shell)
	wrapped := lzmaSection(t, fvImageSection(inner))
	outer := synthFV(t, synthGrow, 0x8000, synthFile{guid: "9E21FD93-0000-4C15-8C4B-E77F1DB2D792", ftype: 0x0B, sections: [][]byte{wrapped}})
	return append(outer, synthFV(t, synthSec, 0x4000)...)
}

// fvImageSection wraps a volume in an EFI_SECTION_FIRMWARE_VOLUME_IMAGE.
func fvImageSection(fv []byte) []byte { return section(0x17, fv) }

// lzmaSection compresses a section into an LZMA GUID-defined section, as
// EDK II's build does with the volume images of FVMAIN_COMPACT.
func lzmaSection(t testing.TB, raw []byte) []byte {
	enc, err := (&compression.LZMA{}).Encode(raw)
	if err != nil {
		t.Fatal(err)
	}
	gd := make([]byte, 20)
	copy(gd, guidBytes(t, lzmaGUID))
	binary.LittleEndian.PutUint16(gd[16:], 24) // data offset: headers
	binary.LittleEndian.PutUint16(gd[18:], 1)  // processing required
	return section(0x02, append(gd, enc...))
}

const (
	synthMid = "22222222-3333-4444-5555-666666666666"
	nvarGUID = "CEF5B9A3-476D-497F-9FDC-E98143E0422C" // AMI's NVAR store file
)

// nvarEntry is one variable of an AMI NVAR store (fiano parses the
// store from a raw file named nvarGUID): signature, size, no next entry,
// valid with its GUID and an ASCII name inline, then the data.
func nvarEntry(t testing.TB, name string, data []byte) []byte {
	body := append(append(guidBytes(t, "4599D26F-1A11-49B8-B91F-858745CFF824"), name+"\x00"...), data...)
	e := []byte("NVAR")
	e = binary.LittleEndian.AppendUint16(e, uint16(10+len(body)))
	e = append(e, 0xFF, 0xFF, 0xFF, 0x80|0x04|0x02)
	return append(e, body...)
}

// synthNestedBase puts the Shell-like slot two volume levels down, below
// an LZMA section, as VirtualBox's firmware does its DXE volume, next to
// node types a hand-written walk easily misses: an NVAR store in a raw
// file and padding between the top-level volumes.
func synthNestedBase(t testing.TB) []byte {
	shell := synthFile{guid: shellGUID, ftype: 0x09, sections: [][]byte{section(0x10, minimalPE(3000)), uiSection("Shell")}}
	inner := synthFV(t, synthDXE, 0x4000, shell)
	middle := synthFV(t, synthMid, 0x8000, synthFile{guid: "9E21FD93-0000-4C15-8C4B-E77F1DB2D792", ftype: 0x0B,
		sections: [][]byte{lzmaSection(t, fvImageSection(inner))}})
	nvar := synthFile{guid: nvarGUID, ftype: 0x01, sections: [][]byte{nvarEntry(t, "Setup", []byte{1, 2, 3})}}
	outer := synthFV(t, synthGrow, 0x10000, nvar, synthFile{guid: "A4EF5A93-0000-4232-A1C4-F0910E6D1D9C", ftype: 0x0B,
		sections: [][]byte{fvImageSection(middle)}})
	gap := bytes.Repeat([]byte{0xFF}, 0x1000)
	return slices.Concat(outer, gap, synthFV(t, synthSec, 0x4000))
}

// synthCompressedSpec grows the first volume to 0xC000 bytes: less than
// the inner volume, so compression bounds the budget.
func synthCompressedSpec(t testing.TB, payload []byte) SPISpec {
	return SPISpec{
		ChipSize: 0x20000,
		Regions: []boardcfg.Region{
			{Name: "vpd", Start: 0, Size: 0x10000, Preserve: true},
			{Name: "bios", Start: 0x10000, Size: 0x10000, Firmware: true},
		},
		BaseFirmware: synthCompressedBase(t), GrowFV: synthGrow, SlotFile: shellGUID, Payload: payload,
	}
}
