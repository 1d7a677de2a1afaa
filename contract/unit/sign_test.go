package unit

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"testing"
	"time"
)

func testCert(t *testing.T, key crypto.Signer) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "owner db"},
		NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<32, 0)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSignVerify(t *testing.T) {
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	framed, err := Encode(record(t, "pw"))
	if err != nil {
		t.Fatal(err)
	}
	for name, key := range map[string]crypto.Signer{"rsa": rk, "ecdsa": ek} {
		cert := testCert(t, key)
		signed, err := Sign(framed, key)
		if err != nil {
			t.Fatal(err)
		}
		region := append(bytes.Clone(signed), bytes.Repeat([]byte{0xff}, 4096)...)
		if _, err := Parse(region); err != nil {
			t.Fatalf("%s: a signed record no longer parses: %v", name, err)
		}
		if err := VerifySignature(region, cert); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if err := VerifySignature(region, testCert(t, other)); err == nil {
			t.Errorf("%s: another owner's certificate accepted the signature", name)
		}
		// A record rewritten with a valid hash of its own keeps the old
		// signature, which no longer matches.
		forged, _ := Encode(record(t, "attacker"))
		swapped := append(bytes.Clone(forged), signed[len(framed):]...)
		if err := VerifySignature(swapped, cert); err == nil {
			t.Errorf("%s: a rewritten record passed with the old signature", name)
		}
		if err := VerifySignature(append(bytes.Clone(framed), bytes.Repeat([]byte{0xff}, 64)...), cert); !errors.Is(err, ErrUnsigned) {
			t.Errorf("%s: unsigned: %v", name, err)
		}
	}
}
