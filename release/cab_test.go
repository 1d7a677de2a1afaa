package release

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestCabinetGcab has gcab (libgcab, what fwupd reads cabinets with) list
// and extract an archive, its checksums verified.
func TestCabinetGcab(t *testing.T) {
	gcab, err := exec.LookPath("gcab")
	if err != nil {
		t.Fatal("gcab not installed: run `go run ./cmd/fwbuild doctor --fix` (Debian package gcab)")
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 5000) // 80000 bytes: three blocks, an odd tail
	files := map[string][]byte{"firmware.bin": append(big, 'x', 'y', 'z'), "a.metainfo.xml": []byte("<component/>\n"), "empty": nil}
	cab, err := cabinet(files, time.Unix(1704067200, 0))
	if err != nil {
		t.Fatal(err)
	}
	again, _ := cabinet(files, time.Unix(1704067200, 0))
	if !bytes.Equal(cab, again) {
		t.Fatal("same files, different cabinets")
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "x.cab")
	if err := os.WriteFile(p, cab, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(gcab, "-l", p).CombinedOutput()
	if err != nil {
		t.Fatalf("gcab -l: %v\n%s", err, out)
	}
	for n := range files {
		if !bytes.Contains(out, []byte(n)) {
			t.Errorf("gcab -l does not list %s:\n%s", n, out)
		}
	}
	x := filepath.Join(dir, "x")
	os.Mkdir(x, 0o755)
	if out, err := exec.Command(gcab, "-x", "-C", x, p).CombinedOutput(); err != nil {
		t.Fatalf("gcab -x: %v\n%s", err, out)
	}
	for n, want := range files {
		got, err := os.ReadFile(filepath.Join(x, n))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s extracted as %d bytes (%v), want %d", n, len(got), err, len(want))
		}
	}
	// A damaged block must be caught by the checksum.
	bad := bytes.Clone(cab)
	bad[len(bad)-5] ^= 0x40
	os.WriteFile(p, bad, 0o644)
	y := filepath.Join(dir, "y")
	os.Mkdir(y, 0o755)
	if out, err := exec.Command(gcab, "-x", "-C", y, p).CombinedOutput(); err == nil {
		t.Errorf("gcab extracted a cabinet with a damaged block:\n%s", out)
	}
}
