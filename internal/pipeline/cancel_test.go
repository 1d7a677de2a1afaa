package pipeline

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/internal/testdeps"
)

// coldCache is a cache sharing the packages, the kernel and every stage but
// cold with the shared test cache, so that exactly the cold stages run.
func coldCache(t *testing.T, cold ...string) string {
	t.Helper()
	real := testdeps.CacheDir(t)
	comps, err := Fetch(context.Background(), testdeps.Board(t, "qemu-q35"), real, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "pkgs"), 0o755)
	for _, c := range comps {
		os.Symlink(c.Root, filepath.Join(dir, "pkgs", c.SHA256))
	}
	for _, d := range []string{"kernel", "src"} {
		os.MkdirAll(filepath.Join(real, d), 0o755)
		os.Symlink(filepath.Join(real, d), filepath.Join(dir, d))
	}
	os.MkdirAll(filepath.Join(dir, "stages"), 0o755)
	for _, s := range []string{"initramfs", "guests", "payload", "usb", "spi"} {
		if !strings.Contains(" "+strings.Join(cold, " ")+" ", " "+s+" ") {
			os.MkdirAll(filepath.Join(real, "stages", s), 0o755)
			os.Symlink(filepath.Join(real, "stages", s), filepath.Join(dir, "stages", s))
		}
	}
	return dir
}

// A cancelled build returns context.Canceled within 2 s whichever Go-only
// stage it is in, and publishes nothing. (The spi stage used to run its 15 s
// of fiano to the end and publish.)
func TestCancelDuringGoStages(t *testing.T) {
	// The shared stages exist once a full build ran (cached after the first).
	if _, err := Build(context.Background(), q35Options(t, t.TempDir())); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		point string        // testHook point at which the cancellation is armed
		delay time.Duration // how long after it
		cold  []string
	}{
		{"usb", 0, []string{"usb", "spi"}},
		{"spi", 0, []string{"spi"}},
		{"spi", 1500 * time.Millisecond, []string{"spi"}}, // inside fiano's assembly
		{"manifest", 0, nil},
		{"publish: stage usb.img", 0, nil},
		{"publish: stage SHA256SUMS", 0, nil},
		{"publish: commit", 0, nil},
	}
	for _, c := range cases {
		t.Run(c.point+"+"+c.delay.String(), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			os.MkdirAll(out, 0o755)
			for _, n := range []string{"usb.img", "spi.bin", "SHA256SUMS"} {
				os.WriteFile(filepath.Join(out, n), []byte("previous "+n), 0o644)
			}
			before := dirState(t, out)
			cache := coldCache(t, c.cold...)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			cancelledAt := make(chan time.Time, 1)
			o := q35Options(t, out)
			o.CacheDir = cache
			armed := false
			o.testHook = func(p string) {
				if p != c.point || armed {
					return
				}
				armed = true
				fire := func() { cancelledAt <- time.Now(); cancel() }
				if c.delay == 0 {
					fire()
					return
				}
				time.AfterFunc(c.delay, fire)
			}
			_, err := Build(ctx, o)
			returned := time.Now()
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled", err)
			}
			select {
			case at := <-cancelledAt:
				if d := returned.Sub(at); d > 2*time.Second {
					t.Errorf("build returned %v after the cancellation, want < 2s", d)
				} else {
					t.Logf("returned %v after the cancellation: %v", d.Round(time.Millisecond), err)
				}
			default:
				t.Fatal("the build never reached " + c.point)
			}
			sameState(t, "cancelled build", before, dirState(t, out))
			var left []string
			filepath.Walk(cache, func(p string, info os.FileInfo, err error) error {
				if err == nil && strings.Contains(filepath.Base(p), ".tmp-") {
					left = append(left, p)
				}
				return nil
			})
			if len(left) > 0 {
				t.Errorf("temp files left in the cache: %v", left)
			}
		})
	}
}

// A bad --out fails before the first stage (it used to fail after all of
// them, at publish).
func TestBadOutDirFailsFirst(t *testing.T) {
	tmp := t.TempDir()
	dangling := filepath.Join(tmp, "out")
	os.Symlink(filepath.Join(tmp, "gone"), dangling)
	for _, out := range []string{dangling, filepath.Join(testdeps.CacheDir(t), "out")} {
		o := q35Options(t, out)
		var stages []string
		o.Progress = func(stage string, took time.Duration, cached bool) { stages = append(stages, stage) }
		_, err := Build(context.Background(), o)
		if err == nil || !strings.Contains(err.Error(), "output directory") {
			t.Errorf("--out %s: err = %v, want an output directory error", out, err)
		}
		if len(stages) > 0 {
			t.Errorf("--out %s: stages %v ran before the error", out, stages)
		}
	}
	if _, err := os.Lstat(filepath.Join(testdeps.CacheDir(t), "out")); err == nil {
		t.Error("an output directory was created inside the cache")
	}
}

// A cancellation after publish's commit point does not stop it half way:
// the build completes, and the directory is the new build, whole.
func TestCancelAfterCommitCompletes(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	os.MkdirAll(out, 0o755)
	os.WriteFile(filepath.Join(out, "usb.img"), []byte("previous"), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	o := q35Options(t, out)
	o.testHook = func(p string) {
		if p == "publish: rename usb.img" {
			cancel()
		}
	}
	if _, err := Build(ctx, o); err != nil {
		t.Fatalf("a build cancelled after its publish committed: %v", err)
	}
	sha256sumCheck(t, out)
	noStaged(t, out)
}
