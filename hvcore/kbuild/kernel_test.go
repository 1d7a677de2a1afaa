package kbuild

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/hvcore/kconfig"

	"github.com/fwbuild/fwbuild/internal/testdeps"
)

// The real kernel: Debian's linux-source-6.1 with boards/qemu-q35/kernel.config.
// A cold build takes 4-8 minutes on 2 idle cores: run with -timeout 30m. With FWBUILD_CACHE
// set the kernel is cached there, laid out as `fwbuild build` does (so tests and the CLI
// share builds), and later runs are cache hits.

func qemuQ35Spec(t testing.TB) Spec {
	return Spec{
		SourceTarball: testdeps.File(t, "linux-source", "tarball"),
		Base:          "tinyconfig",
		Fragment:      filepath.Join(testdeps.RepoRoot(t), "boards", "qemu-q35", "kernel.config"),
		// pipeline.DefaultEpoch (2024-01-01), so that tests and `fwbuild build` share the key.
		Epoch: time.Unix(1704067200, 0),
	}
}

func kernelCache(t testing.TB) string {
	if d := os.Getenv("FWBUILD_CACHE"); d != "" {
		return d
	}
	return t.TempDir()
}

func needKernelTools(t testing.TB) {
	t.Helper()
	if err := checkTools(context.Background(), []string{"gcc"}); err != nil {
		t.Fatal(err)
	}
}

func logProgress(t testing.TB) func(string) {
	return func(m string) { t.Log(m) }
}

// buildCtx ends a little before the test binary's -timeout, so that a slow build is
// cancelled (make and its children killed) and reported instead of the binary panicking.
func buildCtx(t *testing.T) context.Context {
	ctx := context.Background()
	if d, ok := t.Deadline(); ok {
		c, cancel := context.WithDeadline(ctx, d.Add(-30*time.Second))
		t.Cleanup(cancel)
		ctx = c
	}
	return ctx
}

func fatalBuild(t *testing.T, err error) {
	t.Helper()
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("%v\na cold kernel build takes 5-15 minutes: run with -timeout 30m (or more), or set FWBUILD_CACHE to reuse one", err)
	}
	t.Fatal(err)
}

func TestBuildQemuQ35(t *testing.T) {
	needKernelTools(t)
	s := qemuQ35Spec(t)
	cache := kernelCache(t)
	ctx := buildCtx(t)

	// Two builders at once: one builds, the other waits on the lock and then hits.
	var wg sync.WaitGroup
	var res [2]Result
	var errs [2]error
	for i := range res {
		wg.Go(func() { res[i], errs[i] = Build(ctx, cache, s, logProgress(t)) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			fatalBuild(t, err)
		}
	}
	if !res[0].Cached && !res[1].Cached {
		t.Fatal("both concurrent builds ran make")
	}
	if os.Getenv("FWBUILD_CACHE") == "" && res[0].Cached == res[1].Cached {
		t.Error("cold cache, but neither concurrent build ran make")
	}
	r := res[0]
	if res[1].Cached == false {
		r = res[1]
	}
	t.Logf("key %s cached=%v took %s stages %v", r.Key, r.Cached, r.Duration.Round(time.Second), r.Stages)

	img, err := os.ReadFile(r.BzImage)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("bzImage %d bytes (%.2f MB)", len(img), float64(len(img))/1e6)
	checkBzImage(t, img, s.Epoch)
	// The stored config still holds every option the fragment asked for.
	frag, err := kconfig.ParseFragment(s.Fragment)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(r.Config)
	if err != nil {
		t.Fatal(err)
	}
	if err := frag.Check(cfg); err != nil {
		t.Error(err)
	}

	// Now a hit, with a make on PATH that fails if run.
	runs := countingMake(t, true)
	hit, err := Build(ctx, cache, s, logProgress(t))
	if err != nil {
		t.Fatal(err)
	}
	if !hit.Cached || runs() != 0 || hit.BzImage != r.BzImage {
		t.Errorf("second build: Cached=%v make runs=%d bzImage=%s; want a hit of %s", hit.Cached, runs(), hit.BzImage, r.BzImage)
	}
	t.Logf("cache hit took %s", hit.Duration)
}

// checkBzImage checks the x86 boot header and the version string our build identity went into.
func checkBzImage(t *testing.T, img []byte, epoch time.Time) {
	t.Helper()
	if len(img) < 0x1000 || string(img[0x202:0x206]) != "HdrS" || string(img[:2]) != "MZ" {
		t.Fatalf("not a bzImage with a PE/EFI stub header")
	}
	off := 0x200 + int(binary.LittleEndian.Uint16(img[0x20e:]))
	end := bytes.IndexByte(img[off:], 0)
	if end < 0 {
		t.Fatal("kernel_version string not terminated")
	}
	version := string(img[off : off+end])
	t.Logf("kernel_version: %s", version)
	for _, want := range []string{"6.1.", "(" + BuildUser + "@" + BuildHost + ")", "#1 SMP", kbuildTimestamp(epoch)} {
		if !bytes.Contains([]byte(version), []byte(want)) {
			t.Errorf("kernel_version %q lacks %q", version, want)
		}
	}
}

// TestBuildReproducible builds the qemu-q35 kernel from cold in a fresh cache and compares
// its bytes with the kernel in the test cache (FWBUILD_CACHE, where an earlier cold build
// left it, or a second cold build). That costs one or two full kernel builds, so it runs
// only with FWBUILD_KBUILD_REPRO=1 (and -timeout 30m or more).
func TestBuildReproducible(t *testing.T) {
	if os.Getenv("FWBUILD_KBUILD_REPRO") != "1" {
		t.Skip("one or two cold kernel builds (5-10 min each): set FWBUILD_KBUILD_REPRO=1 to run")
	}
	needKernelTools(t)
	s := qemuQ35Spec(t)
	var imgs [2][]byte
	for i, cache := range []string{kernelCache(t), filepath.Join(t.TempDir(), "fresh")} {
		r, err := Build(buildCtx(t), cache, s, logProgress(t))
		if err != nil {
			fatalBuild(t, err)
		}
		if i == 1 && r.Cached {
			t.Fatal("build in a fresh cache reported Cached")
		}
		if imgs[i], err = os.ReadFile(r.BzImage); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: cached=%v %s, %d bytes, key %s", r.BzImage, r.Cached, r.Duration.Round(time.Second), len(imgs[i]), r.Key)
	}
	if !bytes.Equal(imgs[0], imgs[1]) {
		t.Errorf("two cold builds differ: %d vs %d bytes", len(imgs[0]), len(imgs[1]))
	}
}

// BenchmarkBuild records cold and cached build times of the qemu-q35 kernel and its size:
//
//	go test -run '^$' -bench 'Build/cold' -benchtime 1x -timeout 30m ./hvcore/kbuild/
//	go test -run '^$' -bench 'Build/cached' ./hvcore/kbuild/
func BenchmarkBuild(b *testing.B) {
	needKernelTools(b)
	s := qemuQ35Spec(b)
	ctx := context.Background()
	b.Run("cold", func(b *testing.B) {
		for b.Loop() {
			r, err := Build(ctx, b.TempDir(), s, func(string) {})
			if err != nil {
				b.Fatal(err)
			}
			for _, st := range r.Stages {
				b.ReportMetric(st.Duration.Seconds(), st.Name+"-s")
			}
			reportSize(b, r)
		}
	})
	b.Run("cached", func(b *testing.B) {
		cache := kernelCache(b)
		r, err := Build(ctx, cache, s, func(string) {})
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			r, err := Build(ctx, cache, s, func(string) {})
			if err != nil || !r.Cached {
				b.Fatalf("cached build: %v, Cached=%v", err, r.Cached)
			}
		}
		reportSize(b, r)
	})
}

func reportSize(b *testing.B, r Result) {
	st, err := os.Stat(r.BzImage)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(st.Size()), "bzImage-bytes")
}
