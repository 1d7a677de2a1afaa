// Package testdeps gives tests the real components of the qemu-q35 board,
// fetched through the same cache the CLI uses, so tests run against what
// ships and a second run downloads nothing.
package testdeps

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/fwbuild/fwbuild/boardcfg"
	"github.com/fwbuild/fwbuild/internal/cache"
	"github.com/fwbuild/fwbuild/internal/debpkg"
)

// RepoRoot is the directory holding go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("testdeps: no go.mod above the test's directory")
		}
		dir = parent
	}
}

// Board loads boards/<name>.yaml.
func Board(t testing.TB, name string) *boardcfg.Board {
	t.Helper()
	boards := filepath.Join(RepoRoot(t), "boards")
	b, err := boardcfg.Load(filepath.Join(boards, name+".yaml"), boards)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// CacheDir is the shared fwbuild cache (FWBUILD_CACHE or the user cache).
func CacheDir(t testing.TB) string {
	t.Helper()
	d, err := cache.DefaultDir()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Root returns the unpacked root of a qemu-q35 component, fetching it if needed.
func Root(t testing.TB, component string) string {
	t.Helper()
	b := Board(t, "qemu-q35")
	c, ok := b.Component(component)
	if !ok {
		t.Fatalf("testdeps: qemu-q35 has no component %q", component)
	}
	dc := &debpkg.Cache{Dir: CacheDir(t)}
	f, err := dc.Fetch(context.Background(), []debpkg.Pkg{{Name: c.Package, Version: c.Version, SHA256: string(c.SHA256), Origin: "test of board qemu-q35, component " + component}})
	if err != nil {
		t.Fatalf("testdeps: %v (tests need apt-get and `apt-get update` on a Debian 12 host)", err)
	}
	return f[0].Root
}

// File returns the path of a component's file role, e.g. File(t, "xen", "efi").
func File(t testing.TB, component, role string) string {
	t.Helper()
	b := Board(t, "qemu-q35")
	c, _ := b.Component(component)
	rel, ok := c.Files[role]
	if !ok {
		t.Fatalf("testdeps: component %q has no file role %q", component, role)
	}
	return filepath.Join(Root(t, component), rel)
}

// FirmwareDir holds the third-party firmware images of the structural tests
// (testdata/firmware, or $FWBUILD_TEST_FIRMWARE).
func FirmwareDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("FWBUILD_TEST_FIRMWARE"); d != "" {
		return d
	}
	return filepath.Join(RepoRoot(t), "testdata", "firmware")
}
