package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/fwbuild/fwbuild/flash"
	"github.com/fwbuild/fwbuild/internal/progress"
)

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// termProgress draws one bar at a time at the bottom of a terminal (the
// stages run one after another); lines written through LineWriter appear
// above it.
type termProgress struct {
	mu     sync.Mutex // serialises writes to w
	w      io.Writer
	cols   int
	active *termTask
}

func newTermProgress(w io.Writer) *termProgress {
	cols := 80
	if f, ok := w.(*os.File); ok {
		if c, _, err := term.GetSize(int(f.Fd())); err == nil && c > 0 {
			cols = c
		}
	}
	return &termProgress{w: w, cols: cols}
}

// A bar's line must fit the terminal: a wrapped line is not redrawn in
// place. The name and the figures after the bar ("(30/64 MiB, 120 MiB/s)
// [2s:3s]") get their room first, the bar what is left.
const (
	barName  = 24
	barStats = 36
)

func (t *termProgress) barWidth() int {
	return min(max(t.cols-barName-len(" 100% ||  ")-barStats, 8), 40)
}

// lockedWriter is the bar's writer: the same lock as the lines.
type lockedWriter struct{ t *termProgress }

func (l lockedWriter) Write(p []byte) (int, error) {
	l.t.mu.Lock()
	defer l.t.mu.Unlock()
	return l.t.w.Write(p)
}

// LineWriter returns a writer for whole lines: each write clears the bar,
// prints the lines and draws the bar again below them.
func (t *termProgress) LineWriter() io.Writer { return lineWriter{t} }

type lineWriter struct{ t *termProgress }

func (l lineWriter) Write(p []byte) (int, error) {
	l.t.mu.Lock()
	a := l.t.active
	if a != nil {
		io.WriteString(l.t.w, "\r\x1b[K")
	}
	n, err := l.t.w.Write(p)
	l.t.mu.Unlock()
	// Outside the lock: the bar takes its own lock, then ours.
	if a != nil && len(p) > 0 && p[len(p)-1] == '\n' {
		a.redraw()
	}
	return n, err
}

func (t *termProgress) Start(name string, unit progress.Unit, total int64) progress.Task {
	max := total
	if max <= 0 {
		max = -1
	}
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(lockedWriter{t}),
		progressbar.OptionSetDescription(fmt.Sprintf("%-*.*s", barName, barName, name)),
		progressbar.OptionSetWidth(t.barWidth()),
		progressbar.OptionThrottle(100 * time.Millisecond),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionShowElapsedTimeOnFinish(),
		progressbar.OptionSetSpinnerChangeInterval(0), // no goroutine: redrawn on updates
	}
	// The count against the total, and for bytes the rate; the ETA is in brackets.
	opts = append(opts, progressbar.OptionShowCount())
	if unit == progress.Bytes {
		opts = append(opts, progressbar.OptionShowBytes(true), progressbar.OptionUseIECUnits(true))
	}
	tt := &termTask{t: t, bar: progressbar.NewOptions64(max, opts...), total: total}
	t.mu.Lock()
	prev := t.active
	t.active = tt
	t.mu.Unlock()
	if prev != nil {
		prev.Done(false)
	}
	tt.bar.RenderBlank()
	return tt
}

// Close ends a bar still drawn (an error path), so the shell prompt starts on a line of its own.
func (t *termProgress) Close() {
	t.mu.Lock()
	a := t.active
	t.mu.Unlock()
	if a != nil {
		a.Done(false)
	}
}

type termTask struct {
	t     *termProgress
	bar   *progressbar.ProgressBar
	mu    sync.Mutex
	total int64
	done  int64
	ended bool
}

func (k *termTask) redraw() { k.bar.RenderBlank() }

func (k *termTask) SetTotal(n int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.ended || n <= 0 {
		return
	}
	k.total = n
	k.bar.ChangeMax64(max(n, k.done))
}

func (k *termTask) Set(n int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.ended {
		return
	}
	// An estimate of the total (the kernel's object count) may be low.
	if k.total > 0 && n > k.total {
		k.total = n
		k.bar.ChangeMax64(n)
	}
	k.done = n
	if n == 0 {
		k.bar.RenderBlank() // refresh the elapsed time
		return
	}
	k.bar.Set64(n)
}

func (k *termTask) Add(n int64) {
	k.mu.Lock()
	d := k.done + n
	k.mu.Unlock()
	k.Set(d)
}

func (k *termTask) Done(ok bool) {
	k.mu.Lock()
	if k.ended {
		k.mu.Unlock()
		return
	}
	k.ended = true
	k.mu.Unlock()
	if ok {
		if k.total <= 0 && k.done > 0 {
			k.bar.ChangeMax64(k.done)
		}
		k.bar.Finish()
	}
	k.bar.Exit()
	k.t.mu.Lock()
	if k.t.active == k {
		k.t.active = nil
	}
	io.WriteString(k.t.w, "\n")
	k.t.mu.Unlock()
}

// flashProgress shows flash's phases: a bar per phase on a terminal, else a
// line when a phase starts and one when it ends (no carriage returns).
func (e *env) flashProgress() func(flash.Progress) {
	var task progress.Task
	phase := ""
	return func(p flash.Progress) {
		if e.json {
			return
		}
		if _, ok := e.progress.(*termProgress); ok {
			if p.Phase != phase || task == nil {
				phase = p.Phase
				task = e.progress.Start("flash: "+p.Phase, progress.Bytes, p.Total)
			}
			task.Set(p.Done)
			if p.Final {
				task.Done(p.Done == p.Total)
				task = nil
			}
			return
		}
		switch {
		case p.Final:
			rate := ""
			if r := p.Rate(); r > 0 && p.Total > 0 {
				rate = fmt.Sprintf(", %.1f MB/s", r/1e6)
			}
			if p.Total > 0 {
				fmt.Fprintf(e.stderr, "flash: %s: %d/%d bytes in %v%s\n", p.Phase, p.Done, p.Total, p.Elapsed.Round(100*time.Millisecond), rate)
			} else {
				fmt.Fprintf(e.stderr, "flash: %s: done in %v\n", p.Phase, p.Elapsed.Round(100*time.Millisecond))
			}
			phase = ""
		case p.Phase != phase:
			phase = p.Phase
			what := ""
			if p.Total > 0 {
				what = fmt.Sprintf(" %d bytes", p.Total)
			}
			fmt.Fprintf(e.stderr, "flash: %s%s ...\n", strings.TrimSpace(p.Phase), what)
		}
	}
}
