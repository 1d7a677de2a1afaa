package secboot

import (
	"bytes"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unicode/utf16"

	"github.com/foxboron/go-uefi/efi/signature"
	"github.com/foxboron/go-uefi/efi/util"
	"github.com/google/uuid"
)

// OVMF keeps its UEFI variables in a firmware volume of their own
// (OvmfPkg/VarStore.fdf.inc): an FV header whose file system GUID is
// EFI_SYSTEM_NV_DATA_FV_GUID, then a VARIABLE_STORE_HEADER for
// authenticated variables (MdeModulePkg/Include/Guid/VariableFormat.h),
// then the variables, each an AUTHENTICATED_VARIABLE_HEADER, its UTF-16 name
// and its data, 4-byte aligned; after the store come the fault-tolerant
// write working block and spare area, which Enroll leaves as they are.
// Enroll starts from the board's own (pinned) empty store, so the layout is
// always the firmware's.

var (
	nvDataFVGUID     = guid("fff12b8d-7696-4c8b-a985-2747075b4f50")
	authVarStoreGUID = guid("aaf32c78-947b-439a-a180-2e144ec37792")

	globalVariableGUID   = guid("8be4df61-93ca-11d2-aa0d-00e098032b8c") // PK, KEK
	imageSecurityDBGUID  = guid("d719b2cb-3d3a-4596-a3bc-dad00e67656f") // db
	secureBootEnableGUID = guid("f0a30bc7-af08-4556-99c4-001009c93a44")
	customModeGUID       = guid("c076ec0c-7028-4399-a072-71ee5c448b9f")
)

// Variable attributes (UEFI 2.10, 8.2).
const (
	attrNV                 = 0x01
	attrBS                 = 0x02
	attrRT                 = 0x04
	attrTimeBasedAuthWrite = 0x20

	varStartID   = 0x55aa
	varAdded     = 0x3f
	storeFormat  = 0x5a // VARIABLE_STORE_FORMATTED
	storeHealthy = 0xfe // VARIABLE_STORE_HEALTHY
	storeHdrSize = 28
	varHdrSize   = 60 // AUTHENTICATED_VARIABLE_HEADER
)

// guid is a GUID in the byte order UEFI stores it (the first three fields little-endian).
func guid(s string) [16]byte {
	u := uuid.MustParse(s)
	var g [16]byte
	copy(g[:], u[:])
	g[0], g[1], g[2], g[3] = u[3], u[2], u[1], u[0]
	g[4], g[5] = u[5], u[4]
	g[6], g[7] = u[7], u[6]
	return g
}

// Var is one UEFI variable.
type Var struct {
	Name   string
	GUID   [16]byte
	Attrs  uint32
	Time   time.Time // EFI_TIME of a time-based authenticated variable
	Data   []byte
	offset int
}

// SignatureList is an EFI_SIGNATURE_LIST holding one X.509 certificate,
// owned by owner (the SignatureOwner GUID).
func SignatureList(cert *x509.Certificate, owner uuid.UUID) ([]byte, error) {
	sl := signature.NewSignatureList(signature.CERT_X509_GUID)
	if err := sl.AppendBytes(*util.StringToGUID(owner.String()), cert.Raw); err != nil {
		return nil, fmt.Errorf("signature list: %w", err)
	}
	return sl.Bytes(), nil
}

// EnrollVars are the variables that turn Secure Boot on with the owner's
// keys: PK, KEK and db, each an EFI_SIGNATURE_LIST of the owner's X.509
// certificate, SecureBootEnable = 1 and CustomMode = 0 (standard mode). With
// a PK enrolled the firmware starts in user mode, and from then on PK, KEK
// and db can only be changed by updates signed with the owner's keys.
func EnrollVars(o *Owner, owner uuid.UUID, when time.Time) ([]Var, error) {
	var vars []Var
	auth := uint32(attrNV | attrBS | attrRT | attrTimeBasedAuthWrite)
	for _, k := range []struct {
		name string
		g    [16]byte
		cert *x509.Certificate
	}{{"PK", globalVariableGUID, o.PK}, {"KEK", globalVariableGUID, o.KEK}, {"db", imageSecurityDBGUID, o.DB}} {
		sl, err := SignatureList(k.cert, owner)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k.name, err)
		}
		vars = append(vars, Var{Name: k.name, GUID: k.g, Attrs: auth, Time: when, Data: sl})
	}
	vars = append(vars,
		Var{Name: "SecureBootEnable", GUID: secureBootEnableGUID, Attrs: attrNV | attrBS, Data: []byte{1}},
		Var{Name: "CustomMode", GUID: customModeGUID, Attrs: attrNV | attrBS, Data: []byte{0}},
	)
	return vars, nil
}

// store locates the variable store inside an OVMF variable volume.
func store(fd []byte) (start, end int, err error) {
	if len(fd) < 0x48+storeHdrSize {
		return 0, 0, fmt.Errorf("variable store: %d bytes is too short for a firmware volume", len(fd))
	}
	if !bytes.Equal(fd[0x10:0x20], nvDataFVGUID[:]) || string(fd[0x28:0x2c]) != "_FVH" {
		return 0, 0, errors.New("variable store: not an NV-data firmware volume (want OVMF's VARS file, e.g. OVMF_VARS_4M.fd)")
	}
	if fvLen := binary.LittleEndian.Uint64(fd[0x20:]); fvLen != uint64(len(fd)) {
		return 0, 0, fmt.Errorf("variable store: the volume says %#x bytes, the file has %#x", fvLen, len(fd))
	}
	start = int(binary.LittleEndian.Uint16(fd[0x30:]))
	if start+storeHdrSize > len(fd) || !bytes.Equal(fd[start:start+16], authVarStoreGUID[:]) {
		return 0, 0, errors.New("variable store: no authenticated variable store header after the volume header (a store without authenticated variables cannot hold Secure Boot keys)")
	}
	size := int(binary.LittleEndian.Uint32(fd[start+16:]))
	if fd[start+20] != storeFormat || fd[start+21] != storeHealthy || size < storeHdrSize || start+size > len(fd) {
		return 0, 0, fmt.Errorf("variable store: header at %#x is not a formatted, healthy store of %#x bytes", start, size)
	}
	return start + storeHdrSize, start + size, nil
}

// Enroll writes vars into an empty OVMF variable volume (the board's pinned
// template) and returns the new volume; everything outside the variables
// area stays byte-identical. A template that holds variables already is
// refused: whatever it holds would be enrolled with the owner's keys.
func Enroll(template []byte, vars []Var) ([]byte, error) {
	start, end, err := store(template)
	if err != nil {
		return nil, err
	}
	for i := start; i < end; i++ {
		if template[i] != 0xff {
			return nil, fmt.Errorf("variable store: the template holds data at %#x: start from an empty store (Debian's OVMF_VARS_4M.fd)", i)
		}
	}
	out := bytes.Clone(template)
	off := start
	for _, v := range vars {
		rec := encodeVar(v)
		if off+len(rec) > end {
			return nil, fmt.Errorf("variable store: %s does not fit (%d bytes at %#x, the store ends at %#x)", v.Name, len(rec), off, end)
		}
		copy(out[off:], rec)
		off += (len(rec) + 3) &^ 3
	}
	return out, nil
}

func encodeVar(v Var) []byte {
	name := utf16.Encode([]rune(v.Name + "\x00"))
	var b bytes.Buffer
	le := binary.LittleEndian
	binary.Write(&b, le, uint16(varStartID))
	b.WriteByte(varAdded)
	b.WriteByte(0)
	binary.Write(&b, le, v.Attrs)
	binary.Write(&b, le, uint64(0)) // MonotonicCount
	b.Write(efiTime(v.Time))
	binary.Write(&b, le, uint32(0)) // PubKeyIndex
	binary.Write(&b, le, uint32(2*len(name)))
	binary.Write(&b, le, uint32(len(v.Data)))
	b.Write(v.GUID[:])
	binary.Write(&b, le, name)
	b.Write(v.Data)
	return b.Bytes()
}

// efiTime is an EFI_TIME (16 bytes); the zero time is all zeros.
func efiTime(t time.Time) []byte {
	b := make([]byte, 16)
	if t.IsZero() {
		return b
	}
	t = t.UTC()
	binary.LittleEndian.PutUint16(b, uint16(t.Year()))
	b[2], b[3], b[4], b[5], b[6] = byte(t.Month()), byte(t.Day()), byte(t.Hour()), byte(t.Minute()), byte(t.Second())
	return b
}

// ReadVars lists the variables (state VAR_ADDED) of an OVMF variable volume.
func ReadVars(fd []byte) ([]Var, error) {
	start, end, err := store(fd)
	if err != nil {
		return nil, err
	}
	var vars []Var
	le := binary.LittleEndian
	for off := start; off+varHdrSize <= end; {
		h := fd[off:]
		if le.Uint16(h) != varStartID {
			break
		}
		ns, ds := int(le.Uint32(h[36:])), int(le.Uint32(h[40:]))
		if ns%2 != 0 || off+varHdrSize+ns+ds > end || ns < 2 {
			return vars, fmt.Errorf("variable store: variable at %#x runs past the store", off)
		}
		n := make([]uint16, ns/2-1)
		binary.Read(bytes.NewReader(h[varHdrSize:varHdrSize+ns-2]), le, n)
		v := Var{Name: string(utf16.Decode(n)), Attrs: le.Uint32(h[4:]), Data: bytes.Clone(h[varHdrSize+ns : varHdrSize+ns+ds]), offset: off}
		copy(v.GUID[:], h[44:60])
		if y := le.Uint16(h[16:]); y != 0 {
			v.Time = time.Date(int(y), time.Month(h[18]), int(h[19]), int(h[20]), int(h[21]), int(h[22]), 0, time.UTC)
		}
		if h[2] == varAdded {
			vars = append(vars, v)
		}
		off = (off + varHdrSize + ns + ds + 3) &^ 3
	}
	return vars, nil
}
