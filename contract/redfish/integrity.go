package redfish

import (
	"encoding/asn1"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"

	"github.com/fwbuild/fwbuild/contract"
)

// The TPM quote through Redfish, as DMTF defines it (ComponentIntegrity
// v1_2_0 and later, schema bundle 2023.1): a ComponentIntegrity resource of
// type TPM whose TPM.MeasurementSet lists the PCR values, and its action
// #ComponentIntegrity.TPMGetSignedMeasurements, which runs TPM2_Quote over
// the caller's nonce and answers SignedMeasurements, the Base64 of the
// quote's 'quoted' (TPM2B_ATTEST) and 'signature' (TPMT_SIGNATURE)
// concatenated. The action's Certificate parameter names the attestation
// key's certificate, a Certificate in the host's Certificates collection
// ("certificates for device identity and attestation"). This file is the one
// place where contract.Quote and those resources are converted.

// Paths of the integrity resources.
const (
	ComponentIntegrity = Root + "/ComponentIntegrity"
	// TPMIntegrityID is the one member: the host's TPM.
	TPMIntegrityID  = "TPM"
	TPMIntegrity    = ComponentIntegrity + "/" + TPMIntegrityID
	TPMSignedTarget = TPMIntegrity + "/Actions/ComponentIntegrity.TPMGetSignedMeasurements"
	TPMSignedInfo   = TPMIntegrity + "/TPMGetSignedMeasurementsActionInfo"
	// HostCertificates is the host's Certificates collection; AKCertificate
	// the attestation key's certificate in it.
	HostCertificates = Systems + "/" + HostID + "/Certificates"
	AKCertificateID  = "TPMAttestationKey"
	AKCertificate    = HostCertificates + "/" + AKCertificateID
	// TPMTrustedModule is the ComponentIntegrity's TargetComponentURI: the
	// host's TrustedModules entry (RFC 6901 fragment), as the schema asks.
	TPMTrustedModule = Systems + "/" + HostID + "#/TrustedModules/0"
)

// AIKCertificateEKU is tcg-kp-AIKCertificate (TCG EK Credential Profile),
// the extended key usage ctld puts in the attestation key's certificate and
// a verifier requires of it.
var AIKCertificateEKU = asn1.ObjectIdentifier{2, 23, 133, 8, 3}

// NonceSizeBytesMaximum is TPM.NonceSizeBytesMaximum: the largest
// qualifyingData TPM2_Quote takes (TPM2B_DATA holds a TPMT_HA, 64 bytes
// with SHA-512).
const NonceSizeBytesMaximum = 64

// AlgSHA256Name is the TCG algorithm registry's name of SHA-256, which
// MeasurementHashAlgorithm takes.
const AlgSHA256Name = "TPM_ALG_SHA256"

// TCG algorithm ids (TCG Algorithm Registry) the encodings below use.
const (
	tpmAlgSHA256 = 0x000b
	tpmAlgRSASSA = 0x0014
	tpmAlgNull   = 0x0010
)

// ComponentIntegrityResource is ComponentIntegrity.v1_2_0.
type ComponentIntegrityResource struct {
	ODataID                       string            `json:"@odata.id"`
	ODataType                     string            `json:"@odata.type"`
	ID                            string            `json:"Id"`
	Name                          string            `json:"Name"`
	Description                   string            `json:"Description,omitempty"`
	ComponentIntegrityEnabled     bool              `json:"ComponentIntegrityEnabled"`
	ComponentIntegrityType        string            `json:"ComponentIntegrityType"` // TPM
	ComponentIntegrityTypeVersion string            `json:"ComponentIntegrityTypeVersion"`
	TargetComponentURI            string            `json:"TargetComponentURI"`
	TPM                           *TPMInfo          `json:"TPM,omitempty"`
	Status                        Status            `json:"Status"`
	Actions                       IntegrityActions  `json:"Actions"`
	Links                         IntegrityLinks    `json:"Links"`
	Oem                           map[string]string `json:"Oem,omitempty"`
}

// TPMInfo is ComponentIntegrity's TPM property.
type TPMInfo struct {
	NonceSizeBytesMaximum int                `json:"NonceSizeBytesMaximum"`
	MeasurementSet        *TPMMeasurementSet `json:"MeasurementSet,omitempty"`
}

// TPMMeasurementSet lists PCR values.
type TPMMeasurementSet struct {
	Measurements []TPMMeasurement `json:"Measurements"`
}

// TPMMeasurement is one PCR: Measurement is its value in Base64.
type TPMMeasurement struct {
	PCR                      int    `json:"PCR"`
	Measurement              string `json:"Measurement"`
	MeasurementHashAlgorithm string `json:"MeasurementHashAlgorithm"`
}

// IntegrityActions holds the quote action.
type IntegrityActions struct {
	TPMGetSignedMeasurements *ActionTarget `json:"#ComponentIntegrity.TPMGetSignedMeasurements,omitempty"`
}

// ActionTarget is an action's target and its ActionInfo.
type ActionTarget struct {
	Target     string `json:"target"`
	ActionInfo string `json:"@Redfish.ActionInfo,omitempty"`
}

// IntegrityLinks is ComponentIntegrity's Links.
type IntegrityLinks struct {
	ComponentsProtected []ODataID `json:"ComponentsProtected"`
}

// TPMGetSignedMeasurements is the action's body. Certificate, PCRSelection
// and Scheme are required by the schema; Nonce is hex, and the service
// makes one when it is absent.
type TPMGetSignedMeasurements struct {
	Certificate  *ODataID `json:"Certificate"`
	Nonce        string   `json:"Nonce,omitempty"`
	PCRSelection string   `json:"PCRSelection"` // Base64 TPML_PCR_SELECTION
	Scheme       string   `json:"Scheme"`       // Base64 TPMT_SIG_SCHEME
}

// TPMGetSignedMeasurementsResponse is the action's answer.
type TPMGetSignedMeasurementsResponse struct {
	SignedMeasurements string `json:"SignedMeasurements"`
}

// CertificateResource is Certificate.v1_3_0.
type CertificateResource struct {
	ODataID                  string     `json:"@odata.id"`
	ODataType                string     `json:"@odata.type"`
	ID                       string     `json:"Id"`
	Name                     string     `json:"Name"`
	Description              string     `json:"Description,omitempty"`
	CertificateString        string     `json:"CertificateString"` // PEM
	CertificateType          string     `json:"CertificateType"`   // PEM
	Subject                  Identifier `json:"Subject"`
	Issuer                   Identifier `json:"Issuer"`
	ValidNotBefore           string     `json:"ValidNotBefore"`
	ValidNotAfter            string     `json:"ValidNotAfter"`
	SerialNumber             string     `json:"SerialNumber"`
	KeyUsage                 []string   `json:"KeyUsage"`
	Fingerprint              string     `json:"Fingerprint"`
	FingerprintHashAlgorithm string     `json:"FingerprintHashAlgorithm"`
	SignatureAlgorithm       string     `json:"SignatureAlgorithm"`
}

// Identifier is Certificate's Subject and Issuer.
type Identifier struct {
	CommonName   string `json:"CommonName,omitempty"`
	Organization string `json:"Organization,omitempty"`
}

// TrustedModule is one entry of ComputerSystem.TrustedModules.
type TrustedModule struct {
	InterfaceType   string `json:"InterfaceType"` // TPM2_0
	FirmwareVersion string `json:"FirmwareVersion,omitempty"`
	Status          Status `json:"Status"`
}

// QuotePCRSelection is the Base64 TPML_PCR_SELECTION of contract.QuotePCRs
// in the SHA-256 bank, the PCRSelection `fwbuild attest` sends.
func QuotePCRSelection() string { return EncodePCRSelection(contract.QuotePCRs) }

// EncodePCRSelection is the Base64 TPML_PCR_SELECTION of one selection of
// SHA-256 PCRs (0 to 23).
func EncodePCRSelection(pcrs []int) string {
	b := []byte{0, 0, 0, 1, tpmAlgSHA256 >> 8, tpmAlgSHA256 & 0xff, 3, 0, 0, 0}
	for _, p := range pcrs {
		if p >= 0 && p < 24 {
			b[7+p/8] |= 1 << (p % 8)
		}
	}
	return base64.StdEncoding.EncodeToString(b)
}

// ParsePCRSelection reads PCRSelection: one selection of the SHA-256 bank
// (the bank ctld quotes and MeasurementSet lists), PCRs 0 to 23.
func ParsePCRSelection(s string) ([]int, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("not Base64 with padding: %w", err)
	}
	if len(b) < 7 || binary.BigEndian.Uint32(b) != 1 {
		return nil, errors.New("want a TPML_PCR_SELECTION of one TPMS_PCR_SELECTION")
	}
	if alg := binary.BigEndian.Uint16(b[4:]); alg != tpmAlgSHA256 {
		return nil, fmt.Errorf("hash %#04x: only the SHA-256 bank (%#04x) is quoted", alg, tpmAlgSHA256)
	}
	n := int(b[6])
	if n < 3 || len(b) != 7+n {
		return nil, fmt.Errorf("sizeofSelect %d with %d bytes of pcrSelect: want 3 or more, exactly", n, len(b)-7)
	}
	var pcrs []int
	for i, v := range b[7:] {
		for bit := 0; bit < 8; bit++ {
			if v&(1<<bit) == 0 {
				continue
			}
			if p := i*8 + bit; p < 24 {
				pcrs = append(pcrs, p)
			} else {
				return nil, fmt.Errorf("PCR %d: a TPM 2.0 PC client has PCRs 0 to 23", p)
			}
		}
	}
	if len(pcrs) == 0 {
		return nil, errors.New("no PCR selected")
	}
	return pcrs, nil
}

// QuoteScheme is the Base64 TPMT_SIG_SCHEME of ctld's attestation key
// (RSASSA with SHA-256), the Scheme `fwbuild attest` sends.
func QuoteScheme() string {
	return base64.StdEncoding.EncodeToString([]byte{tpmAlgRSASSA >> 8, tpmAlgRSASSA & 0xff, tpmAlgSHA256 >> 8, tpmAlgSHA256 & 0xff})
}

// CheckScheme accepts the attestation key's own scheme, RSASSA with
// SHA-256, or TPM_ALG_NULL (use the key's scheme): a restricted key signs
// only with the scheme it was made with.
func CheckScheme(s string) error {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return fmt.Errorf("not Base64 with padding: %w", err)
	}
	switch {
	case len(b) == 2 && binary.BigEndian.Uint16(b) == tpmAlgNull:
		return nil
	case len(b) == 4 && binary.BigEndian.Uint16(b) == tpmAlgRSASSA && binary.BigEndian.Uint16(b[2:]) == tpmAlgSHA256:
		return nil
	}
	return fmt.Errorf("%x: the attestation key signs with RSASSA/SHA-256 only (TPMT_SIG_SCHEME %s, or TPM_ALG_NULL)", b, QuoteScheme())
}

// ParseNonce reads Nonce: hex, 1 to NonceSizeBytesMaximum bytes.
func ParseNonce(s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("not hex: %w", err)
	}
	if len(b) == 0 || len(b) > NonceSizeBytesMaximum {
		return nil, fmt.Errorf("%d bytes: give 1 to %d", len(b), NonceSizeBytesMaximum)
	}
	return b, nil
}

// SignedResponse is the action's answer for a quote.
func SignedResponse(q contract.Quote) TPMGetSignedMeasurementsResponse {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(q.Quoted)))
	b = append(append(b, q.Quoted...), q.Signature...)
	return TPMGetSignedMeasurementsResponse{SignedMeasurements: base64.StdEncoding.EncodeToString(b)}
}

// MeasurementSet lists a quote's PCR values (or any index -> hex map of
// SHA-256 PCRs), by index.
func MeasurementSet(pcrs map[string]string) (*TPMMeasurementSet, error) {
	set := &TPMMeasurementSet{Measurements: []TPMMeasurement{}}
	for k, v := range pcrs {
		i, err := strconv.Atoi(k)
		if err != nil {
			return nil, fmt.Errorf("redfish: PCR %q: not an index", k)
		}
		d, err := hex.DecodeString(v)
		if err != nil {
			return nil, fmt.Errorf("redfish: PCR %d: %q is not hex", i, v)
		}
		set.Measurements = append(set.Measurements, TPMMeasurement{PCR: i, Measurement: base64.StdEncoding.EncodeToString(d), MeasurementHashAlgorithm: AlgSHA256Name})
	}
	sort.Slice(set.Measurements, func(a, b int) bool { return set.Measurements[a].PCR < set.Measurements[b].PCR })
	return set, nil
}

// QuoteFrom rebuilds the contract.Quote of a TPMGetSignedMeasurements
// answer: the signed structure and signature from SignedMeasurements, the
// SHA-256 values of the PCRs the caller selected from the resource's
// MeasurementSet, and the nonce the caller sent. AKPublic stays empty: over
// Redfish the key comes in its certificate (AKCertificate).
func QuoteFrom(resp TPMGetSignedMeasurementsResponse, set *TPMMeasurementSet, nonce []byte, pcrs []int) (contract.Quote, error) {
	q := contract.Quote{Nonce: hex.EncodeToString(nonce), PCRs: map[string]string{}}
	b, err := base64.StdEncoding.DecodeString(resp.SignedMeasurements)
	if err != nil {
		return q, fmt.Errorf("redfish: SignedMeasurements: not Base64: %w", err)
	}
	if len(b) < 2 {
		return q, errors.New("redfish: SignedMeasurements: shorter than a TPM2B_ATTEST")
	}
	n := int(binary.BigEndian.Uint16(b))
	if len(b) < 2+n+2 {
		return q, fmt.Errorf("redfish: SignedMeasurements: %d bytes, too short for its TPM2B_ATTEST of %d and a TPMT_SIGNATURE", len(b), n)
	}
	q.Quoted, q.Signature = b[2:2+n], b[2+n:]
	if set == nil {
		return q, errors.New("redfish: no TPM.MeasurementSet: the PCR values are missing")
	}
	all := map[int]string{}
	for _, m := range set.Measurements {
		if m.MeasurementHashAlgorithm != AlgSHA256Name {
			continue
		}
		d, err := base64.StdEncoding.DecodeString(m.Measurement)
		if err != nil {
			return q, fmt.Errorf("redfish: MeasurementSet PCR %d: not Base64: %w", m.PCR, err)
		}
		all[m.PCR] = hex.EncodeToString(d)
	}
	// The quote's PCRs are the ones its digest covers, not the whole bank.
	for _, p := range pcrs {
		v, ok := all[p]
		if !ok {
			return q, fmt.Errorf("redfish: MeasurementSet has no %s value of PCR %d", AlgSHA256Name, p)
		}
		q.PCRs[strconv.Itoa(p)] = v
	}
	return q, nil
}
