package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"unicode/utf16"

	"github.com/google/uuid"
)

// efiVars is the firmware's variable store, for the variables of
// EFI_GLOBAL_VARIABLE (Boot####, BootOrder, BootNext, BootCurrent). Under
// Xen, dom0's efivarfs reaches the runtime services through the hypervisor.
type efiVars interface {
	// get returns a variable's data (without efivarfs's attribute word);
	// an error wrapping fs.ErrNotExist when it is absent.
	get(name string) ([]byte, error)
	// set writes a variable, non-volatile and visible at boot and run time.
	set(name string, data []byte) error
	// names lists the variables of EFI_GLOBAL_VARIABLE.
	names() ([]string, error)
}

// loadOptionActive is LOAD_OPTION_ACTIVE.
const loadOptionActive = 1

// espGeometry is what a boot option's HD() node names: the partition's
// number, first sector and size in 512-byte sectors, and GPT unique GUID.
type espGeometry struct {
	Number      uint32
	Start, Size uint64
	GUID        string
}

// loadOption encodes an EFI_LOAD_OPTION (UEFI 2.10, 3.1.3) that starts
// file (a '\'-separated path) on the ESP through a short-form HD() device
// path, which firmware expands by matching the partition GUID on every disk.
func loadOption(desc string, esp espGeometry, file string) ([]byte, error) {
	id, err := uuid.Parse(esp.GUID)
	if err != nil {
		return nil, fmt.Errorf("ESP partition GUID %q: %w", esp.GUID, err)
	}
	var dp bytes.Buffer
	// HD(): media device path, hard drive, 42 bytes.
	dp.Write([]byte{4, 1})
	binary.Write(&dp, binary.LittleEndian, uint16(42))
	binary.Write(&dp, binary.LittleEndian, esp.Number)
	binary.Write(&dp, binary.LittleEndian, esp.Start)
	binary.Write(&dp, binary.LittleEndian, esp.Size)
	dp.Write(guidBytes(id))
	dp.Write([]byte{2, 2}) // GPT, GUID signature
	// File(): media device path, file path, UCS-2 with its NUL.
	name := ucs2(file)
	dp.Write([]byte{4, 4})
	binary.Write(&dp, binary.LittleEndian, uint16(4+len(name)))
	dp.Write(name)
	dp.Write([]byte{0x7f, 0xff, 4, 0}) // end of the device path

	var out bytes.Buffer
	binary.Write(&out, binary.LittleEndian, uint32(loadOptionActive))
	binary.Write(&out, binary.LittleEndian, uint16(dp.Len()))
	out.Write(ucs2(desc))
	out.Write(dp.Bytes())
	return out.Bytes(), nil
}

// parsedOption is what ctld reads back from a Boot#### variable.
type parsedOption struct {
	Desc string
	File string // the File() node's path, "" when none
	GUID string // the HD() node's partition GUID, "" when none
}

// parseLoadOption reads the parts of a load option ctld matches on.
func parseLoadOption(b []byte) (parsedOption, error) {
	if len(b) < 6 {
		return parsedOption{}, errors.New("load option shorter than its header")
	}
	dpLen := int(binary.LittleEndian.Uint16(b[4:]))
	rest := b[6:]
	var desc []uint16
	for {
		if len(rest) < 2 {
			return parsedOption{}, errors.New("load option description is not terminated")
		}
		c := binary.LittleEndian.Uint16(rest)
		rest = rest[2:]
		if c == 0 {
			break
		}
		desc = append(desc, c)
	}
	if dpLen > len(rest) {
		return parsedOption{}, errors.New("load option device path runs past its end")
	}
	o := parsedOption{Desc: string(utf16.Decode(desc))}
	dp := rest[:dpLen]
	for len(dp) >= 4 {
		typ, sub, n := dp[0], dp[1], int(binary.LittleEndian.Uint16(dp[2:]))
		if n < 4 || n > len(dp) {
			return parsedOption{}, errors.New("load option device path node has a bad length")
		}
		node := dp[4:n]
		switch {
		case typ == 0x7f && sub == 0xff:
			return o, nil
		case typ == 4 && sub == 1 && len(node) == 38:
			o.GUID = guidString(node[20:36])
		case typ == 4 && sub == 4:
			var u []uint16
			for i := 0; i+1 < len(node); i += 2 {
				c := binary.LittleEndian.Uint16(node[i:])
				if c == 0 {
					break
				}
				u = append(u, c)
			}
			o.File = string(utf16.Decode(u))
		}
		dp = dp[n:]
	}
	return o, nil
}

func ucs2(s string) []byte {
	u := utf16.Encode([]rune(s))
	out := make([]byte, 0, 2*len(u)+2)
	for _, c := range u {
		out = binary.LittleEndian.AppendUint16(out, c)
	}
	return append(out, 0, 0)
}

// guidBytes is EFI_GUID's byte order: the first three fields little endian.
func guidBytes(id uuid.UUID) []byte {
	b := id[:]
	return []byte{b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]}
}

func guidString(b []byte) string {
	var id uuid.UUID
	copy(id[:], []byte{b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]})
	return id.String()
}

// bootName is the Boot#### variable of option n.
func bootName(n uint16) string { return fmt.Sprintf("Boot%04X", n) }

func parseBootName(s string) (uint16, bool) {
	h, ok := strings.CutPrefix(s, "Boot")
	if !ok || len(h) != 4 {
		return 0, false
	}
	var n uint16
	if _, err := fmt.Sscanf(h, "%04X", &n); err != nil || fmt.Sprintf("%04X", n) != h {
		return 0, false
	}
	return n, true
}

// u16s reads BootOrder's (or BootNext's, BootCurrent's) little-endian words.
func u16s(b []byte) []uint16 {
	out := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		out = append(out, binary.LittleEndian.Uint16(b[i:]))
	}
	return out
}

func u16bytes(v []uint16) []byte {
	out := make([]byte, 0, 2*len(v))
	for _, x := range v {
		out = binary.LittleEndian.AppendUint16(out, x)
	}
	return out
}
