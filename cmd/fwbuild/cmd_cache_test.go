package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/internal/cache"
)

func TestCachePrune(t *testing.T) {
	dir := t.TempDir()
	c, _ := cache.Open(dir)
	entry := func(kind, key string, n int, used time.Time) string {
		e, err := c.Entry(context.Background(), kind, key, func(tmp string) error {
			return os.WriteFile(filepath.Join(tmp, "img"), make([]byte, n), 0o644)
		})
		if err != nil {
			t.Fatal(err)
		}
		os.Chtimes(e.Path+".lock", used, used)
		return e.Path
	}
	old := entry("stages/usb", "old", 1<<20, time.Now().Add(-3*time.Hour))
	recent := entry("stages/usb", "recent", 1<<20, time.Now())

	code, out, errs := runCLIJSON(t, dir, "cache", "du", "--json")
	var du struct {
		Bytes int64
		Kinds []struct {
			Kind    string
			Entries int
		}
	}
	if code != 0 || json.Unmarshal([]byte(out), &du) != nil || len(du.Kinds) != 1 || du.Kinds[0].Kind != "stages/usb" || du.Kinds[0].Entries != 2 || du.Bytes < 2<<20 {
		t.Fatalf("cache du --json: exit %d:\n%s%s", code, out, errs)
	}

	code, out, errs = runCLIJSON(t, dir, "cache", "prune", "--max-size", "64KiB")
	if code != 0 || !strings.Contains(out, "removed stages/usb/old") || !strings.Contains(out, "were kept") {
		t.Fatalf("cache prune: exit %d:\n%s%s", code, out, errs)
	}
	if _, err := os.Stat(old); err == nil {
		t.Errorf("%s is still there", old)
	}
	if _, err := os.Stat(recent); err != nil {
		t.Errorf("the entry used now was pruned: %v", err)
	}

	code, _, errs = runCLIJSON(t, dir, "cache", "prune", "--max-size", "lots")
	if code != 2 || !strings.Contains(errs, "--max-size") {
		t.Errorf("a bad --max-size: exit %d, want 2 naming the flag:\n%s", code, errs)
	}
	t.Setenv("FWBUILD_CACHE_MAX", "lots")
	if _, err := cacheMax(); err == nil || !strings.Contains(err.Error(), "FWBUILD_CACHE_MAX") {
		t.Errorf("a bad FWBUILD_CACHE_MAX: %v", err)
	}
}
