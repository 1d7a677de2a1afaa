package unit

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
)

// The record is per unit, so no payload can pin its hash; whoever can write
// the flash can write a record with a password of their own. A signed build
// closes that: `fwbuild provision --keys DIR` signs the framed record with
// the owner's db key, and a control domain that carries the owner's
// certificate (inside the signed payload) accepts only a record that
// certificate's key signed. The signature follows the record:
//
//	offset      size  field
//	0           8     magic "FWUSIG\x00\x01"
//	8           4     length n of the signature (little endian)
//	12          n     the signature over SHA-256 of the framed record (header
//	                  and body): RSA PKCS#1 v1.5 or ECDSA ASN.1, as
//	                  x509.Certificate.CheckSignature takes them
const (
	SigMagic = "FWUSIG\x00\x01"
	// MaxSig bounds a signature read from a region (RSA 8192 is 1 KiB).
	MaxSig = 4096
)

// ErrUnsigned is returned for a record that carries no signature.
var ErrUnsigned = errors.New("the record carries no owner's signature")

// Sign appends the owner's signature to a framed record (Encode's output).
func Sign(framed []byte, key crypto.Signer) ([]byte, error) {
	if _, err := framedLen(framed); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(framed)
	sig, err := key.Sign(nil, sum[:], crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("unit: sign: %w", err)
	}
	out := append(bytes.Clone(framed), SigMagic...)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(sig)))
	return append(out, sig...), nil
}

// VerifySignature checks that the record at the start of region is signed
// by cert's key. The record itself must have been checked with Parse.
func VerifySignature(region []byte, cert *x509.Certificate) error {
	n, err := framedLen(region)
	if err != nil {
		return err
	}
	t := region[n:]
	if len(t) < 12 || string(t[:8]) != SigMagic {
		return ErrUnsigned
	}
	sl := binary.LittleEndian.Uint32(t[8:])
	if sl == 0 || sl > MaxSig || uint64(sl) > uint64(len(t)-12) {
		return fmt.Errorf("unit: signature of %d bytes does not fit the region", sl)
	}
	if err := cert.CheckSignature(sigAlgorithm(cert), region[:n], t[12:12+sl]); err != nil {
		return fmt.Errorf("unit: the record's signature is not the owner's (%s): %w", cert.Subject, err)
	}
	return nil
}

func sigAlgorithm(cert *x509.Certificate) x509.SignatureAlgorithm {
	if cert.PublicKeyAlgorithm == x509.ECDSA {
		return x509.ECDSAWithSHA256
	}
	return x509.SHA256WithRSA
}

// framedLen is the length of the framed record at the start of b.
func framedLen(b []byte) (int, error) {
	if len(b) < HeaderSize || string(b[:8]) != Magic {
		return 0, errors.New("unit: not a framed unit record")
	}
	n := binary.LittleEndian.Uint32(b[8:])
	if n > MaxBody || uint64(n) > uint64(len(b)-HeaderSize) {
		return 0, fmt.Errorf("unit: record body of %d bytes does not fit", n)
	}
	return HeaderSize + int(n), nil
}
