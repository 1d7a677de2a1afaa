package release

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/contract/update"
)

// TestCabinetFwupd has fwupd's own tool parse the cabinet and its metainfo.
func TestCabinetFwupd(t *testing.T) {
	tool, err := exec.LookPath("fwupdtool")
	if err != nil {
		t.Fatal("fwupdtool not installed: run `go run ./cmd/fwbuild doctor --fix` (Debian package fwupd)")
	}
	v, _ := update.ParseVersion("1.4.2+3f2a9c1e")
	c := Cabinet{Board: "qemu-q35", Description: "QEMU q35 virtual board", Version: v,
		GUIDs: []string{"6f2a1c1e-3b8d-4e55-9a41-66776275696c"}, Notes: []string{"Xen 4.17.7 security fixes."},
		Date: time.Unix(1704067200, 0), Artefact: []byte("FWUPDATE not a real artefact, fwupd does not open it"), ArtefactName: "qemu-q35.fwu"}
	cab, err := c.Build()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "qemu-q35-1.4.2.cab")
	if err := os.WriteFile(p, cab, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tool, "get-details", p).CombinedOutput()
	if err != nil {
		t.Fatalf("fwupdtool get-details: %v\n%s", err, out)
	}
	sum := sha256.Sum256(cab) // fwupd shows the archive's checksum
	for _, want := range []string{"New version:      1.4.2", "GUID:               6f2a1c1e-3b8d-4e55-9a41-66776275696c",
		"Xen 4.17.7 security fixes.", "Checksum:         " + hex.EncodeToString(sum[:])} {
		if !strings.Contains(string(out), want) {
			t.Errorf("fwupdtool's details lack %q:\n%s", want, out)
		}
	}
	// fwupd refuses a cabinet whose firmware does not match the metainfo's checksum.
	c2 := c
	c2.Artefact = append([]byte{}, c.Artefact...)
	cab2, _ := c2.Build()
	i := strings.Index(string(cab2), "FWUPDATE not")
	cab2[i+len("FWUPDATE not")] = '!'
	os.WriteFile(p, cab2, 0o644)
	if out, err := exec.Command(tool, "get-details", p).CombinedOutput(); err == nil {
		t.Errorf("fwupdtool accepted a cabinet whose firmware does not match its checksum:\n%s", out)
	}
}
