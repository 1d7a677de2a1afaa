package contract

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
)

// Measured boot: what the build predicts (manifest.json's "measurements"),
// what ctld reports at boot, and the quote ctld produces for a verifier.
//
// ctld does not compare the PCRs itself: PCR 4 holds the payload's own
// Authenticode digest, which the payload cannot contain, and values kept
// anywhere the payload does not cover could be rewritten with the payload.
// So ctld reports what the TPM holds, and the verifier (`fwbuild attest`,
// the boot tests) compares against the build's manifest.

// MeasuredPCRs are the PCRs ctld's measured line reports (SHA-256 bank).
var MeasuredPCRs = []int{4, 7}

// Measured is ctld's measured line: the TPM's SHA-256 PCRs 4 and 7 and the
// number of events in the firmware's event log as the kernel exposes it
// (-1: the kernel has none, or none that parses; under Xen the EFI stub does
// not run, so only an ACPI TPM2 log area could give it).
type Measured struct {
	PCR4, PCR7 string // hex
	LogEvents  int
}

func (m Measured) String() string {
	log := "absent"
	if m.LogEvents >= 0 {
		log = fmt.Sprint(m.LogEvents)
	}
	return fmt.Sprintf(CtldPrefix+"measured sha256 pcr4=%s pcr7=%s eventlog=%s", m.PCR4, m.PCR7, log)
}

// MeasuredPattern matches the measured line; its groups are PCR 4, PCR 7
// and the event log's length (or "absent").
const MeasuredPattern = CtldPrefix + `measured sha256 pcr4=([0-9a-f]{64}) pcr7=([0-9a-f]{64}) eventlog=(\d+|absent)`

// NoTPM is ctld's line when the machine has no TPM (not a failure: a board
// without one boots as before).
const NoTPM = CtldPrefix + "measured none: no TPM"

// ParseMeasured reads a measured line.
func ParseMeasured(line string) (Measured, error) {
	var m Measured
	var log string
	if !scanAfter(line, CtldPrefix+"measured sha256 ", "pcr4=%64s pcr7=%64s eventlog=%s", &m.PCR4, &m.PCR7, &log) {
		return Measured{}, fmt.Errorf("not a ctld measured line: %q", line)
	}
	for _, h := range []string{m.PCR4, m.PCR7} {
		if b, err := hex.DecodeString(h); err != nil || len(b) != 32 {
			return Measured{}, fmt.Errorf("ctld measured line: %q is not a SHA-256 PCR", h)
		}
	}
	m.LogEvents = -1
	if log != "absent" {
		if _, err := fmt.Sscanf(log, "%d", &m.LogEvents); err != nil {
			return Measured{}, fmt.Errorf("ctld measured line: eventlog=%q", log)
		}
	}
	return m, nil
}

// QuotePCRs are the PCRs a quote covers (SHA-256 bank): the firmware's.
var QuotePCRs = []int{0, 1, 2, 3, 4, 5, 6, 7}

// Quote is a TPM2 quote over a caller's nonce, as `ctld quote <nonce-hex>`
// prints it (one line: QuotePrefix + JSON); the Redfish API returns it in
// DMTF's form (contract/redfish: SignedResponse, QuoteFrom, where the key
// comes as a certificate instead of AKPublic). The attestation key is a primary key in the endorsement hierarchy from
// a fixed template (ctld's akTemplate), so the same TPM gives the same key
// every boot; AKPublic lets the verifier check the signature (binding it to
// the TPM's endorsement key is the fleet's enrolment step, not the quote's).
type Quote struct {
	Nonce     string            `json:"nonce"`      // hex, as given
	Quoted    []byte            `json:"quoted"`     // TPMS_ATTEST (TPM2B contents)
	Signature []byte            `json:"signature"`  // TPMT_SIGNATURE
	AKPublic  []byte            `json:"ak_public"`  // TPMT_PUBLIC (TPM2B contents)
	PCRs      map[string]string `json:"pcr_sha256"` // index -> hex, the values the digest covers
}

// QuotePrefix starts the quote line.
const QuotePrefix = CtldPrefix + "quote "

func (q Quote) String() string {
	b, _ := json.Marshal(q)
	return QuotePrefix + string(b)
}

// ParseQuote reads a quote line, or a quote's JSON alone.
func ParseQuote(s string) (Quote, error) {
	s = strings.TrimSpace(s)
	if _, rest, ok := strings.Cut(s, QuotePrefix); ok {
		s = rest
	}
	var q Quote
	if err := json.Unmarshal([]byte(s), &q); err != nil {
		return Quote{}, fmt.Errorf("quote: %w", err)
	}
	if len(q.Quoted) == 0 || len(q.Signature) == 0 || len(q.AKPublic) == 0 {
		return Quote{}, fmt.Errorf("quote: quoted, signature and ak_public are required")
	}
	return q, nil
}

// PathMeasurement is the build's prediction for one boot path, in
// manifest.json's "measurements" (keyed "usb", "spi").
type PathMeasurement struct {
	// Payload is the artefact the firmware starts on this path.
	Payload string `json:"payload"`
	// Platform says what the prediction assumes of the firmware.
	Platform string `json:"platform"`
	// FailedBootOptions is how many boot options the firmware tries and
	// fails to load before the payload's (a property of the machine's boot
	// order: QEMU's q35 has a DVD-ROM before the USB key).
	FailedBootOptions int               `json:"failed_boot_options"`
	SHA256            map[string]string `json:"pcr_sha256"`
	SHA1              map[string]string `json:"pcr_sha1"`
	Events            []MeasuredEvent   `json:"events"`
}

// MeasuredEvent is one predicted event.
type MeasuredEvent struct {
	PCR    int    `json:"pcr"`
	Type   string `json:"type"`
	SHA256 string `json:"sha256"`
	SHA1   string `json:"sha1"`
	// Text is an EV_EFI_ACTION's string, or what was measured.
	Text string `json:"text,omitempty"`
}
