package remote

import (
	"strings"
	"testing"

	rf "github.com/fwbuild/fwbuild/contract/redfish"
)

func TestParseDisk(t *testing.T) {
	for in, want := range map[string]rf.CreateDisk{
		"root:1GiB:debian": {Name: "root", SizeBytes: 1 << 30, From: "debian"},
		"data:4096":        {Name: "data", SizeBytes: 4096},
		"scratch:64MiB":    {Name: "scratch", SizeBytes: 64 << 20},
	} {
		if got, err := ParseDisk(in); err != nil || got != want {
			t.Errorf("ParseDisk(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "root", ":1GiB", "root:1GB", "root:1GiB:debian:x", "root:99999999999TiB"} {
		if _, err := ParseDisk(bad); err == nil {
			t.Errorf("ParseDisk(%q): no error", bad)
		}
	}
}

func TestParseFingerprint(t *testing.T) {
	hex := strings.Repeat("ab", 32)
	colons := strings.TrimSuffix(strings.Repeat("AB:", 32), ":")
	for _, in := range []string{hex, "SHA256:" + hex, "sha256=" + hex, colons} {
		if b, err := ParseFingerprint(in); err != nil || len(b) != 32 || b[0] != 0xab {
			t.Errorf("ParseFingerprint(%q) = %x, %v", in, b, err)
		}
	}
	for _, bad := range []string{"", "abc", hex[:62], hex + "ab", strings.Repeat("zz", 32)} {
		if _, err := ParseFingerprint(bad); err == nil || !strings.Contains(err.Error(), "64 hex digits") {
			t.Errorf("ParseFingerprint(%q): %v", bad, err)
		}
	}
	if _, err := New(Options{Host: "h", User: "u", Password: "p", Fingerprint: "nope"}); err == nil {
		t.Error("New with a bad fingerprint: no error")
	}
	if _, err := New(Options{Host: "h", User: "u"}); err == nil || !strings.Contains(err.Error(), "password") {
		t.Errorf("New without a password: %v", err)
	}
}
