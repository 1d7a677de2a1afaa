package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/fwbuild/fwbuild/contract"
)

// The Redfish service's TLS identity. No private key is ever in an image:
// the unit makes an ECDSA P-256 key the first time it boots with its data
// disk and keeps it there (tlsKeyPath, mode 0600, written atomically), so a
// client that pinned the certificate's key keeps trusting it. Each boot
// issues a fresh self-signed certificate for that key naming the unit's
// serial and the management address (which DHCP may change). Without a data
// disk the key lives in memory for this boot, and the console says so.

// tlsKeyPath is the key on the data disk.
var tlsKeyPath = filepath.Join(contract.DataMount, "redfish", "tls.key")

// loadOrCreateKey reads the key at p, or creates it there. A key file that
// is there but unreadable or not an EC key is an error, never replaced: a
// client that pinned it must not be silently re-keyed.
func loadOrCreateKey(p string) (*ecdsa.PrivateKey, bool, error) {
	b, err := os.ReadFile(p)
	switch {
	case err == nil:
		blk, _ := pem.Decode(b)
		if blk == nil || blk.Type != "EC PRIVATE KEY" {
			return nil, false, fmt.Errorf("redfish: %s: not a PEM EC PRIVATE KEY (remove it to make a new key)", p)
		}
		k, err := x509.ParseECPrivateKey(blk.Bytes)
		if err != nil {
			return nil, false, fmt.Errorf("redfish: %s: %w (remove it to make a new key)", p, err)
		}
		return k, false, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, false, fmt.Errorf("redfish: %w", err)
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, false, fmt.Errorf("redfish: generate key: %w", err)
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, false, fmt.Errorf("redfish: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return nil, false, fmt.Errorf("redfish: %w", err)
	}
	if err := writeFileAtomic(p, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, false, fmt.Errorf("redfish: write %s: %w", p, err)
	}
	return k, true, nil
}

// selfSigned issues the boot's certificate for key: subject CN the unit's
// serial, the management address as its IP SAN. It is valid from 2000 to
// RFC 5280's "no well-defined expiration" (9999-12-31), as a unit's clock
// may be anywhere at boot.
func selfSigned(key *ecdsa.PrivateKey, board, serial string, addr netip.Addr) (tls.Certificate, string, error) {
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: serial, Organization: []string{"fwbuild " + board}, SerialNumber: serial},
		NotBefore:             time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	if addr.IsValid() {
		tmpl.IPAddresses = append(tmpl.IPAddresses, addr.AsSlice())
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("redfish: certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	sum := sha256.Sum256(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, hex.EncodeToString(sum[:]), nil
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }
