package unit

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func record(t *testing.T, password string) Record {
	t.Helper()
	h, err := PasswordHash(password)
	if err != nil {
		t.Fatal(err)
	}
	return Record{Version: 1, Board: "qemu-q35", Serial: "SN0001", Accounts: []Account{{User: "admin", Role: RoleAdministrator, Hash: h}}}
}

func TestRoundTripAndVerify(t *testing.T) {
	r := record(t, "correct horse")
	b, err := Encode(r)
	if err != nil {
		t.Fatal(err)
	}
	region := append(b, bytes.Repeat([]byte{0xff}, 4096)...)
	got, err := Parse(region)
	if err != nil {
		t.Fatal(err)
	}
	if got.Serial != "SN0001" || len(got.Accounts) != 1 {
		t.Fatalf("parsed %+v", got)
	}
	if !got.Accounts[0].Verify("correct horse") {
		t.Error("right password refused")
	}
	if got.Accounts[0].Verify("correct horse ") || got.Accounts[0].Verify("") {
		t.Error("wrong password accepted")
	}
}

func TestParseRefuses(t *testing.T) {
	good, err := Encode(record(t, "pw"))
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(good)
	flipped[len(flipped)-3] ^= 1
	for name, c := range map[string]struct {
		region []byte
		want   string
	}{
		"erased":    {bytes.Repeat([]byte{0xff}, 4096), "no unit record"},
		"zeroed":    {make([]byte, 4096), "no unit record"},
		"foreign":   {append([]byte("FWGUESTS"), make([]byte, 100)...), "not a unit record"},
		"truncated": {good[:len(good)-10], "does not fit"},
		"flipped":   {flipped, "SHA-256"},
		"short":     {good[:20], "shorter"},
	} {
		_, err := Parse(c.region)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", name, err, c.want)
		}
	}
	if _, err := Parse(bytes.Repeat([]byte{0xff}, 64)); !errors.Is(err, ErrBlank) {
		t.Errorf("erased region: err = %v, want ErrBlank", err)
	}
}

func TestValidate(t *testing.T) {
	r := record(t, "pw")
	bad := r
	bad.Accounts = append([]Account{}, r.Accounts[0], r.Accounts[0])
	if _, err := Encode(bad); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("duplicate user: %v", err)
	}
	bad = r
	bad.Accounts = []Account{{User: "x", Role: "root", Hash: r.Accounts[0].Hash}}
	if _, err := Encode(bad); err == nil || !strings.Contains(err.Error(), "role") {
		t.Errorf("bad role: %v", err)
	}
	bad.Accounts = []Account{{User: "x", Role: RoleReadOnly, Hash: "plain"}}
	if _, err := Encode(bad); err == nil || !strings.Contains(err.Error(), "hash") {
		t.Errorf("plain password: %v", err)
	}
}

func TestNewPassword(t *testing.T) {
	a, err := NewPassword()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewPassword()
	if a == b || len(a) != 29 || strings.ContainsAny(a, "l1O0") {
		t.Errorf("passwords %q %q", a, b)
	}
}
