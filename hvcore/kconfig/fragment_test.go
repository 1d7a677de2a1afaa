package kconfig

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, path, text string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestParseFragmentIncludes(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "fragments", "common.config"), `# shared
CONFIG_64BIT=y
CONFIG_SLOB=y
# CONFIG_IPV6 is not set
CONFIG_CMDLINE="console=hvc0 quiet"
CONFIG_NR_CPUS=64
`)
	board := writeFile(t, filepath.Join(dir, "board", "kernel.config"), `#include "../fragments/common.config"

   # indented comment
CONFIG_SLUB=y
CONFIG_SLOB=n
CONFIG_LOG_BUF_SHIFT=0x11
CONFIG_NR_CPUS=64
`)
	f, err := ParseFragment(board)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Files) != 2 || f.Files[0] != board || f.Files[1] != filepath.Join(dir, "board", "../fragments/common.config") {
		t.Errorf("Files = %q", f.Files)
	}
	// CONFIG_SLOB set again moves to the end (merge_config.sh order); CONFIG_NR_CPUS set
	// again to the same value moves too but is no override.
	want := `CONFIG_64BIT=y
# CONFIG_IPV6 is not set
CONFIG_CMDLINE="console=hvc0 quiet"
CONFIG_SLUB=y
# CONFIG_SLOB is not set
CONFIG_LOG_BUF_SHIFT=0x11
CONFIG_NR_CPUS=64
`
	if got := string(f.Text()); got != want {
		t.Errorf("Text:\n%s\nwant:\n%s", got, want)
	}
	for _, o := range f.Options {
		switch o.Name {
		case "CONFIG_IPV6":
			if o.File != f.Files[1] || o.Line != 4 {
				t.Errorf("CONFIG_IPV6 at %s, want %s:4", o.Pos(), f.Files[1])
			}
		case "CONFIG_SLOB":
			if o.File != board || o.Line != 5 || o.Value != "n" {
				t.Errorf("CONFIG_SLOB = %+v, want n at %s:5", o, board)
			}
		}
	}
	if len(f.Overrides) != 1 || !strings.Contains(f.Overrides[0], board+":5: # CONFIG_SLOB is not set overrides "+f.Files[1]+":3") {
		t.Errorf("Overrides = %q", f.Overrides)
	}
}

func TestParseFragmentIncludeForms(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.config"), "CONFIG_A=y\n")
	writeFile(t, filepath.Join(dir, "b.config"), "CONFIG_B=y\n")
	writeFile(t, filepath.Join(dir, "c.config"), "CONFIG_C=y\n")
	top := writeFile(t, filepath.Join(dir, "top.config"), "#include \"a.config\"\n#include <b.config>\n#include c.config\n# include is only a directive without the space\n")
	f, err := ParseFragment(top)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(f.Text()); got != "CONFIG_A=y\nCONFIG_B=y\nCONFIG_C=y\n" {
		t.Errorf("Text = %q", got)
	}
}

func TestParseFragmentErrors(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       []string // substrings of the error
	}{
		{"bad value", "CONFIG_A=y\nCONFIG_B=maybe\n", []string{"f.config:2:", `bad value "maybe" for CONFIG_B`}},
		{"no prefix", "XEN=y\n", []string{"f.config:1:", `not a config line "XEN=y"`}},
		{"spaces", "\nCONFIG_A = y\n", []string{"f.config:2:", "not a config line"}},
		{"trailing comment", "CONFIG_A=y # why\n", []string{"f.config:1:", "bad value"}},
		{"unterminated string", "CONFIG_CMDLINE=\"console=hvc0\n", []string{"f.config:1:", "bad value"}},
		{"typo unset", "#CONFIG_A is not set\n", []string{"f.config:1:", "malformed line"}},
		{"unset with value", "# CONFIG_A=y\n", []string{"f.config:1:", "malformed line"}},
		{"empty include", "\n\n#include\n", []string{"f.config:3:", "#include without a file name"}},
		{"missing include", "#include \"nope.config\"\n", []string{"f.config:1:", "nope.config", "no such file"}},
		{"two errors", "CONFIG_A=1.5\nfoo\n", []string{"f.config:1:", "f.config:2:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeFile(t, filepath.Join(t.TempDir(), "f.config"), tc.text)
			_, err := ParseFragment(p)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestParseFragmentIncludeCycle(t *testing.T) {
	dir := t.TempDir()
	a := writeFile(t, filepath.Join(dir, "a.config"), "CONFIG_A=y\n#include \"b.config\"\n")
	writeFile(t, filepath.Join(dir, "b.config"), "\n#include \"a.config\"\n")
	_, err := ParseFragment(a)
	if err == nil || !strings.Contains(err.Error(), "b.config:2: include cycle") {
		t.Fatalf("err = %v, want an include cycle at b.config:2", err)
	}
}

func TestCheckDropped(t *testing.T) {
	p := writeFile(t, filepath.Join(t.TempDir(), "f.config"), `CONFIG_XEN=y
CONFIG_KVM_AMD=y
CONFIG_E1000E=m
# CONFIG_IPV6 is not set
CONFIG_CMDLINE="console=hvc0"
CONFIG_NR_CPUS=0x40
CONFIG_VT=n
CONFIG_ABSENT=y
`)
	f, err := ParseFragment(p)
	if err != nil {
		t.Fatal(err)
	}
	final := `#
# Automatically generated file; DO NOT EDIT.
CONFIG_XEN=y
# CONFIG_KVM_AMD is not set
CONFIG_E1000E=y
CONFIG_IPV6=y
CONFIG_CMDLINE="console=ttyS0"
CONFIG_NR_CPUS=64
`
	err = f.Check([]byte(final))
	var de *DroppedError
	if !errors.As(err, &de) {
		t.Fatalf("err = %v, want *DroppedError", err)
	}
	got := map[string]string{}
	for _, d := range de.Dropped {
		got[d.Name] = d.Pos() + " " + d.Got
	}
	want := map[string]string{
		"CONFIG_KVM_AMD": p + ":2 n",
		"CONFIG_E1000E":  p + ":3 y",
		"CONFIG_IPV6":    p + ":4 y",
		"CONFIG_CMDLINE": p + `:5 "console=ttyS0"`,
		"CONFIG_ABSENT":  p + ":8 n",
	}
	if len(got) != len(want) {
		t.Errorf("dropped = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %q, want %q", k, got[k], v)
		}
	}
	msg := err.Error()
	for _, s := range []string{p + ":2: CONFIG_KVM_AMD=y requested, final .config has not set", p + ":8: CONFIG_ABSENT=y"} {
		if !strings.Contains(msg, s) {
			t.Errorf("message %q lacks %q", msg, s)
		}
	}
	// The same fragment against a config that has everything passes.
	ok := "CONFIG_XEN=y\nCONFIG_KVM_AMD=y\nCONFIG_E1000E=m\nCONFIG_CMDLINE=\"console=hvc0\"\nCONFIG_NR_CPUS=64\nCONFIG_ABSENT=y\n"
	if err := f.Check([]byte(ok)); err != nil {
		t.Errorf("complete config: %v", err)
	}
}

func TestMerge(t *testing.T) {
	p := writeFile(t, filepath.Join(t.TempDir(), "f.config"), "CONFIG_64BIT=y\n# CONFIG_SLOB is not set\nCONFIG_SLUB=y\n")
	f, err := ParseFragment(p)
	if err != nil {
		t.Fatal(err)
	}
	base := "# base\n# CONFIG_64BIT is not set\nCONFIG_SLOB=y\n# CONFIG_SLUB is not set\nCONFIG_PRINTK=y\nCONFIG_64BIT_EXTRA=y"
	want := "# base\nCONFIG_PRINTK=y\nCONFIG_64BIT_EXTRA=y\nCONFIG_64BIT=y\n# CONFIG_SLOB is not set\nCONFIG_SLUB=y\n"
	if got := string(f.Merge([]byte(base))); got != want {
		t.Errorf("Merge:\n%s\nwant:\n%s", got, want)
	}
}
