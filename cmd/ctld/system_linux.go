package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

// monotonic reads CLOCK_MONOTONIC, which starts with the kernel: step lines
// then say when, in dom0's life, each step ended.
func monotonic() time.Duration {
	var ts syscall.Timespec
	const clockMonotonic = 1
	if _, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockMonotonic, uintptr(unsafe.Pointer(&ts)), 0); errno != 0 {
		return 0
	}
	return time.Duration(ts.Nano())
}

// execRunner runs real programs.
type execRunner struct{}

func (execRunner) output(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = strings.TrimSpace(string(out))
		}
		if msg != "" {
			return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, msg)
		}
		return out, fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return out, nil
}

type process struct {
	ch   chan struct{}
	werr error
}

func (p *process) done() <-chan struct{} { return p.ch }
func (p *process) err() error            { return p.werr }

func (execRunner) traced(ctx context.Context, each func(string), name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	pr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	// A debug log is long: a failure's message keeps its error lines, or
	// else its last line that is not debug detail (xl's own messages, such
	// as a config's parse error, have no level; its exit prints debug
	// statistics after them).
	var errs []string
	last := ""
	sc := bufio.NewScanner(pr)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		each(l)
		t := strings.TrimSpace(l)
		switch {
		case strings.Contains(t, ": error: "):
			if len(errs) < 4 {
				errs = append(errs, t)
			}
		case t != "" && !strings.Contains(t, ": debug: ") && !strings.Contains(t, ": detail: ") && !strings.Contains(t, ": info: "):
			last = t
		}
	}
	io.Copy(io.Discard, pr) // after an overlong line: let it finish
	if err := cmd.Wait(); err != nil {
		msg := strings.Join(errs, "; ")
		if msg == "" {
			msg = last
		}
		if msg != "" {
			return stdout.Bytes(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, msg)
		}
		return stdout.Bytes(), fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return stdout.Bytes(), nil
}

func (execRunner) startDaemon(name, logPath string, args ...string) (daemon, error) {
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	null, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	defer null.Close()
	cmd := exec.Command(name, args...)
	// Files, not pipes: the daemon must not depend on ctld, which exits.
	cmd.Stdin, cmd.Stdout, cmd.Stderr = null, logf, logf
	// Its own session: when ctld (the console's session leader) exits, the
	// kernel hangs up ctld's session, not the daemon's.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{ch: make(chan struct{})}
	go func() {
		p.werr = cmd.Wait()
		if p.werr == nil {
			p.werr = errors.New("exit status 0")
		}
		close(p.ch)
	}()
	return p, nil
}

// linuxSystem talks to the running kernel.
type linuxSystem struct{}

func (linuxSystem) mounts() ([]mountPoint, error) {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ms []mountPoint
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) >= 3 {
			ms = append(ms, mountPoint{Target: fields[1], FSType: fields[2]})
		}
	}
	return ms, s.Err()
}

func (linuxSystem) mount(source, target, fstype string) error {
	return syscall.Mount(source, target, fstype, 0, "")
}

func (linuxSystem) mkdirAll(p string) error { return os.MkdirAll(p, 0o755) }

func (linuxSystem) readFile(p string) ([]byte, error) { return os.ReadFile(p) }

func (linuxSystem) exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func (linuxSystem) writeFile(p string, data []byte, perm fs.FileMode) error {
	return os.WriteFile(p, data, perm)
}

// readPhys reads machine memory, such as the memory-mapped SPI flash. A Xen
// PV dom0 cannot use /dev/mem for that: its reads go through the kernel's
// physical-to-machine map, which has no entry for addresses past the end of
// the firmware's memory map, where QEMU's flash (and many boards') sits. So
// it maps the machine frames through privcmd, as the toolstack maps guest
// memory; without privcmd (no Xen), /dev/mem.
func (linuxSystem) readPhys(addr, n uint64) ([]byte, error) {
	if addr > math.MaxInt64-n {
		return nil, fmt.Errorf("address %#x+%#x out of range", addr, n)
	}
	if f, err := os.Open(privcmdPath); err == nil {
		defer f.Close()
		b, err := privcmdRead(f, addr, n)
		if err != nil {
			return nil, fmt.Errorf("%s: %#x+%#x: %w", privcmdPath, addr, n, err)
		}
		return b, nil
	}
	f, err := os.Open("/dev/mem")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, int64(addr)); err != nil {
		return nil, fmt.Errorf("/dev/mem: %#x+%#x: %w", addr, n, err)
	}
	return b, nil
}

const (
	privcmdPath = "/dev/xen/privcmd"
	// IOCTL_PRIVCMD_MMAPBATCH_V2: _IOC(_IOC_NONE, 'P', 4, sizeof(struct privcmd_mmapbatch_v2)).
	ioctlPrivcmdMmapbatchV2 = 0x00205004
	domidSelf               = 0x7ff0
	pageSize                = 4096
)

// privcmdMmapbatchV2 is struct privcmd_mmapbatch_v2 (include/uapi/xen/privcmd.h).
type privcmdMmapbatchV2 struct {
	Num  uint32
	Dom  uint16
	_    uint16
	Addr uint64
	Arr  uintptr // *xen_pfn_t, one machine frame number per page
	Err  uintptr // *int32, per-page errors
}

func privcmdRead(f *os.File, addr, n uint64) ([]byte, error) {
	first := addr / pageSize
	pages := (addr+n+pageSize-1)/pageSize - first
	mem, err := syscall.Mmap(int(f.Fd()), 0, int(pages*pageSize), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap: %w", err)
	}
	defer syscall.Munmap(mem)
	frames := make([]uint64, pages)
	for i := range frames {
		frames[i] = first + uint64(i)
	}
	errs := make([]int32, pages)
	req := privcmdMmapbatchV2{
		Num:  uint32(pages),
		Dom:  domidSelf,
		Addr: uint64(uintptr(unsafe.Pointer(&mem[0]))),
		Arr:  uintptr(unsafe.Pointer(&frames[0])),
		Err:  uintptr(unsafe.Pointer(&errs[0])),
	}
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), ioctlPrivcmdMmapbatchV2, uintptr(unsafe.Pointer(&req)))
	runtime.KeepAlive(frames)
	runtime.KeepAlive(errs)
	if errno != 0 {
		return nil, fmt.Errorf("map machine frames: %w", errno)
	}
	for i, e := range errs {
		if e != 0 {
			return nil, fmt.Errorf("map machine frame %#x: %w", first+uint64(i), syscall.Errno(-e))
		}
	}
	off := addr - first*pageSize
	return append([]byte(nil), mem[off:off+n]...), nil
}

func (linuxSystem) readlink(p string) (string, error) { return filepath.EvalSymlinks(p) }

func (linuxSystem) glob(pattern string) ([]string, error) { return filepath.Glob(pattern) }

// loadModule loads a kernel module with finit_module(2); one that is already
// loaded is not an error.
func (linuxSystem) loadModule(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	params := []byte{0}
	_, _, errno := syscall.Syscall(sysFinitModule, f.Fd(), uintptr(unsafe.Pointer(&params[0])), 0)
	if errno != 0 && errno != syscall.EEXIST {
		return fmt.Errorf("finit_module: %w", errno)
	}
	return nil
}

func (linuxSystem) dialUnix(p string) error {
	c, err := net.DialTimeout("unix", p, time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

// releaseTTY gives up the controlling terminal before ctld exits. u-root's
// init starts uinit as a session leader on the console; when a session
// leader exits while it still has a controlling terminal, the kernel hangs
// the terminal up, which also kills init's own handle on it, so the shell
// init starts next would print nothing. TIOCNOTTY detaches without a
// hangup; it signals SIGHUP to ctld's own process group, hence the Ignore.
func releaseTTY() {
	signal.Ignore(syscall.SIGHUP)
	f, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return // no controlling terminal
	}
	defer f.Close()
	syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), syscall.TIOCNOTTY, 0)
}

// consoleStream is a running program's output; Close stops the program.
type consoleStream struct {
	r     *os.File
	stdin io.Closer
	cmd   *exec.Cmd
}

func (s *consoleStream) Read(p []byte) (int, error) { return s.r.Read(p) }

func (s *consoleStream) Close() error {
	s.cmd.Process.Kill()
	s.stdin.Close()
	return s.r.Close()
}

func (execRunner) stream(ctx context.Context, name string, args ...string) (io.ReadCloser, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = pw, pw
	// xenconsole quits when its standard input reaches end of file, so it
	// gets a pipe that is never written or closed while it runs.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		pr.Close()
		pw.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	pw.Close()
	go cmd.Wait()
	return &consoleStream{r: pr, stdin: stdin, cmd: cmd}, nil
}

// startHelper runs ctld again with mode (-guests, or -start <guest>) in its
// own session, writing to ctld's output, and does not wait for it.
// /proc/self/exe with ctld's own argv[0] reaches ctld inside the u-root
// busybox too.
func startHelper(cfg config, mode ...string) error {
	cmd := helperCommand(cfg, mode...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start guest helper: %w", err)
	}
	return cmd.Process.Release()
}

func helperCommand(cfg config, mode ...string) *exec.Cmd {
	cmd := exec.Command("/proc/self/exe", append([]string{"-xen-bin", cfg.XenBin, "-guests-dir", cfg.GuestsDir}, mode...)...)
	cmd.Args[0] = os.Args[0]
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	return cmd
}

// earlyHelper is the guest helper (ctld -guests) started before the
// control domain is up. Its own start, the u-root busybox's runtime and
// package initialisation (0.2 s of dom0 under TCG), then overlaps the
// daemons' start instead of delaying the guests after the ready line. It
// waits on its file descriptor 3 for go, and exits quietly when ctld closes
// the pipe without it (a failed boot, or nothing for a helper to do).
type earlyHelper struct{ w *os.File }

// helperGoFD is where an early helper reads its go (waitForGo).
const helperGoFD = 3

func startEarlyHelper(cfg config) (*earlyHelper, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start guest helper: %w", err)
	}
	cmd := helperCommand(cfg, "-guests", "-wait-go")
	cmd.ExtraFiles = []*os.File{r} // helperGoFD
	err = cmd.Start()
	r.Close()
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("start guest helper: %w", err)
	}
	cmd.Process.Release()
	return &earlyHelper{w: w}, nil
}

// start lets the helper go, with the toolstack directory ctld found.
func (h *earlyHelper) start(xenBin string) error {
	defer h.w.Close()
	if err := writeGo(h.w, xenBin); err != nil {
		return fmt.Errorf("start guest helper: %w", err)
	}
	return nil
}

// cancel lets the helper exit without doing anything.
func (h *earlyHelper) cancel() { h.w.Close() }
