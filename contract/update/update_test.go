package update

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"strings"
	"testing"
	"time"
)

func owner(t *testing.T, ec bool) (crypto.Signer, *x509.Certificate) {
	t.Helper()
	var key crypto.Signer
	var err error
	if ec {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	} else {
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	}
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "owner db"},
		NotBefore: time.Unix(0, 0), NotAfter: time.Unix(4102444800, 0)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert
}

func artefact(t *testing.T, key crypto.Signer, cert *x509.Certificate) ([]byte, map[string][]byte) {
	t.Helper()
	parts := map[string][]byte{PartESP: bytes.Repeat([]byte("esp"), 5000), PartFlash: bytes.Repeat([]byte("flash"), 3000)}
	b, err := Encode(Header{Board: "qemu-q35", Version: "1.2.0+3f2a9c1e", Created: 1704067200}, parts, key, cert)
	if err != nil {
		t.Fatal(err)
	}
	return b, parts
}

func TestRoundTrip(t *testing.T) {
	for _, ec := range []bool{false, true} {
		key, cert := owner(t, ec)
		b, parts := artefact(t, key, cert)
		a, err := Open(bytes.NewReader(b), int64(len(b)), "qemu-q35", cert)
		if err != nil {
			t.Fatalf("ec=%v: %v", ec, err)
		}
		if a.Header.Version != "1.2.0+3f2a9c1e" || len(a.Header.Parts) != 2 {
			t.Fatalf("header %+v", a.Header)
		}
		for kind, want := range parts {
			r, _, err := a.Part(kind)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%s: %d bytes, %v", kind, len(got), err)
			}
		}
	}
}

func TestDeterministicRSA(t *testing.T) {
	key, cert := owner(t, false)
	a, _ := artefact(t, key, cert)
	b, _ := artefact(t, key, cert)
	if !bytes.Equal(a, b) {
		t.Fatal("same inputs, different artefacts")
	}
}

func TestRefused(t *testing.T) {
	key, cert := owner(t, false)
	_, other := owner(t, false)
	good, _ := artefact(t, key, cert)
	hdrFlip := bytes.Clone(good)
	hdrFlip[30] ^= 1 // inside the header JSON
	partFlip := bytes.Clone(good)
	partFlip[len(partFlip)-1] ^= 1
	cases := []struct {
		name  string
		b     []byte
		board string
		cert  *x509.Certificate
		want  string
	}{
		{"another board", good, "qemu-q35-host", cert, `for board "qemu-q35"`},
		{"another owner", good, "qemu-q35", other, "does not verify"},
		{"header flipped", hdrFlip, "qemu-q35", cert, "does not verify"},
		{"truncated", good[:len(good)-100], "qemu-q35", cert, "truncated"},
		{"truncated header", good[:40], "qemu-q35", cert, "truncated"},
		{"empty", nil, "qemu-q35", cert, "truncated"},
		{"padded", append(bytes.Clone(good), 0), "qemu-q35", cert, "padded"},
		{"not an artefact", append([]byte("MZ"), make([]byte, 100)...), "qemu-q35", cert, "not an fwbuild update"},
	}
	for _, c := range cases {
		_, err := Open(bytes.NewReader(c.b), int64(len(c.b)), c.board, c.cert)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.name, err, c.want)
		}
	}
	// A flipped payload byte passes Open (only the header is signed) and
	// fails when the part is read to its end.
	a, err := Open(bytes.NewReader(partFlip), int64(len(partFlip)), "qemu-q35", cert)
	if err != nil {
		t.Fatal(err)
	}
	r, _, _ := a.Part(PartFlash)
	if _, err := io.ReadAll(r); err == nil || !strings.Contains(err.Error(), "signed header pins") {
		t.Errorf("flipped part: %v", err)
	}
}

func TestVersions(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{{"1.2.0", "1.10.0", -1}, {"2.0.0+aa", "2.0.0+bb", 0}, {"1.0.1", "1.0.0", 1}} {
		va, err := ParseVersion(c.a)
		if err != nil {
			t.Fatal(err)
		}
		vb, _ := ParseVersion(c.b)
		if got := va.Compare(vb); got != c.want {
			t.Errorf("%s vs %s = %d, want %d", c.a, c.b, got, c.want)
		}
	}
	for _, bad := range []string{"1.2", "1.2.3.4", "01.2.3", "1.x.3", "1.2.3+a b", "-1.2.3", ""} {
		if _, err := ParseVersion(bad); err == nil {
			t.Errorf("ParseVersion(%q) accepted", bad)
		}
	}
}
