package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fwbuild keys makes a key set once and never overwrites it; a Secure Boot
// board is refused without keys, and with a broken key set, before the
// first stage runs (nothing is written to --out).
func TestKeysCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	if code, out, errs := runCLI(t, "keys", "--dir", dir); code != 0 || !strings.Contains(out, "created PK, KEK and db") {
		t.Fatalf("keys: exit %d\n%s%s", code, out, errs)
	}
	for _, f := range []string{"PK.key", "PK.crt", "KEK.key", "KEK.crt", "db.key", "db.crt"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
	if code, _, errs := runCLI(t, "keys", "--dir", dir); code != 1 || !strings.Contains(errs, "never overwrites") {
		t.Errorf("second keys: exit %d, %s", code, errs)
	}
	if code, _, errs := runCLI(t, "keys"); code != 2 || !strings.Contains(errs, "--dir is required") {
		t.Errorf("keys without --dir: exit %d, %s", code, errs)
	}

	t.Setenv("FWBUILD_KEYS", "")
	out := filepath.Join(t.TempDir(), "out")
	if code, _, errs := runCLI(t, "build", "--board", "qemu-q35-secboot", "--out", out); code != 1 || !strings.Contains(errs, "give them with --keys DIR") {
		t.Errorf("secboot board without keys: exit %d, %s", code, errs)
	}
	os.WriteFile(filepath.Join(dir, "db.crt"), []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o644)
	if code, _, errs := runCLI(t, "build", "--board", "qemu-q35", "--out", out, "--keys", dir); code != 1 || !strings.Contains(errs, filepath.Join(dir, "db.crt")) {
		t.Errorf("broken db.crt: exit %d, %s", code, errs)
	}
	if _, err := os.Stat(out); err == nil {
		if entries, _ := os.ReadDir(out); len(entries) > 0 {
			t.Errorf("a refused build wrote %d entries to --out", len(entries))
		}
	}
}
