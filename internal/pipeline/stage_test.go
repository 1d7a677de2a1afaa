package pipeline

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/internal/cache"
)

// The stage cache keeps its layout, stages/<stage>/<key>/ with a .done
// marker, so that caches written by earlier fwbuilds keep hitting.
func TestStageCachesByKey(t *testing.T) {
	r := &run{Options: Options{CacheDir: t.TempDir()}}
	ctx := context.Background()
	k := key("inputs")
	runs := 0
	produce := func(dir string) error {
		runs++
		return os.WriteFile(filepath.Join(dir, "out"), []byte("artefact"), 0o644)
	}
	res, err := r.stage(ctx, "usb", k, produce)
	if err != nil {
		t.Fatal(err)
	}
	if res.Cached || res.Key != k || res.Dir != filepath.Join(r.CacheDir, "stages", "usb", k) || runs != 1 {
		t.Fatalf("miss: %+v after %d runs", res, runs)
	}
	if b, err := res.read("out"); err != nil || string(b) != "artefact" {
		t.Errorf("out = %q, %v", b, err)
	}
	if _, err := os.Stat(res.path(".done")); err != nil {
		t.Errorf("no .done marker: %v", err)
	}
	hit, err := r.stage(ctx, "usb", k, produce)
	if err != nil || !hit.Cached || hit.Dir != res.Dir || runs != 1 {
		t.Errorf("hit: %+v, %v after %d runs", hit, err, runs)
	}

	// A failing stage leaves no entry, and its error is passed on unwrapped.
	boom := errors.New("usb: image too large")
	k2 := key("other inputs")
	if _, err := r.stage(ctx, "usb", k2, func(string) error { return boom }); err != boom {
		t.Errorf("err = %v, want the stage's own error", err)
	}
	if _, err := os.Stat(filepath.Join(r.CacheDir, "stages", "usb", k2)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("failed stage left an entry: %v", err)
	}
}

// Ctrl-C ends a wait for another fwbuild building the same stage.
func TestStageLockWaitEndsOnCancel(t *testing.T) {
	r := &run{Options: Options{CacheDir: t.TempDir()}}
	k := key("inputs")
	d, err := cache.Open(r.CacheDir)
	if err != nil {
		t.Fatal(err)
	}
	_, claim, err := d.Claim(context.Background(), "stages/spi", k)
	if err != nil {
		t.Fatal(err)
	}
	defer claim.Release()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = r.stage(ctx, "spi", k, func(string) error {
		t.Error("stage ran while another builder held its key")
		return nil
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("stage returned %s after its deadline", d)
	}
}

// Stage keys name existing cache entries: the hashing must not change.
func TestKeyIsStable(t *testing.T) {
	if got := key("ab", "c"); got != "430fb1b4ac43316eca81fab27a1930ab8eff8fef6a1dc7903dce44bbc2790dc5" { // sha256("2:ab1:c")
		t.Errorf("key(ab, c) = %s", got)
	}
	if key("ab", "c") == key("a", "bc") {
		t.Error("key is not length-prefixed")
	}
	if got := key(jsonKey(struct{ A string }{"x"})); got != "cd119dade571d28318742eaf9eeb3dd7f29464a8dbf76123c997babd4bd82256" { // sha256(`9:{"A":"x"}`)
		t.Errorf("key(jsonKey) = %s", got)
	}
}
