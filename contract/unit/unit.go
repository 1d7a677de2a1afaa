// Package unit is the per-unit credential record, part of the contract
// between the factory and the control domain. There is no default password:
// `fwbuild provision` makes a random password for each unit, prints it once
// for the unit's label and writes this record (which holds only a salted
// hash) into a flash region of its own; ctld reads the record at boot and
// authenticates every management request against it. It is a package of its
// own because it hashes (see package bundle).
package unit

import (
	"bytes"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// The record as it sits in its region (erased flash after it):
//
//	offset  size  field
//	0       8     magic "FWUNIT\x00\x01"
//	8       4     length n of the JSON body (little endian)
//	12      32    SHA-256 of the body
//	44      n     the body: a Record as JSON
//
// The hash tells a half-written or stale region from a good one; it does not
// authenticate the record (a signature over the body can be added by a later
// format version).
const (
	Magic      = "FWUNIT\x00\x01"
	HeaderSize = 44
	// MaxBody bounds what a reader accepts from a region it did not write.
	MaxBody = 64 << 10
)

// Roles are Redfish's predefined roles.
const (
	RoleAdministrator = "Administrator"
	RoleOperator      = "Operator"
	RoleReadOnly      = "ReadOnly"
)

// Record is one unit's identity and accounts.
type Record struct {
	Version  int       `json:"version"` // 1
	Board    string    `json:"board"`   // the profile's name: a record for another board is refused
	Serial   string    `json:"serial"`  // the unit's serial number, as on its label
	Accounts []Account `json:"accounts"`
}

// Account is a management account. Hash is PasswordHash's output.
type Account struct {
	User string `json:"user"`
	Role string `json:"role"`
	Hash string `json:"hash"`
}

// ErrBlank is returned for a region that holds no record (erased or zero).
var ErrBlank = errors.New("no unit record (erased region): provision the unit with `fwbuild provision`")

// Encode frames a record for its region.
func Encode(r Record) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	body, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("unit: encode: %w", err)
	}
	if len(body) > MaxBody {
		return nil, fmt.Errorf("unit: record is %d bytes, at most %d", len(body), MaxBody)
	}
	out := make([]byte, HeaderSize, HeaderSize+len(body))
	copy(out, Magic)
	binary.LittleEndian.PutUint32(out[8:], uint32(len(body)))
	sum := sha256.Sum256(body)
	copy(out[12:], sum[:])
	return append(out, body...), nil
}

// Parse reads a record from the start of a region.
func Parse(region []byte) (Record, error) {
	if len(region) < HeaderSize {
		return Record{}, fmt.Errorf("unit: region is %d bytes, shorter than the %d-byte header", len(region), HeaderSize)
	}
	if blank(region[:HeaderSize]) {
		return Record{}, ErrBlank
	}
	if string(region[:8]) != Magic {
		return Record{}, fmt.Errorf("unit: region starts with %q, not a unit record", region[:8])
	}
	n := binary.LittleEndian.Uint32(region[8:])
	if n > MaxBody || uint64(n) > uint64(len(region)-HeaderSize) {
		return Record{}, fmt.Errorf("unit: record body of %d bytes does not fit the %d-byte region", n, len(region))
	}
	body := region[HeaderSize : HeaderSize+int(n)]
	if sum := sha256.Sum256(body); !bytes.Equal(sum[:], region[12:44]) {
		return Record{}, errors.New("unit: record body does not match its SHA-256 (half-written or damaged region)")
	}
	var r Record
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return Record{}, fmt.Errorf("unit: record body: %w", err)
	}
	if err := r.Validate(); err != nil {
		return Record{}, err
	}
	return r, nil
}

func blank(b []byte) bool {
	return bytes.Count(b, []byte{0xff}) == len(b) || bytes.Count(b, []byte{0}) == len(b)
}

// Validate checks what both sides rely on.
func (r Record) Validate() error {
	if r.Version != 1 {
		return fmt.Errorf("unit: record version %d, this control domain reads version 1", r.Version)
	}
	if r.Board == "" || r.Serial == "" {
		return errors.New("unit: record needs a board and a serial")
	}
	if len(r.Accounts) == 0 {
		return errors.New("unit: record has no accounts")
	}
	seen := map[string]bool{}
	for i, a := range r.Accounts {
		switch {
		case a.User == "" || strings.ContainsAny(a.User, ":/ \t\r\n"):
			return fmt.Errorf("unit: accounts[%d]: user %q must be non-empty without ':', '/' or spaces", i, a.User)
		case seen[a.User]:
			return fmt.Errorf("unit: accounts[%d]: user %q given twice", i, a.User)
		case a.Role != RoleAdministrator && a.Role != RoleOperator && a.Role != RoleReadOnly:
			return fmt.Errorf("unit: accounts[%d]: role %q is not Administrator, Operator or ReadOnly", i, a.Role)
		}
		if _, _, _, err := parseHash(a.Hash); err != nil {
			return fmt.Errorf("unit: accounts[%d] (%s): %w", i, a.User, err)
		}
		seen[a.User] = true
	}
	return nil
}

// Iterations is PBKDF2's count for new hashes. The passwords are random
// (NewPassword: 120 bits), so the stretching is not what protects them; the
// count is kept low enough that a check costs milliseconds even in a
// control domain under emulation, where every Basic-auth request pays it.
const Iterations = 10000

const hashPrefix = "pbkdf2-sha256"

// PasswordHash returns "pbkdf2-sha256$<iterations>$<salt>$<key>" (base64 raw
// standard encoding) for a password, with a fresh random salt.
func PasswordHash(password string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("unit: salt: %w", err)
	}
	return hashWith(password, salt, Iterations)
}

func hashWith(password string, salt []byte, iter int) (string, error) {
	key, err := pbkdf2.Key(sha256.New, password, salt, iter, sha256.Size)
	if err != nil {
		return "", fmt.Errorf("unit: pbkdf2: %w", err)
	}
	enc := base64.RawStdEncoding
	return strings.Join([]string{hashPrefix, strconv.Itoa(iter), enc.EncodeToString(salt), enc.EncodeToString(key)}, "$"), nil
}

func parseHash(h string) (iter int, salt, key []byte, err error) {
	f := strings.Split(h, "$")
	if len(f) != 4 || f[0] != hashPrefix {
		return 0, nil, nil, fmt.Errorf("password hash is not %s$<iterations>$<salt>$<key>", hashPrefix)
	}
	iter, err = strconv.Atoi(f[1])
	if err != nil || iter < 1000 || iter > 10_000_000 {
		return 0, nil, nil, fmt.Errorf("password hash: iterations %q outside 1000..10000000", f[1])
	}
	enc := base64.RawStdEncoding
	if salt, err = enc.DecodeString(f[2]); err != nil || len(salt) < 8 {
		return 0, nil, nil, errors.New("password hash: salt is not base64 of at least 8 bytes")
	}
	if key, err = enc.DecodeString(f[3]); err != nil || len(key) != sha256.Size {
		return 0, nil, nil, errors.New("password hash: key is not base64 of 32 bytes")
	}
	return iter, salt, key, nil
}

// Verify reports whether password matches the account's hash, in time that
// does not depend on where they differ.
func (a Account) Verify(password string) bool {
	iter, salt, key, err := parseHash(a.Hash)
	if err != nil {
		return false
	}
	got, err := pbkdf2.Key(sha256.New, password, salt, iter, sha256.Size)
	return err == nil && hmac.Equal(got, key)
}

// NewPassword returns a random password for a unit's label: 24 characters of
// an alphabet without look-alikes (l/1, O/0), 5 bits each, grouped by 4.
func NewPassword() (string, error) {
	const alphabet = "abcdefghijkmnpqrstuvwxyz23456789" // 32 symbols
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("unit: password: %w", err)
	}
	var s strings.Builder
	for i, c := range b {
		if i > 0 && i%4 == 0 {
			s.WriteByte('-')
		}
		s.WriteByte(alphabet[c&31])
	}
	return s.String(), nil
}
