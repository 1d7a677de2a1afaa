package remote

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"

	"github.com/fwbuild/fwbuild/contract"
	rf "github.com/fwbuild/fwbuild/contract/redfish"
)

// Quote is a TPM quote fetched over Redfish, with what verifies it.
type Quote struct {
	Quote contract.Quote
	// AKCertificate is the attestation key's certificate the service
	// named; Server the service's TLS certificate, its issuer.
	AKCertificate, Server *x509.Certificate
}

// Quote runs ComponentIntegrity/TPM's TPMGetSignedMeasurements over nonce
// for contract.QuotePCRs, then reads the TPM's PCR values and the
// attestation key's certificate: everything attest.VerifyCertified needs.
func (c *Client) Quote(ctx context.Context, nonce []byte) (Quote, error) {
	var out Quote
	req := rf.TPMGetSignedMeasurements{Certificate: &rf.ODataID{ID: rf.AKCertificate}, Nonce: hex.EncodeToString(nonce),
		PCRSelection: rf.QuotePCRSelection(), Scheme: rf.QuoteScheme()}
	var signed rf.TPMGetSignedMeasurementsResponse
	resp, _, err := c.do(ctx, http.MethodPost, rf.TPMSignedTarget, req, &signed)
	if err != nil {
		var e *Error
		if errors.As(err, &e) && e.Status == http.StatusNotFound {
			return out, fmt.Errorf("remote: the unit has no TPM to quote (%w)", err)
		}
		return out, err
	}
	if resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 {
		return out, errors.New("remote: no TLS certificate from the service: a quote's key cannot be checked without it")
	}
	out.Server = resp.TLS.PeerCertificates[0]
	// The PCR values after the quote: the quoted digest covers them, so a
	// PCR extended in between makes the verifier refuse, never accept.
	var ci rf.ComponentIntegrityResource
	if _, _, err := c.do(ctx, http.MethodGet, rf.TPMIntegrity, nil, &ci); err != nil {
		return out, err
	}
	if ci.TPM == nil {
		return out, fmt.Errorf("remote: %s has no TPM property", rf.TPMIntegrity)
	}
	if out.Quote, err = rf.QuoteFrom(signed, ci.TPM.MeasurementSet, nonce, contract.QuotePCRs); err != nil {
		return out, fmt.Errorf("remote: %w", err)
	}
	var cert rf.CertificateResource
	if _, _, err := c.do(ctx, http.MethodGet, rf.AKCertificate, nil, &cert); err != nil {
		return out, err
	}
	blk, _ := pem.Decode([]byte(cert.CertificateString))
	if blk == nil || blk.Type != "CERTIFICATE" {
		return out, fmt.Errorf("remote: %s: CertificateString is not a PEM certificate", rf.AKCertificate)
	}
	if out.AKCertificate, err = x509.ParseCertificate(blk.Bytes); err != nil {
		return out, fmt.Errorf("remote: %s: %w", rf.AKCertificate, err)
	}
	return out, nil
}
