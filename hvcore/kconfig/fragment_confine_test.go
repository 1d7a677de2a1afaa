package kconfig

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A fragment or an #include that leaves the boards directory, names a
// device or FIFO, or is huge is refused before it is read, and no error
// shows the content of the file refused.
func TestParseFragmentConfined(t *testing.T) {
	top := t.TempDir()
	root := filepath.Join(top, "boards")
	secret := writeFile(t, filepath.Join(top, "secret"), "root:SECRET-HASH:19000:0:99999:7:::\n")
	writeFile(t, filepath.Join(root, "fragments", "ok.config"), "CONFIG_A=y\n")
	if err := os.Symlink(secret, filepath.Join(root, "link.config")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(top, filepath.Join(root, "up")); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(root, "fifo.config")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "big.config"), strings.Repeat("# padding\n", MaxFragmentFile/10+1))
	for _, c := range []struct {
		name, text string
		want       string
	}{
		{"include outside by ..", `#include "../secret"`, "is outside " + root},
		{"include outside absolute", `#include "` + secret + `"`, "is outside " + root},
		{"include through symlink", `#include "link.config"`, "is outside " + root},
		{"include through directory symlink", `#include "up/secret"`, "is outside " + root},
		{"include /dev/zero", `#include "/dev/zero"`, "is outside " + root},
		{"include a FIFO", `#include "fifo.config"`, "is not a regular file"},
		{"include a huge file", `#include "big.config"`, "bytes: a fragment file has at most 1048576"},
		{"include inside", `#include "fragments/ok.config"` + "\nXEN=y", `f.config:2: not a config line "XEN=y"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := writeFile(t, filepath.Join(root, "f.config"), c.text+"\n")
			_, err := ParseFragmentIn(p, root)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
			if strings.Contains(err.Error(), "SECRET") {
				t.Fatalf("error shows the refused file's content: %v", err)
			}
		})
	}
	// The top fragment itself is confined too.
	if _, err := ParseFragmentIn(filepath.Join(root, "link.config"), root); err == nil || strings.Contains(err.Error(), "SECRET") || !strings.Contains(err.Error(), "is outside") {
		t.Errorf("top fragment through a symlink: %v", err)
	}
	// Without a root, devices and huge files are still refused.
	for _, inc := range []string{"/dev/zero", fifo, filepath.Join(root, "big.config")} {
		p := writeFile(t, filepath.Join(t.TempDir(), "f.config"), `#include "`+inc+`"`+"\n")
		if _, err := ParseFragment(p); err == nil {
			t.Errorf("ParseFragment read %s", inc)
		}
	}
}

// Includes that fan out (each file including the next twice) stop at a
// bound instead of re-reading files 2^n times.
func TestParseFragmentIncludeFanOut(t *testing.T) {
	dir := t.TempDir()
	for i := 0; i < 30; i++ {
		writeFile(t, filepath.Join(dir, fmt.Sprintf("f%d.config", i)), fmt.Sprintf("CONFIG_A%d=y\n#include \"f%d.config\"\n#include \"f%d.config\"\n", i, i+1, i+1))
	}
	writeFile(t, filepath.Join(dir, "f30.config"), "CONFIG_END=y\n")
	_, err := ParseFragmentIn(filepath.Join(dir, "f0.config"), dir)
	if err == nil || !strings.Contains(err.Error(), "more than 256 fragment files read") {
		t.Fatalf("err = %v", err)
	}
}

func TestParseFragmentFanOutReportedOnce(t *testing.T) {
	dir := t.TempDir()
	for i := 0; i < 12; i++ {
		writeFile(t, filepath.Join(dir, fmt.Sprintf("f%d.config", i)), fmt.Sprintf("#include \"f%d.config\"\n#include \"f%d.config\"\n", i+1, i+1))
	}
	writeFile(t, filepath.Join(dir, "f12.config"), "CONFIG_END=y\n")
	_, err := ParseFragment(filepath.Join(dir, "f0.config"))
	if err == nil || strings.Count(err.Error(), "fragment files read") != 1 {
		t.Fatalf("err = %v, want one report of the bound", err)
	}
}
