package initramfs

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/boardcfg"
)

// A cancellation ends the compressor (zstd -19 needs seconds for 96 MiB):
// compress returns within moments, with the context's error.
func TestCompressZstdCancelled(t *testing.T) {
	raw := make([]byte, 96<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i+8 <= len(raw); i += 8 {
		v := r.Uint64()
		for j := range 8 {
			raw[i+j] = byte(v >> (8 * j))
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancelled := make(chan time.Time, 1)
	time.AfterFunc(200*time.Millisecond, func() { cancelled <- time.Now(); cancel() })
	start := time.Now()
	_, err := compress(ctx, boardcfg.Zstd, raw)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v after %v, want context.Canceled (is 96 MiB too fast to compress here?)", err, time.Since(start))
	}
	if d := time.Since(<-cancelled); d > time.Second {
		t.Errorf("compress returned %v after the cancellation", d)
	}
}

// mkuimage runs go without a context; a cancelled Build still returns
// without waiting for the compile, and the go commands it started are gone.
func TestBuildCancelledDuringUroot(t *testing.T) {
	s := q35Spec(t)
	t.Setenv("GOCACHE", t.TempDir()) // cold: the busybox compile runs for minutes
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var goPids []int
	go func() {
		defer cancel()
		for ctx.Err() == nil {
			// The busybox build has begun once mkuimage writes its sources.
			started, _ := filepath.Glob(filepath.Join(s.TempDir, "fwbuild-initramfs-*", "build", "*"))
			if goPids = goWorkingIn(s.TempDir); len(goPids) > 0 && len(started) > 0 {
				time.Sleep(3 * time.Second) // compiles running
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	var cancelledAt time.Time
	context.AfterFunc(ctx, func() { cancelledAt = time.Now() })
	_, err := Build(ctx, s)
	took := time.Since(cancelledAt)
	if len(goPids) == 0 {
		t.Fatalf("Build returned (%v) before u-root's go ran", err)
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	// Not instant: mkuimage type-checks the busybox's packages in this
	// process (x/tools/go/packages, which gobusybox gives no context), and
	// that phase runs to its end: 7-9 s measured on a loaded 2-core machine,
	// 10.7 s in CI. Without stopOnCancel the cold build ran on for minutes
	// (2m54s measured).
	t.Logf("Build returned %v after the cancellation", took)
	if took > 45*time.Second {
		t.Errorf("Build returned %v after the cancellation", took)
	}
	if left := goWorkingIn(s.TempDir); len(left) > 0 {
		t.Errorf("processes still working in the build's directory: %v", left)
	}
}

// goWorkingIn lists this process's children working inside dir.
func goWorkingIn(dir string) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || parentOf(pid) != os.Getpid() {
			continue
		}
		if cwd, err := os.Readlink("/proc/" + e.Name() + "/cwd"); err == nil && strings.HasPrefix(cwd, dir+"/") {
			out = append(out, pid)
		}
	}
	return out
}
