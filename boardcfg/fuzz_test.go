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
	// Hardening round 2: hostile profiles (see hostile_test.go).
	edit := func(old, new string) { f.Add([]byte(strings.Replace(valid, old, new, 1))) }
	edit("    package: xen-hypervisor-4.17-amd64", `    package: "-oAcquire::http::Proxy-Auto-Detect"`)
	edit(`    version: "4.17"`, "    version: /path/script")
	edit("      path: vmlinuz", "      source: xen\n      fragment: ../../../../etc/shadow")
	edit("      path: vmlinuz", "      path: ../../dev/zero")
	edit("  memory: 2GiB\n", "  memory: 2GiB\nguests:\n  - {name: g, memory: 0xFFFFFFFFFFF00000, kernel: dom0}\n")
	edit("start: 0x10000, size: 0xFF0000", "start: 0xFFFFFFFFFFFF0000, size: 0x20000")
	edit("  - name: xen\n", "  - name: \"xen\\e[2J\"\n")
	edit("{name: vpd,", "{name: "+strings.Repeat("v", 300)+",")
	edit("    chip_size: 16MiB", "    chip_size: 16EiB")
	// The launcher layout and a firmware image by path (spi_test.go).
	edit(validSPI, launcherSPI)
	edit("    firmware: ovmf:code\n", "    firmware: {path: f.yaml, sha256: "+strings.Repeat("ab", 32)+"}\n    remove: [Shell, 7c04a583-9e3e-4f1c-ad65-e05268d0b4d1]\n")
	f.Add([]byte("extends: f\nname: c\narch: amd64\narch: amd64\n"))
	f.Add([]byte("extends: /etc/passwd\nname: c\n"))
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
