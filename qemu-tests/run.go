package qemutests

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultTailLines is how many console lines a MarkerError carries.
const DefaultTailLines = 40

// Options tune a run; the zero value is usable.
type Options struct {
	// LogPath receives everything QEMU writes, raw, as it arrives (so it
	// can be followed with tail -f). Empty: a new file in os.TempDir(),
	// left for the caller; its path is in Result.LogPath.
	LogPath string
	// Console, if set, also receives the raw output (e.g. os.Stderr for
	// a verbose `fwbuild test`).
	Console io.Writer
	// OnMarker is called as each marker matches, from Run's goroutine.
	OnMarker func(Match)
	// OnStart is called with QEMU's pid once it runs.
	OnStart func(pid int)
	// TimeoutScale multiplies marker timeouts; zero: $FWBUILD_TIMEOUT_SCALE,
	// else TCGTimeoutScale or KVMTimeoutScale.
	TimeoutScale float64
	// TailLines is how many console lines a MarkerError keeps; zero: 40.
	TailLines int
	// Quiet is how long the console must stay silent before a non-literal
	// regexp may match an unfinished line; zero: 500ms.
	Quiet time.Duration
	// Getenv reads the environment; nil: os.Getenv. Tests replace it.
	Getenv func(string) string
	// Logger receives warnings (e.g. KVM unusable); nil: slog.Default().
	Logger *slog.Logger
	// Abort, if set, ends the run as soon as a complete console line
	// matches it (a component reporting its own failure), instead of
	// waiting out the awaited marker's timeout. Reason: ErrAborted.
	Abort *regexp.Regexp
}

// Result is a successful run.
type Result struct {
	Matches []Match       // one per marker, in order
	Elapsed time.Duration // from QEMU's start to the last marker
	LogPath string
	Accel   string  // accelerator used: "tcg" or "kvm"
	Scale   float64 // factor applied to marker timeouts
	Cmdline []string
}

// Reasons a marker was not seen; test them with errors.Is on a *MarkerError.
var (
	ErrMarkerTimeout = errors.New("timed out")
	ErrQEMUExited    = errors.New("QEMU exited")
	ErrAborted       = errors.New("the console reported a failure")
)

// MarkerError reports the first marker that did not appear.
type MarkerError struct {
	Missing Marker
	Index   int           // position of Missing in the list
	Of      int           // number of markers
	Matched []Match       // markers seen before it
	Waited  time.Duration // time waited for Missing
	Timeout time.Duration // its scaled timeout
	// Reason is ErrMarkerTimeout, ErrQEMUExited (wrapping QEMU's exit
	// status) or the context's error.
	Reason  error
	Tail    []string // last console lines, cleaned, oldest first
	LogPath string   // the full console log
}

func (e *MarkerError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "qemu-tests: marker %d/%d %v not seen: ", e.Index+1, e.Of, e.Missing)
	switch {
	case errors.Is(e.Reason, ErrMarkerTimeout):
		fmt.Fprintf(&b, "timed out after %v", e.Timeout.Round(time.Millisecond))
	default:
		fmt.Fprintf(&b, "%v after %v", e.Reason, e.Waited.Round(time.Millisecond))
	}
	if n := len(e.Matched); n > 0 {
		last := e.Matched[n-1]
		fmt.Fprintf(&b, " (previous marker %q at %v)", last.Marker.Name, last.At.Round(time.Millisecond))
	}
	fmt.Fprintf(&b, "\nlast %d console lines:\n", len(e.Tail))
	for _, l := range e.Tail {
		b.WriteString("  | ")
		b.WriteString(l)
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "full console log: %s", e.LogPath)
	return b.String()
}

func (e *MarkerError) Unwrap() error { return e.Reason }

// chunk is output read from QEMU, stamped when it was read.
type chunk struct {
	b  []byte
	at time.Duration
}

// Run starts QEMU for m and waits for markers in order. It returns when all
// have matched (Result) or one cannot (*MarkerError); setup problems (missing
// QEMU, bad firmware image, bad marker) are plain errors. QEMU is killed
// before Run returns.
func Run(ctx context.Context, m Machine, markers []Marker, opts Options) (res Result, err error) {
	if len(markers) == 0 {
		return res, errors.New("qemu-tests: no markers to wait for")
	}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("qemu-tests: not started: %w", err)
	}
	typing := false
	for i, mk := range markers {
		if err := mk.validate(i); err != nil {
			return res, fmt.Errorf("qemu-tests: %w", err)
		}
		typing = typing || mk.Then != ""
	}
	if typing && m.Serial != SerialStdio {
		return res, errors.New("qemu-tests: markers type console input (Then), which needs a SerialStdio machine")
	}
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	tailLines, quiet := opts.TailLines, opts.Quiet
	if tailLines <= 0 {
		tailLines = DefaultTailLines
	}
	if quiet <= 0 {
		quiet = 500 * time.Millisecond
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	accel, err := resolveAccel(m.Accel, getenv, KVMUsable, logger)
	if err != nil {
		return res, fmt.Errorf("qemu-tests: %w", err)
	}
	scale, err := resolveScale(opts.TimeoutScale, accel, getenv)
	if err != nil {
		return res, fmt.Errorf("qemu-tests: %w", err)
	}
	res.Accel, res.Scale = accel, scale

	bin := m.Binary
	if bin == "" {
		bin = "qemu-system-x86_64"
	}
	binPath, err := exec.LookPath(bin)
	if err != nil {
		return res, fmt.Errorf("qemu-tests: %s not found (apt-get install -y qemu-system-x86): %w", bin, err)
	}

	// A short directory: unix socket paths are limited to 108 bytes.
	work, err := os.MkdirTemp("", "fwq")
	if err != nil {
		return res, fmt.Errorf("qemu-tests: %w", err)
	}
	defer os.RemoveAll(work)
	socket := filepath.Join(work, "serial.sock")
	args, err := m.args(accel, work, socket)
	if err != nil {
		return res, fmt.Errorf("qemu-tests: %w", err)
	}
	res.Cmdline = append([]string{binPath}, args...)

	var logf *os.File
	if opts.LogPath != "" {
		logf, err = os.Create(opts.LogPath)
	} else {
		logf, err = os.CreateTemp("", "fwbuild-qemu-*.log")
	}
	if err != nil {
		return res, fmt.Errorf("qemu-tests: console log: %w", err)
	}
	defer logf.Close()
	res.LogPath = logf.Name()
	var sink io.Writer = logf
	if opts.Console != nil {
		sink = io.MultiWriter(logf, opts.Console)
	}

	pr, pw, err := os.Pipe()
	if err != nil {
		return res, fmt.Errorf("qemu-tests: %w", err)
	}
	cmd := exec.Command(binPath, args...)
	cmd.Stdout, cmd.Stderr = pw, pw // one pipe: QEMU's errors land in the log and the tail
	cmd.SysProcAttr = sysProcAttr()
	// With -serial stdio, QEMU's standard input is the console's keyboard.
	var keys io.WriteCloser
	if typing {
		kr, kw, err := os.Pipe()
		if err != nil {
			pr.Close()
			pw.Close()
			return res, fmt.Errorf("qemu-tests: %w", err)
		}
		cmd.Stdin, keys = kr, kw
		defer kw.Close()
		defer kr.Close()
	}
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return res, fmt.Errorf("qemu-tests: start %s: %w", binPath, err)
	}
	start := time.Now()
	pw.Close()
	pid := cmd.Process.Pid

	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()

	chunks := make(chan chunk, 64)
	stop := make(chan struct{})
	var readers sync.WaitGroup
	// Closing QEMU's output is what unblocks a reader; a reader's source
	// that appears after closeAll (the serial socket) is closed at once.
	var (
		closersMu sync.Mutex
		closers   []io.Closer
		closed    bool
	)
	addCloser := func(c io.Closer) {
		closersMu.Lock()
		defer closersMu.Unlock()
		if closed {
			c.Close()
		}
		closers = append(closers, c)
	}
	closeAll := func() {
		closersMu.Lock()
		defer closersMu.Unlock()
		closed = true
		for _, c := range closers {
			c.Close()
		}
	}
	read := func(r io.Reader) {
		defer readers.Done()
		// The emulated UART often hands over a byte or two per read:
		// copy out what arrived rather than give away the buffer.
		buf := make([]byte, 32<<10)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				select {
				case chunks <- chunk{append([]byte(nil), buf[:n]...), time.Since(start)}:
				case <-stop:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	addCloser(pr)
	readers.Add(1)
	go read(pr)
	if m.Serial == SerialSocket {
		readers.Add(1)
		go func() {
			conn := dialSerial(socket, exited, stop)
			if conn == nil {
				readers.Done()
				return
			}
			addCloser(conn)
			read(conn)
		}()
	}
	readersDone := make(chan struct{})
	go func() {
		readers.Wait()
		close(readersDone)
	}()

	// Whatever happens below, QEMU and anything it started die first,
	// then the readers are unblocked and waited for.
	defer func() {
		killGroup(pid)
		<-exited
		close(stop)
		closeAll()
		<-readersDone
	}()

	if opts.OnStart != nil {
		opts.OnStart(pid)
	}

	mt := newMatcher(markers, tailLines)
	mt.abort = opts.Abort
	timeoutOf := func(i int) time.Duration {
		t := markers[i].Timeout
		if t == 0 {
			t = DefaultMarkerTimeout
		}
		return time.Duration(float64(t) * scale)
	}
	since := time.Duration(0) // when the awaited marker's clock started
	deadline := time.NewTimer(timeoutOf(0))
	defer deadline.Stop()
	quietT := time.NewTimer(time.Hour)
	quietT.Stop()
	defer quietT.Stop()

	fail := func(reason error) (Result, error) {
		logf.Sync()
		return res, &MarkerError{
			Missing: markers[mt.next], Index: mt.next, Of: len(markers),
			Matched: res.Matches, Waited: time.Since(start) - since, Timeout: timeoutOf(mt.next),
			Reason: reason, Tail: mt.lastLines(), LogPath: res.LogPath,
		}
	}
	succeed := func() (Result, error) {
		res.Elapsed = res.Matches[len(res.Matches)-1].At
		return res, nil
	}
	accept := func(ms []Match) bool {
		for _, mm := range ms {
			res.Matches = append(res.Matches, mm)
			if opts.OnMarker != nil {
				opts.OnMarker(mm)
			}
			since = mm.At
			if mm.Marker.Then != "" {
				// A pipe write this small does not block; a QEMU that
				// has gone shows up as a missing marker.
				io.WriteString(keys, mm.Marker.Then)
			}
		}
		if len(ms) > 0 && !mt.done() {
			// The next marker's clock started when this one matched,
			// not now: a late chunk must not extend its budget.
			deadline.Reset(max(0, timeoutOf(mt.next)-(time.Since(start)-since)))
		}
		return mt.done()
	}
	// afterExit finishes a run whose QEMU has exited and whose output is
	// all read.
	afterExit := func() (Result, error) {
		if drain(chunks, mt, sink, accept) || accept(mt.flush(time.Since(start))) {
			return succeed()
		}
		status := "exit status 0"
		if waitErr != nil {
			status = waitErr.Error()
		}
		return fail(fmt.Errorf("%w (%s)", ErrQEMUExited, status))
	}

	exitedSel, readersSel := exited, readersDone // nil once seen
	for {
		select {
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-deadline.C:
			// Output already read may hold the marker the timer
			// gave up on.
			before := mt.next
			if drain(chunks, mt, sink, accept) {
				return succeed()
			}
			if mt.next == before {
				return fail(ErrMarkerTimeout)
			}
		case c := <-chunks:
			if _, err := sink.Write(c.b); err != nil {
				return res, fmt.Errorf("qemu-tests: console log %s: %w", res.LogPath, err)
			}
			if accept(mt.feed(c.b, c.at)) {
				return succeed()
			}
			if mt.aborted != "" {
				return fail(fmt.Errorf("%w: %s", ErrAborted, mt.aborted))
			}
			if mt.pending() {
				quietT.Reset(quiet)
			}
		case <-quietT.C:
			if accept(mt.flush(time.Since(start))) {
				return succeed()
			}
		case <-exitedSel:
			exitedSel = nil
			if readersSel == nil {
				return afterExit()
			}
			// Keep reading what QEMU wrote before it died, but do not
			// wait for ever on a descendant holding the pipe open.
			go func() {
				select {
				case <-readersDone:
				case <-time.After(2 * time.Second):
					closeAll()
				}
			}()
		case <-readersSel:
			readersSel = nil
			if exitedSel == nil {
				return afterExit()
			}
			// Output closed while QEMU runs: wait for its exit.
		}
	}
}

// drain feeds chunks already read; it reports whether all markers matched.
func drain(chunks <-chan chunk, mt *matcher, sink io.Writer, accept func([]Match) bool) bool {
	for {
		select {
		case c := <-chunks:
			sink.Write(c.b)
			if accept(mt.feed(c.b, c.at)) {
				return true
			}
		default:
			return mt.done()
		}
	}
}

// dialSerial connects to QEMU's serial socket, retrying until QEMU has
// created it; nil if QEMU exits or the run stops first.
func dialSerial(path string, exited, stop <-chan struct{}) net.Conn {
	for {
		conn, err := net.Dial("unix", path)
		if err == nil {
			return conn
		}
		select {
		case <-exited:
			return nil
		case <-stop:
			return nil
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// killGroup kills QEMU's process group: QEMU runs as its leader, so this
// also reaches any helper it started.
func killGroup(pid int) {
	syscall.Kill(-pid, syscall.SIGKILL)
}
