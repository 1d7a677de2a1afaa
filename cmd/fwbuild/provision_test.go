package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/fwbuild/fwbuild/contract/unit"
)

// TestProvisionCommand: qemu-q35's unit region of a chip image gets a
// record whose hash matches the printed password; a second run is refused
// with exit 1 naming the unit; usage mistakes exit 2.
func TestProvisionCommand(t *testing.T) {
	img := filepath.Join(t.TempDir(), "unit.bin")
	if err := os.WriteFile(img, bytes.Repeat([]byte{0xff}, 32<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out := runIn(t, context.Background(), t.TempDir(), "provision", "--board", "qemu-q35", "--serial", "SN-7", "--image", img)
	m := regexp.MustCompile(`(?m)^unit SN-7 \(qemu-q35\): user admin password (\S+) tls-fingerprint unknown until first boot`).FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("exit %d, output:\n%s", code, out)
	}
	chip, _ := os.ReadFile(img)
	r, err := unit.Parse(chip[0xA00000:0xA10000])
	if err != nil || r.Serial != "SN-7" || r.Board != "qemu-q35" || !r.Accounts[0].Verify(m[1]) {
		t.Fatalf("record %+v, %v", r, err)
	}
	code, out = runIn(t, context.Background(), t.TempDir(), "provision", "--board", "qemu-q35", "--serial", "SN-8", "--image", img)
	if code != 1 || !strings.Contains(out, "already holds unit SN-7 of board qemu-q35 (accounts: admin): nothing written; pass --force") {
		t.Errorf("second run: exit %d, output:\n%s", code, out)
	}
	code, out = runIn(t, context.Background(), t.TempDir(), "--json", "provision", "--board", "qemu-q35", "--serial", "SN-8", "--image", img, "--force", "--user", "ops")
	var j struct {
		Serial, User, Password string
		TLSFingerprint         *string `json:"tls_fingerprint"`
	}
	if code != 0 || json.Unmarshal([]byte(out[:strings.LastIndex(out, "}")+1]), &j) != nil || j.Serial != "SN-8" || j.User != "ops" || j.Password == "" || j.Password == m[1] {
		t.Errorf("--force --json: exit %d, output:\n%s", code, out)
	}
	for _, args := range [][]string{
		{"provision", "--board", "qemu-q35", "--image", img},
		{"provision", "--board", "qemu-q35", "--serial", "S"},
		{"provision", "--board", "qemu-q35", "--serial", "S", "--image", img, "--programmer", "internal"},
	} {
		if code, out := runIn(t, context.Background(), t.TempDir(), args...); code != 2 {
			t.Errorf("%q: exit %d, want 2:\n%s", args, code, out)
		}
	}
}
