package qemutests

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// defaultTailLines is how many console lines a MarkerError carries.
const defaultTailLines = 40

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
	// else 3 under TCG and 1 under KVM.
	TimeoutScale float64
	// TailLines is how many console lines a MarkerError keeps; zero: 40.
	TailLines int
	// Quiet is how long the console must stay silent before a non-literal
	// regexp may match an unfinished line; zero: 500ms.
	Quiet time.Duration
	// Logger receives warnings (e.g. KVM unusable); nil: slog.Default().
	Logger *slog.Logger
	// Abort, if set, ends the run as soon as a complete console line
	// matches it (a component reporting its own failure), instead of
	// waiting out the awaited marker's timeout. Reason: ErrAborted.
	Abort *regexp.Regexp

	// getenv reads the environment; nil: os.Getenv. Tests isolate runs
	// from the caller's FWBUILD_* variables with it.
	getenv func(string) string
}

// Result is a successful run.
type Result struct {
	Matches []Match       // one per marker, in order
	Elapsed time.Duration // from QEMU's start to the last marker
	LogPath string
	Accel   string  // accelerator used: "tcg" or "kvm"
	Scale   float64 // factor applied to marker timeouts
	Cmdline []string
	// Lines are the console's complete lines with their arrival times, up
	// to the end of the run (NewTimeline reads them).
	Lines []Line `json:"-"`
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
	// Diagnosis is what the console printed after the missing marker's
	// Diagnose was typed.
	Diagnosis string
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
	if e.Diagnosis != "" {
		fmt.Fprintf(&b, "after the timeout, %q printed:\n", strings.TrimSpace(e.Missing.Diagnose))
		for _, l := range strings.Split(strings.TrimRight(e.Diagnosis, "\r\n"), "\n") {
			b.WriteString("  > ")
			b.WriteString(strings.TrimRight(l, "\r"))
			b.WriteByte('\n')
		}
	}
	fmt.Fprintf(&b, "full console log: %s", e.LogPath)
	return b.String()
}

func (e *MarkerError) Unwrap() error { return e.Reason }

// Run starts QEMU for m and waits for markers in order. It returns when all
// have matched (Result) or one cannot (*MarkerError); setup problems (missing
// QEMU, bad firmware image, bad marker) are plain errors. QEMU is killed
// before Run returns.
func Run(ctx context.Context, m Machine, markers []Marker, opts Options) (Result, error) {
	var res Result
	typing, err := checkMarkers(ctx, m, markers)
	if err != nil {
		return res, fmt.Errorf("qemu-tests: %w", err)
	}
	s, err := resolveSettings(m, opts)
	if err != nil {
		return res, fmt.Errorf("qemu-tests: %w", err)
	}
	res.Accel, res.Scale = s.accel, s.scale
	binPath, err := lookQEMU(m.Binary)
	if err != nil {
		return res, fmt.Errorf("qemu-tests: %w", err)
	}

	// A short directory: unix socket paths are limited to 108 bytes.
	work, err := os.MkdirTemp("", "fwq")
	if err != nil {
		return res, fmt.Errorf("qemu-tests: %w", err)
	}
	defer os.RemoveAll(work)
	socket := filepath.Join(work, "serial.sock")
	args, err := m.args(s.accel, work, socket)
	if err != nil {
		return res, fmt.Errorf("qemu-tests: %w", err)
	}
	res.Cmdline = append([]string{binPath}, args...)

	con, err := openConsole(opts.LogPath, opts.Console, typing)
	if err != nil {
		return res, fmt.Errorf("qemu-tests: %w", err)
	}
	defer con.close()
	res.LogPath = con.logPath()

	// With -serial stdio, QEMU's standard input is the console's keyboard.
	proc, err := startProcess(binPath, args, con.outW, con.keysR)
	con.started()
	if err != nil {
		return res, fmt.Errorf("qemu-tests: %w", err)
	}
	if m.Serial != SerialSocket {
		socket = ""
	}
	out := readOutput(proc.start, con.outR, socket, proc.exited)
	// Whatever happens below, QEMU and anything it started die first,
	// then the readers are unblocked and waited for.
	defer func() {
		proc.kill()
		out.shutdown()
	}()
	if opts.OnStart != nil {
		opts.OnStart(proc.pid)
	}

	mt := newMatcher(markers, s.tailLines)
	mt.abort = opts.Abort
	loop := &markerLoop{
		markers: markers, mt: mt, scale: s.scale, quiet: s.quiet, onMarker: opts.OnMarker,
		proc: proc, con: con, out: out, res: res,
	}
	return loop.run(ctx)
}

// checkMarkers refuses a run that cannot start or whose markers are not
// valid; it reports whether the markers type console input.
func checkMarkers(ctx context.Context, m Machine, markers []Marker) (typing bool, err error) {
	if len(markers) == 0 {
		return false, errors.New("no markers to wait for")
	}
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("not started: %w", err)
	}
	for i, mk := range markers {
		if err := mk.validate(i); err != nil {
			return false, err
		}
		typing = typing || mk.Then != "" || mk.Diagnose != ""
	}
	if typing && m.Serial != SerialStdio {
		return false, errors.New("markers type console input (Then, Diagnose), which needs a SerialStdio machine")
	}
	return typing, nil
}

// settings are the Options and environment a run resolves to.
type settings struct {
	accel     string
	scale     float64
	tailLines int
	quiet     time.Duration
}

func resolveSettings(m Machine, opts Options) (settings, error) {
	s := settings{tailLines: opts.TailLines, quiet: opts.Quiet}
	if s.tailLines <= 0 {
		s.tailLines = defaultTailLines
	}
	if s.quiet <= 0 {
		s.quiet = 500 * time.Millisecond
	}
	getenv := opts.getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	var err error
	if s.accel, err = resolveAccel(m.Accel, getenv, kvmUsable, logger); err != nil {
		return s, err
	}
	if s.scale, err = resolveScale(opts.TimeoutScale, s.accel, getenv); err != nil {
		return s, err
	}
	return s, nil
}

// lookQEMU finds the QEMU binary; "" means qemu-system-x86_64.
func lookQEMU(bin string) (string, error) {
	if bin == "" {
		bin = "qemu-system-x86_64"
	}
	p, err := exec.LookPath(bin)
	if err != nil {
		return "", fmt.Errorf("%s not found (apt-get install -y qemu-system-x86): %w", bin, err)
	}
	return p, nil
}
