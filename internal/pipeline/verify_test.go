package pipeline

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fwbuild/fwbuild/internal/atomicfile"
)

// A stage output damaged in the cache is never reused: the stage runs
// again, with a warning naming the entry, and the artefact hash is that of
// the bytes on disk, whatever a side file says.
func TestStageRebuildsDamagedOutput(t *testing.T) {
	var logs bytes.Buffer
	r := &run{Options: Options{CacheDir: t.TempDir(), Log: slog.New(slog.NewTextHandler(&logs, nil))}}
	ctx := context.Background()
	k := key("inputs")
	runs := 0
	produce := func(dir string) error {
		runs++
		return os.WriteFile(filepath.Join(dir, "usb.img"), bytes.Repeat([]byte("image "), 1000), 0o644)
	}
	res, err := r.stage(ctx, "usb", k, produce)
	if err != nil {
		t.Fatal(err)
	}
	img := res.path("usb.img")
	good, n, _ := atomicfile.HashFile(img)
	if sum, m, err := r.hashArtefact(img); err != nil || sum != good || m != n {
		t.Fatalf("hashArtefact of a fresh output: %s %d %v, want %s %d", sum, m, err, good, n)
	}

	// Flip a bit in place, and leave a lying .sha256 side file as older
	// fwbuilds kept.
	b, _ := os.ReadFile(img)
	b[100] ^= 4
	f, _ := os.OpenFile(img, os.O_WRONLY, 0)
	f.Write(b)
	f.Close()
	os.WriteFile(img+".sha256", []byte(good+" 6000\n"), 0o644)
	// Whatever a caller asks now gets the true hash, not the recorded one.
	if sum, _, _ := r.hashArtefact(img); sum == good {
		t.Error("hashArtefact returned the recorded hash of a modified file")
	}
	again, err := r.stage(ctx, "usb", k, produce)
	if err != nil {
		t.Fatal(err)
	}
	if again.Cached || runs != 2 {
		t.Errorf("damaged output reused: cached %v after %d runs", again.Cached, runs)
	}
	if sum, _, _ := r.hashArtefact(again.path("usb.img")); sum != good {
		t.Errorf("rebuilt output hashes to %s, want %s", sum, good)
	}
	if _, err := os.Stat(again.path("usb.img.sha256")); err == nil {
		t.Error("the damaged entry's files survived the rebuild")
	}
	if !strings.Contains(logs.String(), res.Dir) || !strings.Contains(logs.String(), "usb.img") {
		t.Errorf("no warning naming %s:\n%s", res.Dir, logs.String())
	}
}
