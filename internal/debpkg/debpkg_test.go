package debpkg

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/internal/atomicfile"
	"github.com/fwbuild/fwbuild/internal/cache"
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

// fakeApt writes an apt-get that "downloads" a small package after a pause,
// counting its runs; it returns the package and the run count.
func fakeApt(t *testing.T, c *Cache) (Pkg, func() int) {
	t.Helper()
	deb := makeDeb(t, []*tar.Header{{Name: "./usr/share/fake", Typeflag: tar.TypeReg, Mode: 0o644, Size: 4}}, []string{"fake"})
	return aptServe(t, c, deb, "1:1.0", 300*time.Millisecond)
}

// aptServe writes an apt-get for c that "downloads" deb as fwbuild-fake at
// version (as apt names the file: ':' is %3a) after delay, counting its
// runs; it returns the package pinned to deb's hash and the run count.
func aptServe(t *testing.T, c *Cache, deb []byte, version string, delay time.Duration) (Pkg, func() int) {
	t.Helper()
	sum := sha256.Sum256(deb)
	p := Pkg{Name: "fwbuild-fake", Version: version, SHA256: hex.EncodeToString(sum[:]), Origin: "board test, component fake"}
	dir := t.TempDir()
	src := filepath.Join(dir, "payload.deb")
	if err := os.WriteFile(src, deb, 0o644); err != nil {
		t.Fatal(err)
	}
	runs := filepath.Join(dir, "runs")
	script := fmt.Sprintf("#!/bin/sh\necho \"$*\" >> %s\nsleep %.3f\ncp %s ./fwbuild-fake_%s_all.deb\n",
		runs, delay.Seconds(), src, strings.ReplaceAll(version, ":", "%3a"))
	c.AptGet = filepath.Join(dir, "apt-get")
	if err := os.WriteFile(c.AptGet, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p, func() int {
		b, _ := os.ReadFile(runs)
		return strings.Count(string(b), "\n")
	}
}

// Two fetches of one package at once: one downloads and unpacks, the other
// waits and finds its result; a package listed twice is fetched once.
func TestFetchConcurrentDownloadsOnce(t *testing.T) {
	dir := t.TempDir()
	c := &Cache{Dir: dir}
	p, runs := fakeApt(t, c)
	var wg sync.WaitGroup
	var got [2][]Fetched
	var errs [2]error
	for i := range got {
		wg.Go(func() { got[i], errs[i] = c.Fetch(context.Background(), []Pkg{p, p}) })
	}
	wg.Wait()
	downloads := 0
	for i := range got {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		for _, f := range got[i] {
			if f.Downloaded {
				downloads++
			}
			if b, err := os.ReadFile(f.Path("usr/share/fake")); err != nil || string(b) != "fake" {
				t.Errorf("unpacked file: %q, %v", b, err)
			}
		}
	}
	if downloads != 1 || runs() != 1 {
		t.Errorf("%d results downloaded, apt-get ran %d times; want 1 and 1", downloads, runs())
	}
	for sub, want := range map[string]string{
		"debs": p.SHA256 + ".deb " + p.SHA256 + ".deb.lock",
		"pkgs": p.SHA256 + " " + p.SHA256 + ".lock",
	} {
		ents, _ := os.ReadDir(filepath.Join(dir, sub))
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		if strings.Join(names, " ") != want {
			t.Errorf("%s/ holds %v, want %s", sub, names, want)
		}
	}
	if sum, _, err := atomicfile.HashFile(got[0][0].Deb); err != nil || sum != p.SHA256 {
		t.Errorf("cached .deb: %s, %v", sum, err)
	}
}

// Ctrl-C must end a wait for another fwbuild fetching the same package.
func TestFetchWaitEndsOnCancel(t *testing.T) {
	dir := t.TempDir()
	c := &Cache{Dir: dir}
	p, runs := fakeApt(t, c)
	os.MkdirAll(filepath.Join(dir, "pkgs"), 0o755)
	unlock, err := cache.Lock(context.Background(), filepath.Join(dir, "pkgs", p.SHA256+".lock"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = c.Fetch(ctx, []Pkg{p})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), p.String()) {
		t.Errorf("err = %v, want context.DeadlineExceeded naming %s", err, p)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Fetch returned %s after a 200ms deadline", d)
	}
	if runs() != 0 {
		t.Error("apt-get ran without the lock")
	}
}
