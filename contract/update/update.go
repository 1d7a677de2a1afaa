// Package update is the signed update artefact, part of the contract
// between the build and the control domain: `fwbuild build` writes it for a
// signed board, the running ctld checks it before it touches the inactive
// slot. It is a package of its own because it verifies signatures (see
// package bundle for why contract itself stays small).
package update

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"
)

// An artefact is a signed header that pins the payloads it carries:
//
//	offset    size  field
//	0         8     magic "FWUPDATE"
//	8         4     format, 1 (little endian)
//	12        4     header length h
//	16        h     the header: a Header as JSON
//	16+h      4     signature length s
//	20+h      s     the owner's signature over bytes [0, 16+h): PKCS#1 v1.5
//	                or ECDSA, SHA-256, by the key of the certificate the
//	                running payload trusts
//	20+h+s    ...   each part's bytes, in the header's order
//
// Only the header is signed; it holds every part's size and SHA-256, so a
// reader can check the signature first, in microseconds, and then hash the
// parts as it streams them.
const (
	Magic  = "FWUPDATE"
	Format = 1
	// MaxHeader bounds what a reader accepts from the network.
	MaxHeader = 64 << 10
	maxSig    = 16 << 10
)

// Part kinds: which slot a part goes to.
const (
	PartESP   = "esp"   // the ESP payload (payload-esp.efi)
	PartFlash = "flash" // the flash payload (payload-flash.efi)
)

// Header says what the artefact is for and what it carries.
type Header struct {
	Format  int    `json:"format"`
	Board   string `json:"board"`   // an artefact for another board is refused
	Version string `json:"version"` // Version's syntax: MAJOR.MINOR.PATCH+<content hash>
	// Created is the build's SOURCE_DATE_EPOCH.
	Created int64  `json:"created"`
	Parts   []Part `json:"parts"`
	// SignerSHA256 names the certificate that signed it (SHA-256 of its DER).
	SignerSHA256 string `json:"signer_sha256"`
}

// Part is one payload in the artefact.
type Part struct {
	Kind   string `json:"kind"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Encode signs the header (after filling in the parts' sizes and hashes and
// the signer) and returns the artefact. The signature uses no randomness
// for an RSA key, so the same inputs give the same bytes.
func Encode(h Header, parts map[string][]byte, signer crypto.Signer, cert *x509.Certificate) ([]byte, error) {
	h.Format = Format
	h.Parts = nil
	for _, kind := range []string{PartESP, PartFlash} {
		b, ok := parts[kind]
		if !ok {
			continue
		}
		sum := sha256.Sum256(b)
		h.Parts = append(h.Parts, Part{Kind: kind, Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:])})
	}
	if len(h.Parts) != len(parts) {
		return nil, fmt.Errorf("update: parts must be %q or %q", PartESP, PartFlash)
	}
	sum := sha256.Sum256(cert.Raw)
	h.SignerSHA256 = hex.EncodeToString(sum[:])
	if err := h.validate(); err != nil {
		return nil, err
	}
	body, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("update: header: %w", err)
	}
	var out bytes.Buffer
	out.WriteString(Magic)
	binary.Write(&out, binary.LittleEndian, uint32(Format))
	binary.Write(&out, binary.LittleEndian, uint32(len(body)))
	out.Write(body)
	digest := sha256.Sum256(out.Bytes())
	sig, err := signer.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("update: sign: %w", err)
	}
	binary.Write(&out, binary.LittleEndian, uint32(len(sig)))
	out.Write(sig)
	for _, p := range h.Parts {
		out.Write(parts[p.Kind])
	}
	return out.Bytes(), nil
}

// Artefact is a parsed artefact whose signature has been checked; its
// parts have not (Part reads and checks one).
type Artefact struct {
	Header Header
	// partsAt is where the first part starts.
	partsAt int64
	r       io.ReaderAt
	size    int64
}

// Open reads the header of an artefact of size bytes from r and checks its
// signature against the certificate the running payload trusts, and that
// it is for board. Nothing is trusted before the signature checks out.
func Open(r io.ReaderAt, size int64, board string, trusted *x509.Certificate) (*Artefact, error) {
	var fixed [16]byte
	if _, err := r.ReadAt(fixed[:], 0); err != nil {
		return nil, fmt.Errorf("update: artefact of %d bytes is too short for its header: truncated", size)
	}
	if string(fixed[:8]) != Magic {
		return nil, fmt.Errorf("update: not an fwbuild update artefact (starts with %q)", fixed[:8])
	}
	if f := binary.LittleEndian.Uint32(fixed[8:]); f != Format {
		return nil, fmt.Errorf("update: artefact format %d, this control domain reads format %d", f, Format)
	}
	hlen := int64(binary.LittleEndian.Uint32(fixed[12:]))
	if hlen > MaxHeader || 20+hlen > size {
		return nil, fmt.Errorf("update: header of %d bytes does not fit the %d-byte artefact: truncated or damaged", hlen, size)
	}
	signed := make([]byte, 16+hlen+4)
	if _, err := r.ReadAt(signed, 0); err != nil {
		return nil, fmt.Errorf("update: read header: %w", err)
	}
	slen := int64(binary.LittleEndian.Uint32(signed[16+hlen:]))
	if slen > maxSig || 20+hlen+slen > size {
		return nil, fmt.Errorf("update: signature of %d bytes does not fit the %d-byte artefact: truncated or damaged", slen, size)
	}
	sig := make([]byte, slen)
	if _, err := r.ReadAt(sig, 20+hlen); err != nil {
		return nil, fmt.Errorf("update: read signature: %w", err)
	}
	signed = signed[:16+hlen]
	if err := trusted.CheckSignature(sigAlgorithm(trusted), signed, sig); err != nil {
		return nil, fmt.Errorf("update: signature does not verify with the owner's certificate %s: %w", trusted.Subject, err)
	}
	var h Header
	dec := json.NewDecoder(bytes.NewReader(signed[16:]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return nil, fmt.Errorf("update: header: %w", err)
	}
	if err := h.validate(); err != nil {
		return nil, err
	}
	if h.Board != board {
		return nil, fmt.Errorf("update: artefact is for board %q, this is %q", h.Board, board)
	}
	a := &Artefact{Header: h, partsAt: 20 + hlen + slen, r: r, size: size}
	var want int64
	for _, p := range h.Parts {
		want += p.Size
	}
	if a.partsAt+want != size {
		return nil, fmt.Errorf("update: artefact is %d bytes, its header says %d: truncated or padded", size, a.partsAt+want)
	}
	return a, nil
}

func sigAlgorithm(c *x509.Certificate) x509.SignatureAlgorithm {
	if c.PublicKeyAlgorithm == x509.ECDSA {
		return x509.ECDSAWithSHA256
	}
	return x509.SHA256WithRSA
}

// Part returns a reader of one part's bytes, which fails at its end if they
// do not match the header's SHA-256 (so a writer must not commit what it
// wrote before it has read to EOF without error).
func (a *Artefact) Part(kind string) (io.Reader, Part, error) {
	off := a.partsAt
	for _, p := range a.Header.Parts {
		if p.Kind == kind {
			return &checked{r: io.NewSectionReader(a.r, off, p.Size), h: sha256.New(), want: p.SHA256, kind: kind}, p, nil
		}
		off += p.Size
	}
	return nil, Part{}, fmt.Errorf("update: artefact carries no %s payload", kind)
}

type checked struct {
	r    io.Reader
	h    hash.Hash
	want string
	kind string
}

func (c *checked) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.h.Write(p[:n])
	if err == io.EOF {
		if got := hex.EncodeToString(c.h.Sum(nil)); got != c.want {
			return n, fmt.Errorf("update: %s payload has SHA-256 %s, the signed header pins %s", c.kind, got, c.want)
		}
	}
	return n, err
}

func (h Header) validate() error {
	if h.Format != Format {
		return fmt.Errorf("update: header format %d, want %d", h.Format, Format)
	}
	if h.Board == "" {
		return errors.New("update: header names no board")
	}
	if _, err := ParseVersion(h.Version); err != nil {
		return err
	}
	if len(h.Parts) == 0 {
		return errors.New("update: artefact carries no payload")
	}
	seen := map[string]bool{}
	for _, p := range h.Parts {
		if (p.Kind != PartESP && p.Kind != PartFlash) || seen[p.Kind] {
			return fmt.Errorf("update: part %q unknown or given twice", p.Kind)
		}
		if p.Size <= 0 || len(p.SHA256) != 64 {
			return fmt.Errorf("update: part %s needs a size and a SHA-256", p.Kind)
		}
		seen[p.Kind] = true
	}
	return nil
}

// Version is MAJOR.MINOR.PATCH from the profile, plus the build's content
// hash after '+': 1.4.0+3f2a9c1e. Order ignores the hash (as semver's build
// metadata); two builds of one release differ only there.
type Version struct {
	Major, Minor, Patch int
	Build               string
}

// ParseVersion reads a version; the hash part is optional.
func ParseVersion(s string) (Version, error) {
	core, build, _ := strings.Cut(s, "+")
	f := strings.Split(core, ".")
	if len(f) != 3 {
		return Version{}, fmt.Errorf("update: version %q is not MAJOR.MINOR.PATCH[+hash]", s)
	}
	var n [3]int
	for i, x := range f {
		v, err := strconv.Atoi(x)
		if err != nil || v < 0 || v > 65535 || (len(x) > 1 && x[0] == '0') {
			return Version{}, fmt.Errorf("update: version %q: %q is not a number 0..65535 without leading zeros", s, x)
		}
		n[i] = v
	}
	for _, r := range build {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '.' || r == '-') {
			return Version{}, fmt.Errorf("update: version %q: build part may hold only [0-9A-Za-z.-]", s)
		}
	}
	return Version{n[0], n[1], n[2], build}, nil
}

// Compare orders versions by MAJOR.MINOR.PATCH.
func (v Version) Compare(w Version) int {
	for _, d := range [3]int{v.Major - w.Major, v.Minor - w.Minor, v.Patch - w.Patch} {
		if d != 0 {
			if d < 0 {
				return -1
			}
			return 1
		}
	}
	return 0
}

func (v Version) String() string {
	s := fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch)
	if v.Build != "" {
		s += "+" + v.Build
	}
	return s
}
