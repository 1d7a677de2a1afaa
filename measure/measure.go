// Package measure predicts the TPM 2.0 PCR values UEFI firmware (edk2's
// Tcg2Dxe, DxeTpm2MeasureBootLib and DxeImageVerificationLib, as in Debian's
// OVMF, edk2-stable202211) produces when its boot manager starts one of
// fwbuild's payloads, from the artefacts alone: the payload's Authenticode
// digest (PCR 4) and the Secure Boot variables the build enrolled (PCR 7).
//
// What edk2 extends, in order (TCG PC Client PFP spec, as edk2 implements it):
//
//	PCR 7, when the variable write protocol appears: EV_EFI_VARIABLE_DRIVER_CONFIG
//	  for SecureBoot, PK, KEK, db, dbx (each, present or not: an absent one with
//	  empty data), then dbt if present, then EV_SEPARATOR.
//	PCR 4, at the first ReadyToBoot: EV_EFI_ACTION "Calling EFI Application
//	  from Boot Option", then EV_SEPARATOR in PCRs 0-6.
//	PCR 7, when Secure Boot verifies the application: EV_EFI_VARIABLE_AUTHORITY,
//	  the db entry (EFI_SIGNATURE_DATA) that verified it, once per entry.
//	PCR 4, as LoadImage starts it: EV_EFI_BOOT_SERVICES_APPLICATION, the
//	  application's Authenticode digest.
//
// Nothing else of fwbuild's chain reaches PCR 4 or 7: the launcher is a driver
// (PCR 2, from the firmware volume), GRUB starts Xen with multiboot2 (no
// LoadImage), and the unified xen.efi loads nothing through the firmware.
package measure

import (
	"bytes"
	"crypto"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"sort"
	"unicode/utf16"

	"github.com/foxboron/go-uefi/authenticode"
)

// EventType is a TCG event type (TCG PC Client PFP spec, 10.4.1).
type EventType uint32

const (
	EvSeparator                  EventType = 0x00000004
	EvEFIVariableDriverConfig    EventType = 0x80000001
	EvEFIBootServicesApplication EventType = 0x80000003
	EvEFIAction                  EventType = 0x80000007
	EvEFIVariableAuthority       EventType = 0x800000e0
	CallingEFIApplication                  = "Calling EFI Application from Boot Option"
	ReturningFromEFIApplication            = "Returning from EFI Application from Boot Option"
	sha1Size, sha256Size                   = 20, 32
)

// Digests is one measurement in the two banks fwbuild predicts.
type Digests struct {
	SHA256 []byte
	SHA1   []byte
}

// Event is one measurement: what is extended into which PCR, and the event
// data the firmware logs with it.
type Event struct {
	PCR    int
	Type   EventType
	Digest Digests
	Data   []byte
}

// hashed is an event whose digest is the hash of its data.
func hashed(pcr int, t EventType, data []byte) Event {
	s2, s1 := sha256.Sum256(data), sha1.Sum(data)
	return Event{PCR: pcr, Type: t, Digest: Digests{SHA256: s2[:], SHA1: s1[:]}, Data: data}
}

// Action is an EV_EFI_ACTION: the digest is the string's, without a NUL.
func Action(pcr int, s string) Event { return hashed(pcr, EvEFIAction, []byte(s)) }

// Separator is EV_SEPARATOR: four zero bytes.
func Separator(pcr int) Event { return hashed(pcr, EvSeparator, make([]byte, 4)) }

// Application is EV_EFI_BOOT_SERVICES_APPLICATION for an image with these
// Authenticode digests (its event data, the image's location and device
// path, is not predicted: it does not enter the PCR).
func Application(authenticode Digests) Event {
	return Event{PCR: 4, Type: EvEFIBootServicesApplication, Digest: authenticode}
}

// GUIDs of the Secure Boot variables, in UEFI's byte order.
var (
	GlobalVariable      = mustGUID("8be4df61-93ca-11d2-aa0d-00e098032b8c") // SecureBoot, PK, KEK
	ImageSecurityDB     = mustGUID("d719b2cb-3d3a-4596-a3bc-dad00e67656f") // db, dbx
	certX509SignatureID = mustGUID("a5c059a1-94e4-4aa7-87b5-ab155c2bf072") // EFI_CERT_X509_GUID
)

// Variable is a UEFI variable as the firmware reads it.
type Variable struct {
	Name string
	GUID [16]byte
	Data []byte
}

// variableData is UEFI_VARIABLE_DATA: the GUID, the name's length in
// characters, the data's length, the UTF-16 name (no NUL), the data.
func variableData(v Variable) []byte {
	name := utf16.Encode([]rune(v.Name))
	var b bytes.Buffer
	b.Write(v.GUID[:])
	_ = binary.Write(&b, binary.LittleEndian, uint64(len(name)))
	_ = binary.Write(&b, binary.LittleEndian, uint64(len(v.Data)))
	_ = binary.Write(&b, binary.LittleEndian, name)
	b.Write(v.Data)
	return b.Bytes()
}

// VariableConfig is EV_EFI_VARIABLE_DRIVER_CONFIG in PCR 7 (the digest is the
// UEFI_VARIABLE_DATA's; an absent variable is measured with empty data).
func VariableConfig(v Variable) Event {
	return hashed(7, EvEFIVariableDriverConfig, variableData(v))
}

// VariableAuthority is EV_EFI_VARIABLE_AUTHORITY in PCR 7: v's data is the
// EFI_SIGNATURE_DATA (owner GUID, certificate) that verified an image.
func VariableAuthority(v Variable) Event {
	return hashed(7, EvEFIVariableAuthority, variableData(v))
}

// SecureBootPolicy is what Tcg2Dxe measures into PCR 7 before the boot
// manager runs: SecureBoot, PK, KEK, db, dbx from vars (absent ones empty),
// dbt only if present, then the separator. secureBoot is the SecureBoot
// variable's value (the firmware computes it: 1 with a PK enrolled and
// SecureBootEnable set); nil means the firmware has no such variable.
func SecureBootPolicy(secureBoot []byte, vars []Variable) []Event {
	find := func(name string, g [16]byte) Variable {
		for _, v := range vars {
			if v.Name == name && v.GUID == g {
				return v
			}
		}
		return Variable{Name: name, GUID: g}
	}
	ev := []Event{VariableConfig(Variable{Name: "SecureBoot", GUID: GlobalVariable, Data: secureBoot})}
	for _, v := range []Variable{find("PK", GlobalVariable), find("KEK", GlobalVariable), find("db", ImageSecurityDB), find("dbx", ImageSecurityDB)} {
		ev = append(ev, VariableConfig(v))
	}
	if dbt := find("dbt", ImageSecurityDB); dbt.Data != nil {
		ev = append(ev, VariableConfig(dbt))
	}
	return append(ev, Separator(7))
}

// X509Entries are the EFI_SIGNATURE_DATA entries (owner GUID + DER
// certificate) of db's X.509 signature lists, in order.
func X509Entries(db []byte) ([][]byte, error) {
	var out [][]byte
	for off := 0; off < len(db); {
		if len(db)-off < 28 {
			return nil, fmt.Errorf("signature list at %d: %d bytes left, need a 28-byte header", off, len(db)-off)
		}
		h := db[off:]
		var typ [16]byte
		copy(typ[:], h)
		listSize := int(binary.LittleEndian.Uint32(h[16:]))
		hdrSize := int(binary.LittleEndian.Uint32(h[20:]))
		sigSize := int(binary.LittleEndian.Uint32(h[24:]))
		if listSize < 28+hdrSize || listSize > len(h) || sigSize < 16 || (listSize-28-hdrSize)%sigSize != 0 {
			return nil, fmt.Errorf("signature list at %d: sizes %d/%d/%d do not fit %d bytes", off, listSize, hdrSize, sigSize, len(h))
		}
		if typ == certX509SignatureID {
			for s := 28 + hdrSize; s < listSize; s += sigSize {
				out = append(out, h[s:s+sigSize])
			}
		}
		off += listSize
	}
	return out, nil
}

// Path is one boot path's prediction.
type Path struct {
	Events []Event
	SHA256 map[int][]byte
	SHA1   map[int][]byte
}

// BootOption predicts one boot of an application by the boot manager: the
// PCR 4 events, and with policy (SecureBootPolicy) the PCR 7 events too,
// authority being the db entry that verified the application (nil when
// Secure Boot is off). failed is the number of boot options the boot manager
// tried and could not load before (each one signals ReadyToBoot again, which
// edk2 logs as "Returning from ..." then "Calling ..."): it depends on the
// machine's boot order, not on the artefacts (QEMU's q35 has a DVD-ROM, whose
// option OVMF tries before a USB key; the launcher's BootNext goes first).
func BootOption(app Digests, policy []Event, authority []byte, failed int) Path {
	var ev []Event
	ev = append(ev, policy...)
	ev = append(ev, Action(4, CallingEFIApplication))
	for pcr := 0; pcr < 7; pcr++ {
		ev = append(ev, Separator(pcr))
	}
	for i := 0; i < failed; i++ {
		ev = append(ev, Action(4, ReturningFromEFIApplication), Action(4, CallingEFIApplication))
	}
	if authority != nil {
		ev = append(ev, VariableAuthority(Variable{Name: "db", GUID: ImageSecurityDB, Data: authority}))
	}
	ev = append(ev, Application(app))
	p := Path{Events: ev}
	p.SHA256, p.SHA1 = Replay(ev)
	return p
}

// Replay extends each event into PCRs that start at zero, in both banks.
// Only PCRs that an event touches are in the result.
func Replay(events []Event) (sha256s, sha1s map[int][]byte) {
	sha256s, sha1s = map[int][]byte{}, map[int][]byte{}
	for _, e := range events {
		if _, ok := sha256s[e.PCR]; !ok {
			sha256s[e.PCR], sha1s[e.PCR] = make([]byte, sha256Size), make([]byte, sha1Size)
		}
		if e.Digest.SHA256 != nil {
			s := sha256.Sum256(append(append([]byte{}, sha256s[e.PCR]...), e.Digest.SHA256...))
			sha256s[e.PCR] = s[:]
		}
		if e.Digest.SHA1 != nil {
			s := sha1.Sum(append(append([]byte{}, sha1s[e.PCR]...), e.Digest.SHA1...))
			sha1s[e.PCR] = s[:]
		}
	}
	return sha256s, sha1s
}

// Hex is a bank as the manifest writes it: PCR index (decimal) to hex.
func Hex(bank map[int][]byte, pcrs ...int) map[string]string {
	out := map[string]string{}
	for _, i := range pcrs {
		if v, ok := bank[i]; ok {
			out[fmt.Sprint(i)] = hex.EncodeToString(v)
		}
	}
	return out
}

// PCRs returns the sorted PCR indexes of a bank.
func PCRs(bank map[int][]byte) []int {
	var out []int
	for i := range bank {
		out = append(out, i)
	}
	sort.Ints(out)
	return out
}

func mustGUID(s string) [16]byte {
	var u [16]byte
	b, err := hex.DecodeString(s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36])
	if err != nil || len(b) != 16 {
		panic("measure: bad GUID " + s)
	}
	copy(u[:], b)
	// UEFI stores the first three fields little-endian.
	u[0], u[1], u[2], u[3] = b[3], b[2], b[1], b[0]
	u[4], u[5] = b[5], b[4]
	u[6], u[7] = b[7], b[6]
	return u
}

// PEDigests is a PE/COFF image's Authenticode digest in both banks (what
// DxeTpm2MeasureBootLib extends for it; the signature, if any, is outside it).
func PEDigests(img []byte) (Digests, error) {
	pe, err := authenticode.Parse(bytes.NewReader(img))
	if err != nil {
		return Digests{}, fmt.Errorf("authenticode digest: not a PE/COFF image: %w", err)
	}
	return Digests{SHA256: pe.Hash(crypto.SHA256), SHA1: pe.Hash(crypto.SHA1)}, nil
}

// Authority is the db entry (EFI_SIGNATURE_DATA) that lets the firmware
// start the signed image img: the first X.509 entry, in db's order, that is
// the certificate of a signer of one of img's Authenticode signatures (whose
// signed digest is img's) or that issued it. DxeImageVerificationLib checks
// the PKCS#7 signature against each db certificate and measures the one that
// verifies; the cryptography is the firmware's check (and sbverify's in
// fwbuild's tests), the prediction only needs which entry. It is an error if
// no entry fits: the firmware would refuse the image.
func Authority(db, img []byte) ([]byte, error) {
	entries, err := X509Entries(db)
	if err != nil {
		return nil, fmt.Errorf("db: %w", err)
	}
	pe, err := authenticode.Parse(bytes.NewReader(img))
	if err != nil {
		return nil, fmt.Errorf("not a PE/COFF image: %w", err)
	}
	sigs, err := pe.Signatures()
	if err != nil {
		return nil, fmt.Errorf("image signatures: %w", err)
	}
	var signers []*x509.Certificate
	for _, s := range sigs {
		a, err := authenticode.ParseAuthenticode(s.Certificate)
		if err != nil || !bytes.Equal(a.Digest, pe.Hash(crypto.SHA256)) {
			continue // not a signature over this image
		}
		for _, si := range a.Pkcs.SignerInfo {
			if si.IssuerAndSerialnumber == nil {
				continue
			}
			for _, c := range a.Pkcs.Certs {
				if bytes.Equal(c.RawIssuer, si.IssuerAndSerialnumber.RawIssuer) && c.SerialNumber.Cmp(si.IssuerAndSerialnumber.SerialNumber) == 0 {
					signers = append(signers, c)
				}
			}
		}
	}
	if len(signers) == 0 {
		return nil, fmt.Errorf("the image has no Authenticode signature over its own digest: Secure Boot would refuse it")
	}
	for _, e := range entries {
		cert, err := x509.ParseCertificate(e[16:])
		if err != nil {
			continue // the firmware skips what it cannot parse too
		}
		for _, s := range signers {
			if bytes.Equal(s.Raw, cert.Raw) || s.CheckSignatureFrom(cert) == nil {
				return e, nil
			}
		}
	}
	return nil, fmt.Errorf("no X.509 entry of db (%d) is the image's signer or its issuer: Secure Boot would refuse it", len(entries))
}

func (t EventType) String() string {
	switch t {
	case EvSeparator:
		return "EV_SEPARATOR"
	case EvEFIVariableDriverConfig:
		return "EV_EFI_VARIABLE_DRIVER_CONFIG"
	case EvEFIBootServicesApplication:
		return "EV_EFI_BOOT_SERVICES_APPLICATION"
	case EvEFIAction:
		return "EV_EFI_ACTION"
	case EvEFIVariableAuthority:
		return "EV_EFI_VARIABLE_AUTHORITY"
	}
	return fmt.Sprintf("%#x", uint32(t))
}

// VariableName is a variable event's UEFI name, from its UEFI_VARIABLE_DATA.
func (e Event) VariableName() string {
	if len(e.Data) < 32 {
		return ""
	}
	n := int(binary.LittleEndian.Uint64(e.Data[16:]))
	if n > (len(e.Data)-32)/2 {
		return ""
	}
	u := make([]uint16, n)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(e.Data[32+2*i:])
	}
	return string(utf16.Decode(u))
}
