package flash

import (
	"sync"
	"time"
)

// Progress reports one step of a flash operation.
//
// SPI phases, in order: "probe", "backup" (reading the chip), "backup-verify" (flashrom
// compares the chip with the backup), "write" (Total = bytes of the requested regions),
// "verify" (reading back). flashrom prints no usable progress, so during a phase Done stays 0 and a
// report arrives about once a second with the elapsed time; Done becomes Total when the phase ends.
// USB phases: "write" and "verify" count bytes as they go; "sync" reports the fsync.
type Progress struct {
	Phase   string
	Done    int64 // bytes done in this phase
	Total   int64 // bytes in this phase (0 when unknown, e.g. "probe")
	Elapsed time.Duration
	Final   bool // last report of this phase
}

// Rate returns the phase's average speed in bytes per second (0 before any time passed).
func (p Progress) Rate() float64 {
	if p.Elapsed <= 0 {
		return 0
	}
	return float64(p.Done) / p.Elapsed.Seconds()
}

// reporter serialises calls to the user's callback (the SPI ticker runs in its own goroutine).
type reporter struct {
	mu sync.Mutex
	fn func(Progress)
}

func (r *reporter) report(p Progress) {
	if r == nil || r.fn == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fn(p)
}

// tick reports phase every interval until the returned stop func is called; stop reports
// the final state and waits for the ticker to end so no report follows it.
func (r *reporter) tick(phase string, total int64, interval time.Duration) (stop func(ok bool)) {
	start := time.Now()
	r.report(Progress{Phase: phase, Total: total})
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				r.report(Progress{Phase: phase, Total: total, Elapsed: time.Since(start)})
			}
		}
	}()
	return func(ok bool) {
		close(done)
		<-exited
		p := Progress{Phase: phase, Total: total, Elapsed: time.Since(start), Final: true}
		if ok {
			p.Done = total
		}
		r.report(p)
	}
}
