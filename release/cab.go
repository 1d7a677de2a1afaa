package release

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sort"
	"time"
)

// cabinet writes a Microsoft Cabinet archive (MS-CAB, the container fwupd
// and the LVFS take) with one uncompressed folder: the files' bytes are
// what they are, which keeps the archive reproducible and trivially
// checkable. Files are stored in name order, dated mtime.
func cabinet(files map[string][]byte, mtime time.Time) ([]byte, error) {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)

	const (
		headerSize = 36
		folderSize = 8
		blockMax   = 0x8000 // CFDATA holds at most 32 KiB
		attrArch   = 0x20
		attrUTF8   = 0x80
	)
	var total int64
	fileEntries := 0
	for _, n := range names {
		if n == "" || len(n) > 255 {
			return nil, fmt.Errorf("release: cabinet: file name %q must be 1-255 bytes", n)
		}
		total += int64(len(files[n]))
		fileEntries += 16 + len(n) + 1
	}
	if total > 0x7fff8000 {
		return nil, fmt.Errorf("release: cabinet: %d bytes exceed one folder's 2 GiB", total)
	}
	blocks := int((total + blockMax - 1) / blockMax)
	if blocks > 0xffff {
		return nil, fmt.Errorf("release: cabinet: %d data blocks, at most 65535", blocks)
	}
	dataAt := headerSize + folderSize + fileEntries
	size := dataAt + blocks*8 + int(total)

	var out bytes.Buffer
	le := func(v any) { binary.Write(&out, binary.LittleEndian, v) }
	out.WriteString("MSCF")
	le(uint32(0))                       // reserved1
	le(uint32(size))                    // cbCabinet
	le(uint32(0))                       // reserved2
	le(uint32(headerSize + folderSize)) // coffFiles
	le(uint32(0))                       // reserved3
	out.Write([]byte{3, 1})             // version 1.3
	le(uint16(1))                       // cFolders
	le(uint16(len(names)))              // cFiles
	le(uint16(0))                       // flags
	le(uint16(0))                       // setID
	le(uint16(0))                       // iCabinet

	le(uint32(dataAt)) // CFFOLDER: coffCabStart
	le(uint16(blocks)) // cCFData
	le(uint16(0))      // typeCompress: none

	date, clock := dosTime(mtime)
	var offset uint32
	for _, n := range names {
		le(uint32(len(files[n]))) // cbFile
		le(offset)                // uoffFolderStart
		le(uint16(0))             // iFolder
		le(date)
		le(clock)
		attr := uint16(attrArch)
		if !ascii(n) {
			attr |= attrUTF8
		}
		le(attr)
		out.WriteString(n)
		out.WriteByte(0)
		offset += uint32(len(files[n]))
	}

	// The folder's bytes are the files' concatenation, cut into blocks.
	var stream bytes.Buffer
	for _, n := range names {
		stream.Write(files[n])
	}
	data := stream.Bytes()
	for len(data) > 0 {
		n := min(len(data), blockMax)
		block := data[:n]
		var lens [4]byte
		binary.LittleEndian.PutUint16(lens[0:], uint16(n)) // cbData
		binary.LittleEndian.PutUint16(lens[2:], uint16(n)) // cbUncomp
		le(cabChecksum(lens[:], cabChecksum(block, 0)))
		out.Write(lens[:])
		out.Write(block)
		data = data[n:]
	}
	if out.Len() != size {
		return nil, fmt.Errorf("release: cabinet: wrote %d bytes, computed %d", out.Len(), size)
	}
	return out.Bytes(), nil
}

// cabChecksum is MS-CAB's CFDATA checksum: the XOR of the data as
// little-endian 32-bit words, the tail bytes folded in the spec's order.
func cabChecksum(b []byte, seed uint32) uint32 {
	sum := seed
	for len(b) >= 4 {
		sum ^= binary.LittleEndian.Uint32(b)
		b = b[4:]
	}
	var tail uint32
	switch len(b) {
	case 3:
		tail = uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2])
	case 2:
		tail = uint32(b[0])<<8 | uint32(b[1])
	case 1:
		tail = uint32(b[0])
	}
	return sum ^ tail
}

func dosTime(t time.Time) (date, clock uint16) {
	t = t.UTC()
	if t.Year() < 1980 {
		t = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	date = uint16((t.Year()-1980)<<9 | int(t.Month())<<5 | t.Day())
	clock = uint16(t.Hour()<<11 | t.Minute()<<5 | t.Second()/2)
	return date, clock
}

func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
