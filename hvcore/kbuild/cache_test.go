package kbuild

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fwbuild/fwbuild/internal/cache"
)

// A cached kernel whose bytes changed is built again, with a message naming
// the entry, and never returned; one an older fwbuild left without a
// manifest is recorded, not rebuilt.
func TestBuildRebuildsDamagedKernel(t *testing.T) {
	s := miniSpec(t, "CONFIG_64BIT=y\n")
	dir := t.TempDir()
	r1, err := Build(context.Background(), dir, s, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	good, _ := os.ReadFile(r1.BzImage)
	// Flip a bit in place, as a disk would.
	bad := bytes.Clone(good)
	bad[len(bad)/2] ^= 1
	f, _ := os.OpenFile(r1.BzImage, os.O_WRONLY, 0)
	f.Write(bad)
	f.Close()

	var msgs []string
	r2, err := Build(context.Background(), dir, s, func(m string) { msgs = append(msgs, m) })
	if err != nil {
		t.Fatal(err)
	}
	if r2.Cached {
		t.Error("damaged kernel came from the cache")
	}
	if got, _ := os.ReadFile(r2.BzImage); !bytes.Equal(got, good) {
		t.Error("rebuilt bzImage differs from the first build")
	}
	if all := strings.Join(msgs, "\n"); !strings.Contains(all, "damaged") || !strings.Contains(all, filepath.Dir(r1.BzImage)) {
		t.Errorf("no message naming the damaged entry:\n%s", all)
	}

	// An older fwbuild's entry: no manifest. Adopted, make does not run.
	os.Remove(filepath.Join(filepath.Dir(r2.BzImage), cache.ManifestName))
	runs := countingMake(t, true)
	r3, err := Build(context.Background(), dir, s, func(string) {})
	if err != nil || !r3.Cached || runs() != 0 {
		t.Fatalf("unrecorded entry: %+v, %v, make ran %d times", r3, err, runs())
	}
	if _, err := cache.VerifyEntry(filepath.Dir(r3.BzImage), cache.Full); err != nil {
		t.Errorf("adopted entry: %v", err)
	}
	// The source tree's manifest is beside it: its top level is one directory.
	srcs, _ := filepath.Glob(filepath.Join(dir, "src", "*"+cache.ManifestName))
	if len(srcs) != 1 {
		t.Errorf("source manifests: %v", srcs)
	}
}
