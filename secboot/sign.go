package secboot

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/foxboron/go-uefi/authenticode"
	"github.com/foxboron/go-uefi/pkcs7"
)

// SignPE returns a PE/COFF image with an Authenticode signature (SHA-256,
// PKCS#7 signed data carrying the signer's certificate) appended to its
// certificate table. The signature carries no signed attributes: the only
// one a signer adds by default is the signing time, which would make two
// builds of the same inputs differ; RSA PKCS#1 v1.5 signatures are
// deterministic, so the signed image is reproducible. UEFI (edk2's
// Pkcs7Verify), sbverify and osslsigncode accept such signatures.
//
// An image that is already signed is refused: a second signature would be
// appended, and which one a firmware checks is its own choice.
func SignPE(img []byte, key crypto.Signer, cert *x509.Certificate) ([]byte, error) {
	if len(img) < 2 || img[0] != 'M' || img[1] != 'Z' {
		return nil, fmt.Errorf("sign: %w (no MZ header)", errNotPE)
	}
	pe, err := authenticode.Parse(bytes.NewReader(img))
	if err != nil {
		return nil, fmt.Errorf("sign: %w: %v", errNotPE, err)
	}
	if sigs, err := pe.Signatures(); err == nil && len(sigs) > 0 {
		return nil, errors.New("sign: the image is signed already")
	}
	if _, err := pe.Sign(key, cert, pkcs7.NoAttr()); err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return pe.Bytes(), nil
}

// AuthenticodeDigest is the image's Authenticode SHA-256 (the PE hash that
// skips the checksum, the certificate-table entry and the signatures): what
// a signature signs, and what edk2 extends into PCR 4 as the
// EV_EFI_BOOT_SERVICES_APPLICATION event when it starts the image.
func AuthenticodeDigest(img []byte) ([]byte, error) {
	pe, err := authenticode.Parse(bytes.NewReader(img))
	if err != nil {
		return nil, fmt.Errorf("authenticode digest: %w: %v", errNotPE, err)
	}
	return pe.Hash(crypto.SHA256), nil
}
