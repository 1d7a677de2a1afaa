// Package attest verifies a control domain's TPM2 quote (contract.Quote)
// against a build's predicted PCRs (manifest.json's measurements): the
// attestation key's signature over the quoted structure, the verifier's
// nonce inside it, the PCR values against the quoted digest, PCRs 4 and 7
// against the prediction, and optionally the firmware's event log replayed
// against the PCRs. `fwbuild attest` is its command line.
//
// The attestation key is taken from the quote itself (Verify, the console's
// quote), or from its certificate, signed by the Redfish service's key the
// verifier pinned (VerifyCertified, the API's quote). Either proves that the
// holder of that key quoted these values over this nonce; that the key lives
// in a TPM (the TPM's endorsement key and its certificate,
// ActivateCredential) is the fleet's enrolment step.
package attest

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/google/go-tpm/legacy/tpm2"

	"github.com/fwbuild/fwbuild/contract"
	rf "github.com/fwbuild/fwbuild/contract/redfish"
)

// Mismatch lists every way a quote differs from what was expected.
type Mismatch struct{ Problems []string }

func (m *Mismatch) Error() string { return "MISMATCH: " + strings.Join(m.Problems, "; ") }

// Verify checks q against nonce and the predicted measurement of one boot
// path. A *Mismatch names what differs; other errors are malformed input.
func Verify(q contract.Quote, nonce []byte, want *contract.PathMeasurement) error {
	pub, err := tpm2.DecodePublic(q.AKPublic)
	if err != nil {
		return fmt.Errorf("attest: ak_public: %w", err)
	}
	key, err := pub.Key()
	if err != nil {
		return fmt.Errorf("attest: ak_public: %w", err)
	}
	rsaKey, ok := key.(*rsa.PublicKey)
	if !ok {
		return errors.New("attest: ak_public: not an RSA key")
	}
	if pub.Attributes&(tpm2.FlagRestricted|tpm2.FlagSign|tpm2.FlagFixedTPM) != tpm2.FlagRestricted|tpm2.FlagSign|tpm2.FlagFixedTPM {
		return errors.New("attest: ak_public: not a restricted signing key fixed to its TPM (anything can sign with such a key)")
	}
	return verifyWith(rsaKey, q, nonce, want)
}

// VerifyCertified is Verify for a quote whose attestation key comes in a
// certificate (the Redfish API's Certificate parameter) rather than as a
// TPMT_PUBLIC: the certificate must be an attestation key's (tcg-kp-
// AIKCertificate) signed by issuer's key, the service's TLS certificate the
// verifier pinned. That proves the key is the unit's; that it is a TPM's
// remains, as for Verify, the fleet's enrolment step.
func VerifyCertified(q contract.Quote, akCert, issuer *x509.Certificate, nonce []byte, want *contract.PathMeasurement) error {
	// CheckSignature, not CheckSignatureFrom: the issuer is the unit's
	// self-signed TLS leaf, not a CA, and only its key matters here.
	if err := issuer.CheckSignature(akCert.SignatureAlgorithm, akCert.RawTBSCertificate, akCert.Signature); err != nil {
		return &Mismatch{Problems: []string{fmt.Sprintf("the attestation key's certificate is not signed by the service's key (%v): not this unit's key", err)}}
	}
	aik := false
	for _, u := range akCert.UnknownExtKeyUsage {
		aik = aik || u.Equal(rf.AIKCertificateEKU)
	}
	if !aik {
		return errors.New("attest: the certificate is not an attestation key's (no tcg-kp-AIKCertificate extended key usage)")
	}
	rsaKey, ok := akCert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return errors.New("attest: the attestation key's certificate: not an RSA key")
	}
	return verifyWith(rsaKey, q, nonce, want)
}

// verifyWith checks the quote's signature with rsaKey, then its content.
func verifyWith(rsaKey *rsa.PublicKey, q contract.Quote, nonce []byte, want *contract.PathMeasurement) error {
	sig, err := tpm2.DecodeSignature(bytes.NewBuffer(q.Signature))
	if err != nil {
		return fmt.Errorf("attest: signature: %w", err)
	}
	if sig.Alg != tpm2.AlgRSASSA || sig.RSA == nil || sig.RSA.HashAlg != tpm2.AlgSHA256 {
		return fmt.Errorf("attest: signature: scheme %v, want RSASSA with SHA-256", sig.Alg)
	}
	m := &Mismatch{}
	digest := sha256.Sum256(q.Quoted)
	if err := rsa.VerifyPKCS1v15(rsaKey, crypto.SHA256, digest[:], sig.RSA.Signature); err != nil {
		// Nothing else in the quote can be trusted then.
		return &Mismatch{Problems: []string{"the signature does not verify with ak_public: the quote was altered or signed by another key"}}
	}
	ad, err := tpm2.DecodeAttestationData(q.Quoted)
	if err != nil {
		return fmt.Errorf("attest: quoted: %w", err)
	}
	if ad.Magic != 0xff544347 || ad.Type != tpm2.TagAttestQuote || ad.AttestedQuoteInfo == nil {
		return &Mismatch{Problems: []string{"the signed structure is not a TPM quote"}}
	}
	if !bytes.Equal(ad.ExtraData, nonce) {
		m.Problems = append(m.Problems, fmt.Sprintf("nonce: the quote is over %x, not %x (a replayed or foreign quote)", []byte(ad.ExtraData), nonce))
	}
	sel := ad.AttestedQuoteInfo.PCRSelection
	if sel.Hash != tpm2.AlgSHA256 || !samePCRs(sel.PCRs, contract.QuotePCRs) {
		m.Problems = append(m.Problems, fmt.Sprintf("the quote covers PCRs %v of bank %v, want %v of SHA-256", sel.PCRs, sel.Hash, contract.QuotePCRs))
	}
	// The quoted digest is SHA-256 over the selected PCRs' values in order.
	h := sha256.New()
	for _, i := range contract.QuotePCRs {
		v, err := hex.DecodeString(q.PCRs[strconv.Itoa(i)])
		if err != nil || len(v) != sha256.Size {
			return fmt.Errorf("attest: pcr_sha256[%d] = %q: not a SHA-256 value", i, q.PCRs[strconv.Itoa(i)])
		}
		h.Write(v)
	}
	if !bytes.Equal(h.Sum(nil), ad.AttestedQuoteInfo.PCRDigest) {
		m.Problems = append(m.Problems, "pcr_sha256: the values listed are not the ones the TPM quoted")
	}
	if want != nil {
		for _, pcr := range []string{"4", "7"} {
			w, ok := want.SHA256[pcr]
			if !ok {
				continue
			}
			if got := q.PCRs[pcr]; got != w {
				m.Problems = append(m.Problems, fmt.Sprintf("PCR %s: want %s (%s), got %s", pcr, w, want.Payload, got))
			}
		}
	}
	if len(m.Problems) > 0 {
		return m
	}
	return nil
}

// ReplayLog checks the firmware's event log (contract.ParseEventLog) against
// the quoted PCRs: every PCR the log touches must replay to the quote's
// value. With want, the log's PCR 4 and 7 events are also compared with the
// predicted ones, naming the first that differs.
func ReplayLog(log []contract.LogEvent, q contract.Quote, want *contract.PathMeasurement) error {
	pcrs := map[int][]byte{}
	for _, e := range log {
		d, ok := e.Digests[contract.AlgSHA256]
		if !ok {
			continue
		}
		if pcrs[e.PCR] == nil {
			pcrs[e.PCR] = make([]byte, sha256.Size)
		}
		s := sha256.Sum256(append(pcrs[e.PCR], d...))
		pcrs[e.PCR] = s[:]
	}
	m := &Mismatch{}
	var idx []int
	for i := range pcrs {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	for _, i := range idx {
		if got, ok := q.PCRs[strconv.Itoa(i)]; ok && got != hex.EncodeToString(pcrs[i]) {
			m.Problems = append(m.Problems, fmt.Sprintf("event log: PCR %d replays to %x, the TPM quoted %s", i, pcrs[i], got))
		}
	}
	if want != nil {
		for _, pcr := range []int{4, 7} {
			var got []contract.LogEvent
			for _, e := range log {
				if e.PCR == pcr {
					got = append(got, e)
				}
			}
			var exp []contract.MeasuredEvent
			for _, e := range want.Events {
				if e.PCR == pcr {
					exp = append(exp, e)
				}
			}
		events:
			for i := 0; i < len(got) || i < len(exp); i++ {
				switch {
				case i >= len(got):
					m.Problems = append(m.Problems, fmt.Sprintf("event log: PCR %d lacks predicted event %d (%s %s)", pcr, i+1, exp[i].Type, exp[i].Text))
				case i >= len(exp):
					m.Problems = append(m.Problems, fmt.Sprintf("event log: PCR %d has event %d (type %#x) the build did not predict", pcr, i+1, got[i].Type))
				case hex.EncodeToString(got[i].Digests[contract.AlgSHA256]) != exp[i].SHA256:
					m.Problems = append(m.Problems, fmt.Sprintf("event log: PCR %d event %d (type %#x) has digest %x, predicted %s %s %s", pcr, i+1, got[i].Type, got[i].Digests[contract.AlgSHA256], exp[i].Type, exp[i].Text, exp[i].SHA256))
				default:
					continue
				}
				break events
			}
		}
	}
	if len(m.Problems) > 0 {
		return m
	}
	return nil
}

func samePCRs(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	a = append([]int(nil), a...)
	sort.Ints(a)
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
