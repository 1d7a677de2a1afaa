// Package progress is the seam between long-running stages and whoever shows
// their progress. A stage asks the context for a Reporter and reports counts
// against a total; the command line draws bars on a terminal and nothing
// otherwise. The stages keep logging their own plain lines either way, so
// output without a terminal stays line-based and stable.
//
// Stages must not import a bar library: that is the CLI's business.
package progress

import (
	"context"
	"io"
	"sync"
	"time"
)

// Unit says what a task counts.
type Unit int

const (
	Items Unit = iota // objects compiled, files written
	Bytes
)

// Reporter starts tasks. Implementations must be safe for concurrent use.
type Reporter interface {
	// Start begins a task named for a person ("download linux-source-6.1");
	// total is in unit, 0 when not known yet.
	Start(name string, unit Unit, total int64) Task
}

// Task is one piece of work being counted. Its methods may be called from
// any goroutine; calls after Done are ignored.
type Task interface {
	SetTotal(total int64)
	Set(done int64)
	Add(n int64)
	// Done ends the task; ok says whether it completed (a bar is filled) or
	// stopped short (it is left where it was).
	Done(ok bool)
}

type ctxKey struct{}

// WithReporter returns a context whose stages report to r.
func WithReporter(ctx context.Context, r Reporter) context.Context {
	return context.WithValue(ctx, ctxKey{}, r)
}

// From returns the context's reporter, or one that discards everything.
func From(ctx context.Context) Reporter {
	if r, ok := ctx.Value(ctxKey{}).(Reporter); ok && r != nil {
		return r
	}
	return nop{}
}

// Active says whether anyone is watching: work done only to make a report
// better (asking for a download's size) can be skipped when not.
func Active(ctx context.Context) bool {
	_, isNop := From(ctx).(nop)
	return !isNop
}

// Start starts a task on the context's reporter.
func Start(ctx context.Context, name string, unit Unit, total int64) Task {
	return From(ctx).Start(name, unit, total)
}

// Nop is a reporter that shows nothing.
func Nop() Reporter { return nop{} }

type nop struct{}

func (nop) Start(string, Unit, int64) Task { return nopTask{} }

type nopTask struct{}

func (nopTask) SetTotal(int64) {}
func (nopTask) Set(int64)      {}
func (nopTask) Add(int64)      {}
func (nopTask) Done(bool)      {}

// Poll reports size() on t every interval until the returned stop is
// called, for work whose progress shows only as a growing file.
func Poll(t Task, interval time.Duration, size func() int64) (stop func()) {
	return Every(interval, func() { t.Set(size()) })
}

// Every calls f every interval, from one goroutine, until the returned
// stop is called; stop returns once f no longer runs.
func Every(interval time.Duration, f func()) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				f()
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// Writer counts the bytes written through it on t.
func Writer(w io.Writer, t Task) io.Writer { return &countWriter{w, t} }

type countWriter struct {
	w io.Writer
	t Task
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.t.Add(int64(n))
	return n, err
}

// Reader counts the bytes read through it on t.
func Reader(r io.Reader, t Task) io.Reader { return &countReader{r, t} }

type countReader struct {
	r io.Reader
	t Task
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.t.Add(int64(n))
	return n, err
}

// Recorder is a Reporter that remembers every report, for tests of the
// stages that report.
type Recorder struct {
	mu    sync.Mutex
	Tasks []*RecordedTask
}

// TaskState is what a Recorder saw of one task.
type TaskState struct {
	Name    string
	Unit    Unit
	Total   int64
	Current int64
	Updates int
	Ended   bool
	OK      bool
}

// RecordedTask is a task a Recorder started.
type RecordedTask struct {
	mu sync.Mutex
	TaskState
}

func (r *Recorder) Start(name string, unit Unit, total int64) Task {
	t := &RecordedTask{TaskState: TaskState{Name: name, Unit: unit, Total: total}}
	r.mu.Lock()
	r.Tasks = append(r.Tasks, t)
	r.mu.Unlock()
	return t
}

// Snapshot returns copies of the tasks seen so far.
func (r *Recorder) Snapshot() []TaskState {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]TaskState, len(r.Tasks))
	for i, t := range r.Tasks {
		t.mu.Lock()
		out[i] = t.TaskState
		t.mu.Unlock()
	}
	return out
}

func (t *RecordedTask) update(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.Ended {
		f()
		t.Updates++
	}
}

func (t *RecordedTask) SetTotal(n int64) { t.update(func() { t.Total = n }) }
func (t *RecordedTask) Set(n int64)      { t.update(func() { t.Current = n }) }
func (t *RecordedTask) Add(n int64)      { t.update(func() { t.Current += n }) }
func (t *RecordedTask) Done(ok bool)     { t.update(func() { t.Ended, t.OK = true, ok }) }
