package boardcfg

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoad: any bytes as a profile give a board or an error, never a panic,
// and every error carries the file name.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(valid))
	if b, err := os.ReadFile("../boards/qemu-q35.yaml"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("extends: x\n"))
	f.Add([]byte("name: [\n"))
	f.Add([]byte("a: &x 1\nb: *x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		p := filepath.Join(dir, "f.yaml")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		b, err := Load(p, dir)
		if err == nil && b == nil {
			t.Fatal("nil board without error")
		}
		if err != nil && !strings.Contains(err.Error(), "f.yaml") {
			t.Fatalf("error does not name the file: %v", err)
		}
	})
}
