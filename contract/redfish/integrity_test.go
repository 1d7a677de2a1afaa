package redfish

import (
	"bytes"
	"strings"
	"testing"

	"github.com/fwbuild/fwbuild/contract"
)

// The encodings the schema prescribes: PCRSelection a Base64
// TPML_PCR_SELECTION, Scheme a Base64 TPMT_SIG_SCHEME, SignedMeasurements
// the Base64 of TPM2B_ATTEST || TPMT_SIGNATURE; each read back as written,
// and what ctld cannot quote refused with the reason.
func TestIntegrityEncodings(t *testing.T) {
	// PCRs 0-7 of SHA-256: count 1, TPM_ALG_SHA256, 3 bytes, 0xff 0 0.
	if got := QuotePCRSelection(); got != "AAAAAQALA/8AAA==" {
		t.Errorf("QuotePCRSelection = %s", got)
	}
	pcrs, err := ParsePCRSelection(EncodePCRSelection([]int{0, 4, 7, 23}))
	if err != nil || len(pcrs) != 4 || pcrs[3] != 23 {
		t.Errorf("round trip: %v %v", pcrs, err)
	}
	for sel, why := range map[string]string{
		"AAAAAQAEA/8AAA==": "SHA-256 bank", // SHA-1
		"AAAAAgALA/8AAA==": "one TPMS_PCR_SELECTION",
		"AAAAAQALAwAAAA==": "no PCR",
		"not base64":       "Base64",
	} {
		if _, err := ParsePCRSelection(sel); err == nil || !strings.Contains(err.Error(), why) {
			t.Errorf("PCRSelection %s: %v, want %q", sel, err, why)
		}
	}
	if QuoteScheme() != "ABQACw==" || CheckScheme(QuoteScheme()) != nil || CheckScheme("ABA=") != nil {
		t.Error("RSASSA/SHA-256 or TPM_ALG_NULL refused")
	}
	if err := CheckScheme("ABYACw=="); err == nil { // RSAPSS
		t.Error("RSAPSS accepted")
	}
	if _, err := ParseNonce(strings.Repeat("00", 65)); err == nil {
		t.Error("a 65-byte nonce accepted")
	}

	q := contract.Quote{Quoted: []byte("attest"), Signature: []byte("sig"), PCRs: map[string]string{"4": strings.Repeat("ab", 32), "7": strings.Repeat("cd", 32)}}
	set, err := MeasurementSet(q.PCRs)
	if err != nil || len(set.Measurements) != 2 || set.Measurements[0].PCR != 4 {
		t.Fatalf("MeasurementSet: %+v %v", set, err)
	}
	back, err := QuoteFrom(SignedResponse(q), set, []byte{0xaa}, []int{7})
	if err != nil || !bytes.Equal(back.Quoted, q.Quoted) || !bytes.Equal(back.Signature, q.Signature) || back.PCRs["7"] != q.PCRs["7"] || len(back.PCRs) != 1 || back.Nonce != "aa" {
		t.Fatalf("QuoteFrom(SignedResponse) = %+v, %v", back, err)
	}
	if _, err := QuoteFrom(SignedResponse(q), set, nil, []int{4, 5}); err == nil || !strings.Contains(err.Error(), "PCR 5") {
		t.Errorf("a selected PCR missing from MeasurementSet: %v", err)
	}
	if _, err := QuoteFrom(TPMGetSignedMeasurementsResponse{SignedMeasurements: "AAk="}, set, nil, []int{4}); err == nil {
		t.Error("a truncated SignedMeasurements accepted")
	}
}
