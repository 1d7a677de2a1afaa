package debpkg

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// makeDeb builds a .deb (ar: debian-binary, control.tar.gz, data.tar.gz)
// whose data archive holds the given tar entries.
func makeDeb(t testing.TB, entries []*tar.Header, bodies []string) []byte {
	t.Helper()
	tgz := func(hs []*tar.Header, bs []string) []byte {
		var buf bytes.Buffer
		gz := gzip.NewWriter(&buf)
		tw := tar.NewWriter(gz)
		for i, h := range hs {
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
			tw.Write([]byte(bs[i]))
		}
		tw.Close()
		gz.Close()
		return buf.Bytes()
	}
	const ctl = "Package: fwbuild-t\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@example.org>\nDescription: test\n"
	control := tgz([]*tar.Header{{Name: "./control", Mode: 0o644, Size: int64(len(ctl)), Typeflag: tar.TypeReg}}, []string{ctl})
	data := tgz(entries, bodies)
	var ar bytes.Buffer
	ar.WriteString("!<arch>\n")
	member := func(name string, b []byte) {
		fmt.Fprintf(&ar, "%-16s%-12d%-6d%-6d%-8s%-10d`\n", name, 0, 0, 0, "100644", len(b))
		ar.Write(b)
		if len(b)%2 == 1 {
			ar.WriteByte('\n')
		}
	}
	member("debian-binary", []byte("2.0\n"))
	member("control.tar.gz", control)
	member("data.tar.gz", data)
	return ar.Bytes()
}

func TestUnpackSynthetic(t *testing.T) {
	deb := makeDeb(t, []*tar.Header{
		{Name: "./usr/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "./usr/bin/tool", Typeflag: tar.TypeReg, Mode: 0o755, Size: 5},
		{Name: "./usr/bin/alias", Typeflag: tar.TypeSymlink, Linkname: "tool"},
		{Name: "./usr/bin/hard", Typeflag: tar.TypeLink, Linkname: "./usr/bin/tool"},
	}, []string{"", "hello", "", ""})
	dir := t.TempDir()
	p := filepath.Join(dir, "t.deb")
	os.WriteFile(p, deb, 0o644)
	dest := t.TempDir()
	if err := Unpack(p, dest); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dest, "usr/bin/hard")); string(b) != "hello" {
		t.Errorf("hard link content %q", b)
	}
	if st, _ := os.Stat(filepath.Join(dest, "usr/bin/tool")); st == nil || st.Mode().Perm()&0o100 == 0 {
		t.Errorf("executable bit lost: %v", st)
	}
	if l, _ := os.Readlink(filepath.Join(dest, "usr/bin/alias")); l != "tool" {
		t.Errorf("symlink = %q", l)
	}
}

func TestUnpackRefusesEscapes(t *testing.T) {
	for _, h := range []*tar.Header{
		{Name: "../evil", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1},
		{Name: "/etc/evil", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1},
		{Name: "./x", Typeflag: tar.TypeLink, Linkname: "../../etc/passwd"},
	} {
		deb := makeDeb(t, []*tar.Header{h}, []string{strings.Repeat("x", int(h.Size))})
		p := filepath.Join(t.TempDir(), "t.deb")
		os.WriteFile(p, deb, 0o644)
		parent := t.TempDir()
		dest := filepath.Join(parent, "root")
		os.Mkdir(dest, 0o755)
		if err := Unpack(p, dest); err == nil || !strings.Contains(err.Error(), "escapes") {
			t.Errorf("%s: err = %v, want an escape error", h.Name, err)
		}
		if _, err := os.Stat(filepath.Join(parent, "evil")); err == nil {
			t.Errorf("%s: wrote outside the destination", h.Name)
		}
	}
}

// FuzzUnpack: arbitrary bytes as a .deb must give an error or a tree inside
// the destination, never a panic or a file outside it.
func FuzzUnpack(f *testing.F) {
	f.Add(makeDeb(f, []*tar.Header{{Name: "./a", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1}}, []string{"a"}))
	for _, h := range hostileDebs() {
		f.Add(makeDeb(f, h.entries("/tmp/fwbuild-fuzz-elsewhere"), h.bodies))
	}
	f.Add([]byte("!<arch>\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		p := filepath.Join(parent, "f.deb")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		dest := filepath.Join(parent, "root")
		os.Mkdir(dest, 0o755)
		Unpack(p, dest)
		entries, _ := os.ReadDir(parent)
		for _, e := range entries {
			if e.Name() != "f.deb" && e.Name() != "root" {
				t.Fatalf("unpack wrote %s outside its destination", e.Name())
			}
		}
	})
}
