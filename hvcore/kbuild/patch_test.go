package kbuild

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A patched copy changes what the patch says and nothing of the pristine
// tree it is linked from; a patch that does not apply, or that names a path
// outside the tree, is an error naming it.
func TestPatchedTree(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "linux-source-6.1")
	write := func(p, s string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(src, "Makefile"), "all:\n")
	write(filepath.Join(src, "arch/x86/xen/time.c"), "one\ntwo\nthree\n")
	good := filepath.Join(dir, "good.patch")
	write(good, "--- a/arch/x86/xen/time.c\n+++ b/arch/x86/xen/time.c\n@@ -1,3 +1,4 @@\n one\n two\n+two and a half\n three\n")
	dst := filepath.Join(dir, "patched")
	if err := patchedTree(context.Background(), src, dst, []string{good}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "arch/x86/xen/time.c")); string(b) != "one\ntwo\ntwo and a half\nthree\n" {
		t.Errorf("patched file: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(src, "arch/x86/xen/time.c")); string(b) != "one\ntwo\nthree\n" {
		t.Errorf("the pristine tree changed: %q", b)
	}
	a, _ := os.Stat(filepath.Join(src, "Makefile"))
	b, _ := os.Stat(filepath.Join(dst, "Makefile"))
	if a == nil || b == nil || !os.SameFile(a, b) {
		t.Error("an untouched file is not a hard link to the pristine one")
	}

	bad := filepath.Join(dir, "bad.patch")
	write(bad, "--- a/arch/x86/xen/time.c\n+++ b/arch/x86/xen/time.c\n@@ -1,3 +1,4 @@\n uno\n dos\n+tres\n cuatro\n")
	err := patchedTree(context.Background(), src, filepath.Join(dir, "bad"), []string{bad})
	if err == nil || !strings.Contains(err.Error(), "bad.patch does not apply") {
		t.Errorf("a patch that does not apply: %v", err)
	}
	outside := filepath.Join(dir, "outside.patch")
	write(outside, "--- a/../x\n+++ b/../x\n@@ -0,0 +1 @@\n+x\n")
	err = patchedTree(context.Background(), src, filepath.Join(dir, "outside"), []string{outside})
	if err == nil || !strings.Contains(err.Error(), "not a path inside the source tree") {
		t.Errorf("a patch outside the tree: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(src, "arch/x86/xen/time.c")); string(b) != "one\ntwo\nthree\n" {
		t.Errorf("the pristine tree changed: %q", b)
	}
}
