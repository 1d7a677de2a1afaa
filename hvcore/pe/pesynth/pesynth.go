// Package pesynth builds small synthetic PE images for tests of the PE
// writer and its users: shapes that real binaries rarely have (no header
// room, PE32, signed, bytes in the header slack) are one option away.
package pesynth

import (
	"encoding/binary"
)

// Options shape the image. The zero value gives a PE32+ x86-64 EFI
// application with .text and .data, FileAlignment 0x200, SectionAlignment
// 0x1000 and room in the headers for more sections.
type Options struct {
	PE32          bool   // PE32 (0x10b) instead of PE32+
	SizeOfHeaders uint32 // default 0x400; the section table must fit
	FileAlign     uint32 // default 0x200
	SectionAlign  uint32 // default 0x1000
	Sections      []Sec  // default .text (0x300 bytes) and .data (0x80 bytes)
	Certificate   bool   // set a certificate table directory entry
	Trailer       []byte // bytes after the last section's raw data
	SlackByte     byte   // written right after the section table
	Machine       uint16 // default 0x8664
	Subsystem     uint16 // default 10 (EFI application)
}

// Sec is a section of the synthetic image; RVAs are assigned in order.
type Sec struct {
	Name  string
	Size  int  // bytes of (patterned) raw data; 0 = uninitialized
	VSize int  // virtual size; default Size
	Fill  byte // pattern seed
}

// Image returns the image bytes.
func Image(o Options) []byte {
	if o.SizeOfHeaders == 0 {
		o.SizeOfHeaders = 0x400
	}
	if o.FileAlign == 0 {
		o.FileAlign = 0x200
	}
	if o.SectionAlign == 0 {
		o.SectionAlign = 0x1000
	}
	if o.Sections == nil {
		o.Sections = []Sec{{Name: ".text", Size: 0x300, Fill: 1}, {Name: ".data", Size: 0x80, VSize: 0x2000, Fill: 2}}
	}
	if o.Machine == 0 {
		o.Machine = 0x8664
	}
	if o.Subsystem == 0 {
		o.Subsystem = 10
	}
	up := func(v, a uint32) uint32 { return (v + a - 1) &^ (a - 1) }
	le16 := binary.LittleEndian.PutUint16
	le32 := binary.LittleEndian.PutUint32

	optSize := 240
	if o.PE32 {
		optSize = 224
	}
	const peOff = 0x80
	opt := peOff + 4 + 20
	table := opt + optSize
	b := make([]byte, o.SizeOfHeaders)
	copy(b, "MZ")
	le32(b[0x3c:], peOff)
	copy(b[peOff:], "PE\x00\x00")
	le16(b[peOff+4:], o.Machine)
	le16(b[peOff+6:], uint16(len(o.Sections)))
	le16(b[peOff+20:], uint16(optSize))
	le16(b[peOff+22:], 0x22) // executable, large address aware

	raw := o.SizeOfHeaders
	rva := up(o.SizeOfHeaders, o.SectionAlign)
	var body []byte
	for i, s := range o.Sections {
		h := b[table+40*i:]
		copy(h[:8], s.Name)
		vs := s.VSize
		if vs == 0 {
			vs = s.Size
		}
		le32(h[8:], uint32(vs))
		le32(h[12:], rva)
		if s.Size > 0 {
			n := up(uint32(s.Size), o.FileAlign)
			le32(h[16:], n)
			le32(h[20:], raw)
			d := make([]byte, n)
			for j := 0; j < s.Size; j++ {
				d[j] = s.Fill + byte(j*7)
			}
			body = append(body, d...)
			raw += n
			le32(h[36:], 0x40000040)
		} else {
			le32(h[36:], 0xc0000080)
		}
		rva = up(rva+uint32(vs), o.SectionAlign)
	}
	if o.SlackByte != 0 {
		b[table+40*len(o.Sections)] = o.SlackByte
	}

	if o.PE32 {
		le16(b[opt:], 0x10b)
		le32(b[opt+28:], 0x400000) // ImageBase
	} else {
		le16(b[opt:], 0x20b)
		binary.LittleEndian.PutUint64(b[opt+24:], 0x10000000)
	}
	le32(b[opt+16:], up(o.SizeOfHeaders, o.SectionAlign)) // entry point: start of the first section
	le32(b[opt+32:], o.SectionAlign)
	le32(b[opt+36:], o.FileAlign)
	le32(b[opt+56:], rva) // SizeOfImage
	le32(b[opt+60:], o.SizeOfHeaders)
	le16(b[opt+68:], o.Subsystem)
	dirs := opt + 96
	if !o.PE32 {
		dirs = opt + 112
	}
	le32(b[dirs-4:], 16)
	if o.Certificate {
		le32(b[dirs+8*4:], raw)
		le32(b[dirs+8*4+4:], 8)
	}
	out := append(b, body...)
	if o.Certificate {
		out = append(out, 8, 0, 0, 0, 0, 2, 2, 0)
	}
	return append(out, o.Trailer...)
}
