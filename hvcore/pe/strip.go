package pe

import (
	"bytes"
	"fmt"
)

// StripSymbols returns a copy of img without its COFF symbol table (and the
// string table after it), which a linker may leave at the end of the file:
// no image loader reads it. Sections appended after it would leave it as a
// gap between section data, and such gaps are where Authenticode verifiers
// disagree (the spec's algorithm, sbverify and edk2 skip them; osslsigncode
// hashes them), and whatever lies there is unsigned. An image without a
// symbol table is returned unchanged; one whose table is not after every
// section's data (or the data a debug directory entry points to) is refused.
func StripSymbols(img []byte) ([]byte, error) {
	im, err := parse(img)
	if err != nil {
		return nil, err
	}
	ptr := le32(img, im.coff+8)
	if ptr == 0 {
		return bytes.Clone(img), nil
	}
	if rva, size := im.dir(dirSecurity); rva != 0 || size != 0 {
		return nil, fmt.Errorf("pe: image is signed: stripping its symbols would break the signature; use the unsigned image")
	}
	end := uint64(im.sizeOfHdrs)
	for _, h := range im.sections {
		if h.sizeOfRaw > 0 {
			end = max(end, uint64(h.pointerToRaw)+uint64(h.sizeOfRaw))
		}
	}
	if uint64(ptr) < end {
		return nil, fmt.Errorf("pe: COFF symbol table at 0x%x lies before the end of the section data (0x%x): not stripped", ptr, end)
	}
	if rva, size := im.dir(dirDebug); rva != 0 && size != 0 {
		if off, ok := im.fileOffset(rva, size); ok {
			for e := 0; e+debugEntrySize <= int(size); e += debugEntrySize {
				if raw := le32(img, off+e+24); uint64(raw) >= end {
					return nil, fmt.Errorf("pe: debug data at 0x%x lies after the section data: not stripped", raw)
				}
			}
		}
	}
	cut := alignUp(end, uint64(im.fileAlign))
	if cut > uint64(ptr) {
		cut = uint64(ptr)
	}
	out := bytes.Clone(img[:cut])
	put32(out, im.coff+8, 0)  // PointerToSymbolTable
	put32(out, im.coff+12, 0) // NumberOfSymbols
	put32(out, im.opt+64, Checksum(out))
	return out, nil
}
