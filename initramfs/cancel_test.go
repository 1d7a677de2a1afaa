package initramfs

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/boardcfg"
)

// The pure-Go zstd encoder takes no context; compress still returns within
// moments of a cancellation.
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
