package debpkg

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// yajl is a small real package of qemu-q35's toolstack.
var yajl = Pkg{Name: "libyajl2", Version: "2.1.0-3+deb12u2", SHA256: "b512a6efbe735e7c731185a1b3ea477ff306f0c3f6aa2970e85b12f01fe8063b", Origin: "test"}

func TestFetchUnpackRealPackage(t *testing.T) {
	c := &Cache{Dir: t.TempDir()}
	got, err := c.Fetch(context.Background(), []Pkg{yajl})
	if err != nil {
		t.Fatal(err)
	}
	if !got[0].Downloaded {
		t.Error("first fetch did not report a download")
	}
	lib := got[0].Path("usr/lib/x86_64-linux-gnu/libyajl.so.2")
	target, err := os.Readlink(lib)
	if err != nil || !strings.HasPrefix(target, "libyajl.so.2.") {
		t.Fatalf("SONAME symlink: %q, %v", target, err)
	}
	data, err := os.ReadFile(lib)
	if err != nil || !bytes.HasPrefix(data, []byte("\x7fELF")) || len(data) < 10000 {
		t.Fatalf("library not unpacked as ELF: %d bytes, %v", len(data), err)
	}
	if st, _ := os.Stat(filepath.Join(got[0].Root, "usr/share/doc/libyajl2/copyright")); st == nil || st.Size() == 0 {
		t.Error("copyright file missing")
	}

	// A second fetch is a cache hit: same root, no download, no apt-get needed.
	c.AptGet = "/nonexistent/apt-get"
	again, err := c.Fetch(context.Background(), []Pkg{yajl})
	if err != nil || again[0].Downloaded || again[0].Root != got[0].Root {
		t.Fatalf("second fetch: %+v, %v", again, err)
	}
}

func TestHashMismatchLeavesCacheClean(t *testing.T) {
	dir := t.TempDir()
	c := &Cache{Dir: dir}
	bad := yajl
	bad.SHA256 = strings.Repeat("ab", 32)
	bad.Origin = "board test, component libyajl"
	_, err := c.Fetch(context.Background(), []Pkg{bad})
	var hm *HashMismatchError
	if !errors.As(err, &hm) {
		t.Fatalf("err = %v, want HashMismatchError", err)
	}
	for _, want := range []string{"libyajl2=2.1.0-3+deb12u2", "board test, component libyajl", bad.SHA256, yajl.SHA256} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	var left []string
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() && !strings.HasSuffix(p, ".lock") {
			left = append(left, p)
		}
		return nil
	})
	if len(left) != 0 {
		t.Errorf("cache not clean after mismatch: %v", left)
	}
}

func TestUnknownPackageNamesOrigin(t *testing.T) {
	c := &Cache{Dir: t.TempDir()}
	p := Pkg{Name: "fwbuild-no-such-package", Version: "1.0", SHA256: strings.Repeat("0", 64), Origin: "board qemu-test, component ghost"}
	_, err := c.Fetch(context.Background(), []Pkg{p})
	if err == nil || !strings.Contains(err.Error(), "board qemu-test, component ghost") || !strings.Contains(err.Error(), "fwbuild-no-such-package=1.0") {
		t.Fatalf("err = %v", err)
	}
}

func TestUnpackRejectsNonDeb(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.deb")
	os.WriteFile(p, []byte("!<arch>\nnot really"), 0o644)
	if err := Unpack(p, t.TempDir()); err == nil {
		t.Fatal("Unpack accepted garbage")
	}
}
