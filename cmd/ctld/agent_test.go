package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/contract"
)

// fakeRunner stands in for the real binaries at the exec boundary. Results
// are looked up by the command line; unknown commands fail.
type fakeRunner struct {
	mu      sync.Mutex // tests that watch from another goroutine
	calls   []string
	results map[string]fakeResult
	// daemons maps a daemon's binary to what starting it does.
	daemons map[string]func(*fakeSystem) *fakeDaemon
	sys     *fakeSystem
	// streams maps a command line to its console output.
	streams map[string]string
	// lists, when set, answers successive plain "xl list" calls in turn
	// (the last one repeats).
	lists []string
}

func (r *fakeRunner) stream(_ context.Context, name string, args ...string) (io.ReadCloser, error) {
	line := strings.TrimSpace(name + " " + strings.Join(args, " "))
	r.mu.Lock()
	r.calls = append(r.calls, "stream "+line)
	out, ok := r.streams[line]
	r.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%s: no such command in fake", line)
	}
	// Like xl console, the stream stays open after its output until
	// closed.
	pr, pw := io.Pipe()
	go func() { io.WriteString(pw, out) }()
	return pr, nil
}

// listCount is how many plain xl list calls ran.
func (r *fakeRunner) listCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.calls {
		if c == xenBin+"/xl list" {
			n++
		}
	}
	return n
}

type fakeResult struct {
	out string
	log string // standard error, for traced
	err error
	// then changes the fake system when the command runs (e.g. a daemon
	// becoming ready after some probes).
	then func(*fakeSystem)
	// wait, when set, holds the command until it is closed (or the
	// command's context ends).
	wait <-chan struct{}
}

func (r *fakeRunner) output(ctx context.Context, name string, args ...string) ([]byte, error) {
	line := strings.TrimSpace(name + " " + strings.Join(args, " "))
	r.mu.Lock()
	r.calls = append(r.calls, line)
	if line == xenBin+"/xl list" && len(r.lists) > 0 {
		out := r.lists[0]
		if len(r.lists) > 1 {
			r.lists = r.lists[1:]
		}
		r.mu.Unlock()
		return []byte(out), nil
	}
	res, ok := r.results[line]
	r.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%s: no such command in fake", line)
	}
	if res.wait != nil {
		select {
		case <-res.wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if res.then != nil {
		r.sys.mu.Lock()
		res.then(r.sys)
		r.sys.mu.Unlock()
	}
	return []byte(res.out), res.err
}

// traced answers as output does; a result's log is its standard error,
// handed over a line at a time.
func (r *fakeRunner) traced(ctx context.Context, each func(string), name string, args ...string) ([]byte, error) {
	out, err := r.output(ctx, name, args...)
	line := strings.TrimSpace(name + " " + strings.Join(args, " "))
	r.mu.Lock()
	log := r.results[line].log
	r.mu.Unlock()
	for _, l := range strings.Split(strings.TrimSuffix(log, "\n"), "\n") {
		if l != "" {
			each(l)
		}
	}
	return out, err
}

func (r *fakeRunner) startDaemon(name, logPath string, args ...string) (daemon, error) {
	r.mu.Lock()
	r.calls = append(r.calls, "start "+strings.TrimSpace(name+" "+strings.Join(args, " "))+" >"+logPath)
	f, ok := r.daemons[name]
	r.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("start %s: no such file or directory", name)
	}
	r.sys.mu.Lock()
	defer r.sys.mu.Unlock()
	return f(r.sys), nil
}

type fakeDaemon struct {
	ch   chan struct{}
	werr error
}

func (d *fakeDaemon) done() <-chan struct{} { return d.ch }
func (d *fakeDaemon) err() error            { return d.werr }

func running() *fakeDaemon { return &fakeDaemon{ch: make(chan struct{})} }

func exited(err error) *fakeDaemon {
	d := &fakeDaemon{ch: make(chan struct{}), werr: err}
	close(d.ch)
	return d
}

type fakeSystem struct {
	// mu guards the maps for steps that run side by side (runStage); the
	// fakeRunner holds it while a command changes the system.
	mu      sync.Mutex
	files   map[string]string
	perms   map[string]fs.FileMode
	dirs    map[string]bool
	phys    map[uint64][]byte // physical memory: a region's bytes at its address
	mounted []mountPoint
	sockets map[string]bool
	modules []string
	calls   []string
	failMod string
	links   map[string]string // readlink results
}

func (s *fakeSystem) mounts() ([]mountPoint, error) { return s.mounted, nil }
func (s *fakeSystem) mount(source, target, fstype string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, "mount "+fstype+" "+target)
	s.mounted = append(s.mounted, mountPoint{target, fstype})
	if fstype == "xenfs" {
		s.files["/proc/xen/capabilities"] = "control_d\n"
	}
	return nil
}
func (s *fakeSystem) mkdirAll(p string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, "mkdir "+p)
	if s.dirs == nil {
		s.dirs = map[string]bool{}
	}
	for d := p; d != "/" && d != "."; d = path.Dir(d) {
		s.dirs[d] = true
	}
	return nil
}
func (s *fakeSystem) readFile(p string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.files[p]; ok {
		return []byte(c), nil
	}
	return nil, &os.PathError{Op: "open", Path: p, Err: os.ErrNotExist}
}
func (s *fakeSystem) exists(p string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.files[p]
	return ok || s.dirs[p]
}
func (s *fakeSystem) loadModule(p string) error {
	if p == s.failMod {
		return errors.New("finit_module: exec format error")
	}
	s.modules = append(s.modules, p)
	return nil
}
func (s *fakeSystem) glob(pattern string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for p := range s.files {
		if ok, _ := path.Match(pattern, p); ok {
			out = append(out, p)
		}
	}
	return out, nil
}
func (s *fakeSystem) writeFile(p string, data []byte, perm fs.FileMode) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, "write "+p)
	s.files[p] = string(data)
	if s.perms == nil {
		s.perms = map[string]fs.FileMode{}
	}
	s.perms[p] = perm
	return nil
}
func (s *fakeSystem) readPhys(addr, n uint64) ([]byte, error) {
	for base, b := range s.phys {
		if addr >= base && addr+n <= base+uint64(len(b)) {
			return b[addr-base : addr-base+n], nil
		}
	}
	return nil, fmt.Errorf("read /dev/mem %#x+%#x: bad address", addr, n)
}
func (s *fakeSystem) readlink(p string) (string, error) {
	if t, ok := s.links[p]; ok {
		return t, nil
	}
	return p, nil
}
func (s *fakeSystem) dialUnix(p string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sockets[p] {
		return nil
	}
	return errors.New("connect: no such file or directory")
}

const (
	xenBin = "/usr/lib/xen-4.17/bin"
	// Captured from `xl list` in dom0 booted by the acceptance run.
	xlListDom0 = `Name                                        ID   Mem VCPUs	State	Time(s)
Domain-0                                     0   512     2     r-----       6.4
`
)

// world is a healthy dom0 as u-root's init leaves it: proc, sys and dev
// mounted, lo up, the toolstack installed, modules listed.
func world(t *testing.T) (*agent, *fakeRunner, *fakeSystem, *bytes.Buffer) {
	t.Helper()
	info, err := os.ReadFile("testdata/xl-info.txt")
	if err != nil {
		t.Fatal(err)
	}
	sys := &fakeSystem{
		files: map[string]string{
			"/etc/fwbuild/modules":          "/lib/modules/6.1.0-47-amd64/kernel/drivers/xen/xen-privcmd.ko\n/lib/modules/6.1.0-47-amd64/kernel/drivers/xen/xenfs/xenfs.ko\n",
			"/sys/hypervisor/version/major": "4\n",
			"/sys/hypervisor/version/minor": "17\n",
			xenBin + "/xenstored":           "",
			xenBin + "/xenconsoled":         "",
			xenBin + "/xen-init-dom0":       "",
			xenBin + "/xl":                  "",
			"/usr/bin/xenstore-list":        "",
			"/sys/class/net/lo/flags":       "0x9\n",
			"/proc/cmdline":                 "console=hvc0 earlyprintk=xen\n",
		},
		mounted: []mountPoint{{"/", "rootfs"}, {"/proc", "proc"}, {"/sys", "sysfs"}, {"/dev", "devtmpfs"}},
		sockets: map[string]bool{},
	}
	probes := 0
	r := &fakeRunner{
		sys: sys,
		results: map[string]fakeResult{
			"/usr/bin/xenstore-list /": {out: "tool\nlocal\n", then: func(*fakeSystem) { probes++ }},
			xenBin + "/xen-init-dom0":  {out: "Done setting up Dom0\n"},
			xenBin + "/xl info":        {out: string(info)},
			xenBin + "/xl list":        {out: xlListDom0},
		},
		daemons: map[string]func(*fakeSystem) *fakeDaemon{
			xenBin + "/xenstored": func(s *fakeSystem) *fakeDaemon {
				s.sockets[xenstoredSocket] = true
				return running()
			},
			xenBin + "/xenconsoled": func(s *fakeSystem) *fakeDaemon {
				s.files[hypervisorLog] = ""
				return running()
			},
		},
	}
	var out bytes.Buffer
	cfg := defaultConfig()
	cfg.Timeout = 2 * time.Second
	cfg.Poll = time.Millisecond
	return &agent{cfg: cfg, run: r, sys: sys, out: &out}, r, sys, &out
}

func TestStartReady(t *testing.T) {
	a, r, sys, out := world(t)
	if err := a.start(context.Background()); err != nil {
		t.Fatalf("start: %v\noutput: %s", err, out)
	}
	if got, want := out.String(), "fwbuild-ctld: ready xen=4.17.7 dom0_mem=512 guests=0\n"; got != want {
		t.Errorf("output %q, want %q", got, want)
	}
	wantCalls := []string{
		"start " + xenBin + "/xenstored --no-fork --pid-file /var/run/xen/xenstored.pid >/var/log/xen/xenstored.log",
		"/usr/bin/xenstore-list /",
		xenBin + "/xen-init-dom0",
		"start " + xenBin + "/xenconsoled -i --log=all >/var/log/xen/xenconsoled.log",
		xenBin + "/xl info",
		xenBin + "/xl list",
	}
	// xen-init-dom0 and xenconsoled start side by side, in either order.
	if len(r.calls) == len(wantCalls) && r.calls[2] == wantCalls[3] {
		r.calls[2], r.calls[3] = r.calls[3], r.calls[2]
	}
	if strings.Join(r.calls, "\n") != strings.Join(wantCalls, "\n") {
		t.Errorf("commands:\n%s\nwant:\n%s", strings.Join(r.calls, "\n"), strings.Join(wantCalls, "\n"))
	}
	wantMods := []string{
		"/lib/modules/6.1.0-47-amd64/kernel/drivers/xen/xen-privcmd.ko",
		"/lib/modules/6.1.0-47-amd64/kernel/drivers/xen/xenfs/xenfs.ko",
	}
	if strings.Join(sys.modules, " ") != strings.Join(wantMods, " ") {
		t.Errorf("modules loaded %v, want %v", sys.modules, wantMods)
	}
	// proc, sys and dev were mounted already: only xenfs is mounted, after
	// the modules that provide it.
	var mounts []string
	for _, c := range sys.calls {
		if strings.HasPrefix(c, "mount ") {
			mounts = append(mounts, c)
		}
	}
	if strings.Join(mounts, ",") != "mount xenfs /proc/xen" {
		t.Errorf("mounts %v, want only xenfs", mounts)
	}
	for _, d := range runtimeDirs {
		if !contains(sys.calls, "mkdir "+d) {
			t.Errorf("runtime dir %s not created", d)
		}
	}
}

func TestStartMountsMissingAndBringsUpLoopback(t *testing.T) {
	a, r, sys, out := world(t)
	sys.mounted = []mountPoint{{"/", "rootfs"}, {"/proc", "proc"}}
	sys.files["/sys/class/net/lo/flags"] = "0x8\n"
	r.results["ip link set dev lo up"] = fakeResult{}
	if err := a.start(context.Background()); err != nil {
		t.Fatalf("start: %v\noutput: %s", err, out)
	}
	for _, want := range []string{"mount sysfs /sys", "mount devtmpfs /dev"} {
		if !contains(sys.calls, want) {
			t.Errorf("%q not done; calls %v", want, sys.calls)
		}
	}
	if contains(sys.calls, "mount proc /proc") {
		t.Error("mounted /proc again")
	}
	if !contains(r.calls, "ip link set dev lo up") {
		t.Errorf("loopback not brought up; calls %v", r.calls)
	}
}

func TestStartCountsGuests(t *testing.T) {
	a, r, _, out := world(t)
	r.results[xenBin+"/xl list"] = fakeResult{out: xlListDom0 + "guest-one 3 128 1 -b---- 0.5\nweb 7 256 1 r----- 1.0\n"}
	if err := a.start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "fwbuild-ctld: ready xen=4.17.7 dom0_mem=512 guests=2\n"; got != want {
		t.Errorf("output %q, want %q", got, want)
	}
}

func TestStartWithoutModulesList(t *testing.T) {
	a, _, sys, out := world(t)
	delete(sys.files, "/etc/fwbuild/modules")
	if err := a.start(context.Background()); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(sys.modules) != 0 {
		t.Errorf("loaded %v", sys.modules)
	}
}

func TestStartFailures(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(a *agent, r *fakeRunner, s *fakeSystem)
		want   string // prefix of the single output line
	}{
		{"module", func(a *agent, r *fakeRunner, s *fakeSystem) {
			s.failMod = "/lib/modules/6.1.0-47-amd64/kernel/drivers/xen/xenfs/xenfs.ko"
		}, "fwbuild-ctld: FAILED modules: load /lib/modules/6.1.0-47-amd64/kernel/drivers/xen/xenfs/xenfs.ko: finit_module: exec format error"},
		{"not dom0", func(a *agent, r *fakeRunner, s *fakeSystem) {
			s.files["/proc/xen/capabilities"] = "\n"
		}, `fwbuild-ctld: FAILED xenfs: /proc/xen/capabilities says "": this domain is not the control domain`},
		{"toolstack missing", func(a *agent, r *fakeRunner, s *fakeSystem) {
			delete(s.files, xenBin+"/xl")
		}, "fwbuild-ctld: FAILED toolstack: missing from the initramfs: /usr/lib/xen-4.17/bin/xl"},
		{"other hypervisor version", func(a *agent, r *fakeRunner, s *fakeSystem) {
			s.files["/sys/hypervisor/version/minor"] = "18\n"
		}, "fwbuild-ctld: FAILED toolstack: missing from the initramfs: /usr/lib/xen-4.18/bin/xenstored"},
		{"xenstored dies", func(a *agent, r *fakeRunner, s *fakeSystem) {
			s.files["/var/log/xen/xenstored.log"] = "xenstored: error while loading shared libraries: libxenctrl.so.4.17\n"
			r.daemons[xenBin+"/xenstored"] = func(*fakeSystem) *fakeDaemon { return exited(errors.New("exit status 127")) }
		}, "fwbuild-ctld: FAILED xenstored: exited: exit status 127 (/var/log/xen/xenstored.log: xenstored: error while loading shared libraries: libxenctrl.so.4.17)"},
		{"xenstored never answers", func(a *agent, r *fakeRunner, s *fakeSystem) {
			a.cfg.Timeout = 50 * time.Millisecond
			r.results["/usr/bin/xenstore-list /"] = fakeResult{err: errors.New("exit status 1")}
		}, "fwbuild-ctld: FAILED xenstored: not ready after 50ms: exit status 1"},
		{"xen-init-dom0", func(a *agent, r *fakeRunner, s *fakeSystem) {
			r.results[xenBin+"/xen-init-dom0"] = fakeResult{err: errors.New("exit status 1: xenstore_write failed\nmore")}
		}, "fwbuild-ctld: FAILED xen-init-dom0: exit status 1: xenstore_write failed more"},
		{"xenconsoled", func(a *agent, r *fakeRunner, s *fakeSystem) {
			delete(r.daemons, xenBin+"/xenconsoled")
		}, "fwbuild-ctld: FAILED xenconsoled: start /usr/lib/xen-4.17/bin/xenconsoled: no such file or directory"},
		{"xl info garbage", func(a *agent, r *fakeRunner, s *fakeSystem) {
			r.results[xenBin+"/xl info"] = fakeResult{out: "host : x\n"}
		}, `fwbuild-ctld: FAILED status: xl info: no numeric xen_major/xen_minor (got "", "")`},
		{"no dom0 in xl list", func(a *agent, r *fakeRunner, s *fakeSystem) {
			r.results[xenBin+"/xl list"] = fakeResult{out: "Name ID Mem VCPUs State Time(s)\n"}
		}, "fwbuild-ctld: FAILED status: xl list: no domain with ID 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, r, sys, out := world(t)
			tc.break_(a, r, sys)
			err := a.start(context.Background())
			if err == nil {
				t.Fatalf("start succeeded: %s", out)
			}
			lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], tc.want) {
				t.Errorf("output %q, want one line starting %q", out.String(), tc.want)
			}
			if err.Error() != lines[0] {
				t.Errorf("error %q differs from printed line %q", err, lines[0])
			}
		})
	}
}

func TestParseXLInfoReal(t *testing.T) {
	b, err := os.ReadFile("testdata/xl-info.txt")
	if err != nil {
		t.Fatal(err)
	}
	m := parseXLInfo(b)
	if m["xen_major"] != "4" || m["xen_minor"] != "17" || m["xen_extra"] != ".7" {
		t.Errorf("parsed %q %q %q", m["xen_major"], m["xen_minor"], m["xen_extra"])
	}
	// Values may hold colons (xen_caps, virt_caps): only the first splits.
	if !strings.Contains(m["xen_commandline"], "dom0_mem=512M,max:512M") {
		t.Errorf("xen_commandline = %q", m["xen_commandline"])
	}
	v, err := xenVersion(m)
	if err != nil || v != "4.17.7" {
		t.Errorf("xenVersion = %q, %v", v, err)
	}
}

func TestParseXLList(t *testing.T) {
	doms, err := parseXLList([]byte(xlListDom0 + "a b c 9 64 1 -b---- 0.1\n"))
	if err == nil {
		t.Errorf("name with spaces accepted: %v", doms)
	}
	doms, err = parseXLList([]byte(xlListDom0 + "web 7 256 1 r----- 1.0\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(doms) != 2 || doms[0] != (domain{"Domain-0", 0, 512, "r-----"}) || doms[1] != (domain{"web", 7, 256, "r-----"}) {
		t.Errorf("parsed %+v", doms)
	}
	for _, bad := range []string{"", "ID Name\n", "Name ID Mem\nx y 3\n", "Name ID Mem\nx 1 -3\n"} {
		if d, err := parseXLList([]byte(bad)); err == nil {
			t.Errorf("parseXLList(%q) = %v, want error", bad, d)
		}
	}
}

func FuzzParseXL(f *testing.F) {
	if b, err := os.ReadFile("testdata/xl-info.txt"); err == nil {
		f.Add(b)
	}
	f.Add([]byte(xlListDom0))
	f.Add([]byte("Name ID Mem\n x 99999999999999999999999 1\n"))
	f.Add([]byte(xlListDom0 + "web 5 128 1 ----c- 0.2\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m := parseXLInfo(b)
		if v, err := xenVersion(m); err == nil && strings.ContainsAny(v, " \t\n") {
			t.Errorf("version %q has spaces", v)
		}
		doms, err := parseXLList(b)
		if err == nil {
			for _, d := range doms {
				if d.ID < 0 || d.MemMiB < 0 || d.Name == "" || strings.ContainsAny(d.State, " \t\n") {
					t.Errorf("bad domain %+v", d)
				}
				stoppedState(d.State)
			}
		}
		line := (&stepError{step: "x", err: errors.New(string(b))}).Error()
		if strings.Contains(line, "\n") {
			t.Errorf("FAILED line has a newline: %q", line)
		}
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Each step of start prints its timing line as it ends, on the step
// clock, before the ready line; a failed step's line comes before its
// FAILED line.
func TestStartStepLines(t *testing.T) {
	a, _, _, out := world(t)
	var mu sync.Mutex
	var tick time.Duration
	a.steps, a.clock = out, func() time.Duration {
		mu.Lock()
		defer mu.Unlock()
		tick += 5 * time.Millisecond
		return tick
	}
	if err := a.start(context.Background()); err != nil {
		t.Fatalf("start: %v\noutput: %s", err, out)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	// xen-init-dom0 and xenconsoled run side by side (one stage), so they
	// may end, and print, in either order, and their clock reads interleave.
	side := map[string]bool{"xen-init-dom0": true, "xenconsoled": true}
	var names []string
	for i, l := range lines[:len(lines)-1] {
		s, err := contract.ParseStep(l)
		if err != nil {
			t.Fatal(err)
		}
		if side[s.Name] {
			// Two reads of their own, up to two of the sibling's between.
			if s.Took < 5*time.Millisecond || s.Took > 15*time.Millisecond {
				t.Errorf("step %s took %v, want 5-15ms", s.Name, s.Took)
			}
		} else if s.Took != 5*time.Millisecond || s.At != time.Duration(i+1)*10*time.Millisecond {
			// Two clock reads a step: took 5ms, ending 10ms after the last.
			t.Errorf("step %s took %v at %v, want 5ms at %v", s.Name, s.Took, s.At, time.Duration(i+1)*10*time.Millisecond)
		}
		names = append(names, s.Name)
	}
	got := strings.Replace(strings.Join(names, " "), "xenconsoled xen-init-dom0", "xen-init-dom0 xenconsoled", 1)
	want := "mount version modules xenfs toolstack dirs xenstored xen-init-dom0 xenconsoled loopback guests status find-guests"
	if got != want {
		t.Errorf("steps %q, want %q (the middle pair in either order)", strings.Join(names, " "), want)
	}
	if _, err := contract.ParseReady(lines[len(lines)-1]); err != nil {
		t.Errorf("last line: %v", err)
	}

	a, r, _, out := world(t)
	a.steps = out
	r.results[xenBin+"/xen-init-dom0"] = fakeResult{err: errors.New("exit status 1")}
	if err := a.start(context.Background()); err == nil {
		t.Fatal("start succeeded")
	}
	text := out.String()
	lines = strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if n := len(lines); n < 2 || !strings.Contains(text, "fwbuild-ctld: step xen-init-dom0 took=") || !strings.HasPrefix(lines[n-1], "fwbuild-ctld: FAILED xen-init-dom0: ") {
		t.Errorf("output:\n%s", out)
	}
}

// xen-init-dom0 and xenconsoled need only xenstored: ctld runs them side by
// side. xen-init-dom0 here cannot finish before xenconsoled has started, so
// run one after the other they would never end.
func TestStartRunsXenInitDom0BesideXenconsoled(t *testing.T) {
	a, r, _, out := world(t)
	started := make(chan struct{})
	r.results[xenBin+"/xen-init-dom0"] = fakeResult{out: "Done setting up Dom0\n", wait: started}
	consoled := r.daemons[xenBin+"/xenconsoled"]
	r.daemons[xenBin+"/xenconsoled"] = func(s *fakeSystem) *fakeDaemon {
		close(started)
		return consoled(s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.start(ctx); err != nil {
		t.Fatalf("start: %v\noutput: %s", err, out)
	}
	if _, err := contract.ParseReady(strings.TrimSpace(out.String())); err != nil {
		t.Errorf("output %q: %v", out, err)
	}
}

// When one of two steps side by side fails, the FAILED line names it, not
// the sibling its failure cancelled, and comes without waiting for the
// sibling's timeout.
func TestStartSideBySideFailureNamesTheCause(t *testing.T) {
	a, r, _, out := world(t)
	a.cfg.Timeout = time.Minute
	never := make(chan struct{})
	r.results[xenBin+"/xen-init-dom0"] = fakeResult{wait: never}
	r.daemons[xenBin+"/xenconsoled"] = func(*fakeSystem) *fakeDaemon { return exited(errors.New("exit status 1")) }
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	t0 := time.Now()
	err := a.start(ctx)
	var se *stepError
	if !errors.As(err, &se) || se.step != "xenconsoled" {
		t.Fatalf("start: %v, want the xenconsoled step's failure\noutput: %s", err, out)
	}
	if !strings.HasPrefix(out.String(), "fwbuild-ctld: FAILED xenconsoled: exited: exit status 1") {
		t.Errorf("output %q", out)
	}
	if d := time.Since(t0); d > 10*time.Second {
		t.Errorf("FAILED after %v: the cancelled sibling held it back", d)
	}
}

// With xenstore's socket to talk to, ctld asks xenstored itself whether it
// answers; no xenstore-list runs on the way to the ready line.
func TestStartProbesXenstoredItself(t *testing.T) {
	a, r, _, out := world(t)
	f := startFakeXenstored(t, map[string]string{"/tool/xenstored": ""})
	a.xs = xsSocket{path: f.path}
	if err := a.start(context.Background()); err != nil {
		t.Fatalf("start: %v\noutput: %s", err, out)
	}
	if slices.Contains(r.calls, "/usr/bin/xenstore-list /") {
		t.Errorf("ran xenstore-list: %q", r.calls)
	}
	if !strings.HasPrefix(out.String(), "fwbuild-ctld: ready ") {
		t.Errorf("output %q", out)
	}

	// A xenstored that never answers still fails the step by its timeout.
	a, _, _, out = world(t)
	a.cfg.Timeout = 50 * time.Millisecond
	a.xs = xsSocket{path: t.TempDir() + "/none"}
	if err := a.start(context.Background()); err == nil || !strings.HasPrefix(out.String(), "fwbuild-ctld: FAILED xenstored: not ready after 50ms: xenstore: ") {
		t.Errorf("start: %v, output %q", err, out)
	}
}

// The ready line's facts come from dom0's kernel and xenstore, without an
// xl run; where the kernel lacks a file, from xl as before.
func TestStatusFromKernel(t *testing.T) {
	a, r, sys, _ := world(t)
	f := startFakeXenstored(t, map[string]string{"/local/domain/0/name": "Domain-0", "/local/domain/3/name": "web"})
	a.xs = xsSocket{path: f.path}
	a.cfg.XenBin = xenBin
	sys.files["/sys/hypervisor/type"] = "xen\n"
	sys.files["/sys/hypervisor/version/major"] = "4\n"
	sys.files["/sys/hypervisor/version/minor"] = "17\n"
	sys.files["/sys/hypervisor/version/extra"] = ".7\n"
	sys.files[balloonKiB] = "523264\n"
	st, err := a.status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := (status{Version: "4.17.7", Dom0MemMiB: 511, Guests: 1}); st != want {
		t.Errorf("status %+v, want %+v", st, want)
	}
	if len(r.calls) != 0 {
		t.Errorf("ran %q", r.calls)
	}

	delete(sys.files, balloonKiB) // a dom0 kernel without the balloon driver
	if st, err = a.status(context.Background()); err != nil || st.Dom0MemMiB != 512 || st.Version != "4.17.7" {
		t.Errorf("without %s: %+v, %v; want xl's answer", balloonKiB, st, err)
	}
	if want := []string{xenBin + "/xl info", xenBin + "/xl list"}; !slices.Equal(r.calls, want) {
		t.Errorf("ran %q, want %q", r.calls, want)
	}
}
