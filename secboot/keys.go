// Package secboot owns UEFI Secure Boot for a build: the owner's key set
// (PK, KEK, db), Authenticode signatures on the payloads, and the firmware's
// variable store with those keys enrolled and Secure Boot on.
//
// Private keys live only in the owner's key directory, which the build is
// told on its command line; what goes into images is certificates (in the
// variable store) and signatures (in the payloads), never a private key.
package secboot

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/fwbuild/fwbuild/internal/atomicfile"
	"github.com/google/uuid"
)

// Roles are the three keys of a Secure Boot owner, in enrolment order: the
// platform key, the key-exchange key and the signature database's key,
// which signs the payloads.
var Roles = []string{"PK", "KEK", "db"}

// KeyFile and CertFile name a role's files in a key directory (PEM: a
// PKCS#8 private key and an X.509 certificate).
func KeyFile(dir, role string) string  { return filepath.Join(dir, role+".key") }
func CertFile(dir, role string) string { return filepath.Join(dir, role+".crt") }

// Generate writes a new test key set (RSA 2048, the size every UEFI
// implementation verifies) into dir, which must not hold one already: an
// owner's keys are never overwritten. Each certificate is self-signed; the
// set is for a lab or a first board, a fleet's keys come from its own PKI
// (any PEM key and certificate with these names works).
func Generate(dir, owner string) error {
	for _, role := range Roles {
		for _, p := range []string{KeyFile(dir, role), CertFile(dir, role)} {
			if _, err := os.Lstat(p); err == nil {
				return fmt.Errorf("keys: %s exists: fwbuild never overwrites an owner's keys (use another directory, or remove it yourself)", p)
			}
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	for i, role := range Roles {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return fmt.Errorf("keys: %s: %w", role, err)
		}
		serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
		if err != nil {
			return fmt.Errorf("keys: %s: %w", role, err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: serial,
			Subject:      pkix.Name{CommonName: fmt.Sprintf("%s %s", owner, role)},
			// Firmware does not check validity dates; tools that do
			// (sbverify, osslsigncode) must not reject a board flashed years ago.
			NotBefore:             time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
			NotAfter:              time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
			KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
			BasicConstraintsValid: true,
			IsCA:                  i < len(Roles)-1,
		}
		if role == "db" {
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			return fmt.Errorf("keys: %s: %w", role, err)
		}
		pk8, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return fmt.Errorf("keys: %s: %w", role, err)
		}
		if err := atomicfile.WriteFile(KeyFile(dir, role), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk8}), 0o600); err != nil {
			return fmt.Errorf("keys: %w", err)
		}
		if err := atomicfile.WriteFile(CertFile(dir, role), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
			return fmt.Errorf("keys: %w", err)
		}
	}
	return nil
}

// Owner is a loaded key set: the three certificates, and the db key that
// signs payloads (PK's and KEK's private keys are not needed to build).
type Owner struct {
	Dir     string
	PK, KEK *x509.Certificate
	DB      *x509.Certificate
	Signer  crypto.Signer // db's private key
}

// Load reads a key directory. Every error names the file and what to do.
func Load(dir string) (*Owner, error) {
	o := &Owner{Dir: dir}
	var err error
	if o.PK, err = ReadCert(CertFile(dir, "PK")); err != nil {
		return nil, err
	}
	if o.KEK, err = ReadCert(CertFile(dir, "KEK")); err != nil {
		return nil, err
	}
	if o.DB, err = ReadCert(CertFile(dir, "db")); err != nil {
		return nil, err
	}
	if o.Signer, err = ReadKey(KeyFile(dir, "db")); err != nil {
		return nil, err
	}
	pub, ok := o.Signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(o.DB.PublicKey) {
		return nil, fmt.Errorf("keys: %s is not the key of %s: sign with the db certificate's own key", KeyFile(dir, "db"), CertFile(dir, "db"))
	}
	return o, nil
}

// ID identifies the key set for cache keys: the certificates' hashes (a
// certificate binds its public key, and signatures are deterministic).
func (o *Owner) ID() string {
	h := sha256.New()
	for _, c := range []*x509.Certificate{o.PK, o.KEK, o.DB} {
		h.Write(c.Raw)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// ReadCert reads one PEM (or DER) X.509 certificate.
func ReadCert(p string) (*x509.Certificate, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("keys: %w (create a test set with `fwbuild keys --dir DIR`)", err)
	}
	der := b
	if blk, _ := pem.Decode(b); blk != nil {
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("keys: %s holds a PEM %q block: want a CERTIFICATE", p, blk.Type)
		}
		der = blk.Bytes
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("keys: %s: not an X.509 certificate: %w", p, err)
	}
	if _, ok := c.PublicKey.(*rsa.PublicKey); !ok {
		return nil, fmt.Errorf("keys: %s: the key is %T: UEFI firmware verifies RSA (2048 bits) only", p, c.PublicKey)
	}
	return c, nil
}

// ReadKey reads an RSA private key (PEM, PKCS#8 or PKCS#1).
func ReadKey(p string) (crypto.Signer, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("keys: %w (create a test set with `fwbuild keys --dir DIR`)", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("keys: %s: no PEM block: want a PRIVATE KEY", p)
	}
	var key any
	switch blk.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	default:
		return nil, fmt.Errorf("keys: %s holds a PEM %q block: want an (unencrypted) PRIVATE KEY", p, blk.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("keys: %s: %w", p, err)
	}
	rk, ok := key.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("keys: %s: the key is %T: UEFI firmware verifies RSA only", p, key)
	}
	return rk, nil
}

var errNotPE = errors.New("not a PE/COFF image")

// fwbuildNS is the namespace of fwbuild's name-based GUIDs (as in image).
var fwbuildNS = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://github.com/fwbuild/fwbuild"))

// OwnerGUID is the SignatureOwner of the owner's signature-list entries: a
// name-based GUID of the db certificate, so it is fixed for a key set and
// the same in every build.
func (o *Owner) OwnerGUID() uuid.UUID {
	return uuid.NewSHA1(fwbuildNS, append([]byte("secure-boot-owner\x00"), o.DB.Raw...))
}
