package qemutests

import (
	"context"
	"fmt"
	"time"
)

// markerLoop waits for the markers in order: it logs and matches QEMU's
// output as it arrives, keeps the awaited marker's deadline, types each
// matched marker's Then, and turns the first marker that cannot match any
// more into a *MarkerError.
type markerLoop struct {
	markers  []Marker
	mt       *matcher
	scale    float64
	quiet    time.Duration // see Options.Quiet
	onMarker func(Match)
	proc     *qemuProcess
	con      *console
	out      *outputReader

	res      Result
	since    time.Duration // when the awaited marker's clock started
	deadline *time.Timer   // the awaited marker's timeout
	quietT   *time.Timer   // armed while an unfinished line may match once flushed
	// diagnosis collects the console's output once the awaited marker
	// timed out and its Diagnose was typed; nil before.
	diagnosis []byte
}

// run returns when every marker has matched, one cannot, or ctx is done.
func (l *markerLoop) run(ctx context.Context) (Result, error) {
	l.deadline = time.NewTimer(l.timeout(0))
	defer l.deadline.Stop()
	l.quietT = time.NewTimer(time.Hour)
	l.quietT.Stop()
	defer l.quietT.Stop()

	exited, outDone := l.proc.exited, l.out.done // nil once seen
	for {
		select {
		case <-ctx.Done():
			return l.finish(l.fail(ctx.Err()))
		case <-l.deadline.C:
			// Output already read may hold the marker the timer
			// gave up on.
			if l.diagnosis != nil {
				return l.finish(l.fail(ErrMarkerTimeout))
			}
			before := l.mt.next
			if l.drain() {
				return l.finish(nil)
			}
			if l.mt.next == before {
				if !l.diagnose() {
					return l.finish(l.fail(ErrMarkerTimeout))
				}
			}
		case c := <-l.out.chunks:
			if l.diagnosis != nil {
				// Recorded, not matched: the marker's time is over.
				l.con.record(c.b)
				l.diagnosis = append(l.diagnosis, c.b...)
				continue
			}
			if over, err := l.onChunk(c); over {
				return l.finish(err)
			}
		case <-l.quietT.C:
			if l.accept(l.mt.flush(l.proc.since())) {
				return l.finish(nil)
			}
		case <-exited:
			exited = nil
			if outDone == nil {
				return l.finish(l.afterExit())
			}
			// Keep reading what QEMU wrote before it died, but do not
			// wait for ever on a descendant holding the pipe open.
			l.out.closeAfter(2 * time.Second)
		case <-outDone:
			outDone = nil
			if exited == nil {
				return l.finish(l.afterExit())
			}
			// Output closed while QEMU runs: wait for its exit.
		}
	}
}

// finish returns the result: complete when err is nil, else as far as it got.
func (l *markerLoop) finish(err error) (Result, error) {
	l.res.Lines = l.mt.lines
	if err == nil {
		l.res.Elapsed = l.res.Matches[len(l.res.Matches)-1].At
	}
	return l.res, err
}

// timeout returns marker i's scaled timeout.
func (l *markerLoop) timeout(i int) time.Duration {
	t := l.markers[i].Timeout
	if t == 0 {
		t = defaultMarkerTimeout
	}
	return time.Duration(float64(t) * l.scale)
}

// onChunk logs and matches a chunk of output; it reports whether the run is
// over, and why if not with every marker matched.
func (l *markerLoop) onChunk(c chunk) (over bool, err error) {
	if err := l.con.record(c.b); err != nil {
		return true, fmt.Errorf("qemu-tests: console log %s: %w", l.res.LogPath, err)
	}
	if l.accept(l.mt.feed(c.b, c.at)) {
		return true, nil
	}
	if l.mt.aborted != "" {
		return true, l.fail(fmt.Errorf("%w: %s", ErrAborted, l.mt.aborted))
	}
	if l.mt.pending() {
		l.quietT.Reset(l.quiet)
	}
	return false, nil
}

// accept records matches, types their Then and restarts the deadline for
// the next marker; it reports whether every marker has matched.
func (l *markerLoop) accept(ms []Match) bool {
	for _, mm := range ms {
		l.res.Matches = append(l.res.Matches, mm)
		if l.onMarker != nil {
			l.onMarker(mm)
		}
		l.since = mm.At
		if mm.Marker.Then != "" {
			l.con.typeKeys(mm.Marker.Then)
		}
	}
	if len(ms) > 0 && !l.mt.done() {
		// The next marker's clock started when this one matched, not
		// now: a late chunk must not extend its budget.
		l.deadline.Reset(max(0, l.timeout(l.mt.next)-(l.proc.since()-l.since)))
	}
	return l.mt.done()
}

// drain matches the chunks already read; it reports whether every marker has
// matched. It decides the outcome at a deadline or exit, so a log write error
// is not allowed to change it.
func (l *markerLoop) drain() bool {
	for {
		select {
		case c := <-l.out.chunks:
			l.con.record(c.b)
			if l.accept(l.mt.feed(c.b, c.at)) {
				return true
			}
		default:
			return l.mt.done()
		}
	}
}

// afterExit decides a run whose QEMU has exited and whose output is all
// read: the unfinished last line is as complete as it will get.
func (l *markerLoop) afterExit() error {
	if l.drain() || l.accept(l.mt.flush(l.proc.since())) {
		return nil
	}
	return l.fail(fmt.Errorf("%w (%s)", ErrQEMUExited, l.proc.status()))
}

// diagnose types the awaited marker's Diagnose, if it has one, and gives
// its output DiagnoseFor; it reports whether it did.
func (l *markerLoop) diagnose() bool {
	m := l.markers[l.mt.next]
	if m.Diagnose == "" {
		return false
	}
	d := m.DiagnoseFor
	if d == 0 {
		d = defaultDiagnoseFor
	}
	l.diagnosis = []byte{}
	l.con.typeKeys(m.Diagnose)
	l.quietT.Stop()
	l.deadline.Reset(time.Duration(float64(d) * l.scale))
	return true
}

// defaultDiagnoseFor is Marker.DiagnoseFor's default.
const defaultDiagnoseFor = 20 * time.Second

// fail reports the awaited marker as missing for reason.
func (l *markerLoop) fail(reason error) error {
	l.con.syncLog()
	i := l.mt.next
	return &MarkerError{
		Missing: l.markers[i], Index: i, Of: len(l.markers),
		Matched: l.res.Matches, Waited: l.proc.since() - l.since, Timeout: l.timeout(i),
		Reason: reason, Tail: l.mt.lastLines(), LogPath: l.res.LogPath,
		Diagnosis: string(l.diagnosis),
	}
}
