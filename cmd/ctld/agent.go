package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fwbuild/fwbuild/contract"
)

// Paths used at run time. They match what Debian's xen-utils-4.17 is compiled
// with (libxenstore connects to /var/run/xenstored/socket; xenconsoled logs
// under /var/log/xen/console).
const (
	xenstoredSocket = "/var/run/xenstored/socket"
	xenstoredPid    = "/var/run/xen/xenstored.pid"
	logDir          = "/var/log/xen"
	// xenconsoled --log=hv (or all) creates this once it has connected to
	// xenstore and the hypervisor, the only outward sign that it is up
	// (with -i it writes no pid file).
	hypervisorLog = logDir + "/console/hypervisor.log"
)

// runtimeDirs are what xencommons creates before starting the daemons; xl
// also needs /var/lib/xen and /var/run/xen.
var runtimeDirs = []string{
	"/var/run/xenstored",
	"/var/lib/xenstored",
	"/var/run/xen",
	"/var/lib/xen",
	logDir,
	logDir + "/console",
}

type config struct {
	// XenBin holds xenstored, xenconsoled, xen-init-dom0 and xl. Empty means
	// /usr/lib/xen-<major>.<minor>/bin for the running hypervisor.
	XenBin string
	// XenstoreBin holds the xenstore-* clients.
	XenstoreBin string
	// ModulesList names kernel modules to load, one path a line,
	// dependencies first. A missing file means none (a kernel with the Xen
	// drivers built in).
	ModulesList string
	// Timeout bounds the wait for each daemon to answer.
	Timeout time.Duration
	// Poll is the interval between readiness probes.
	Poll time.Duration
	// GuestsDir holds the guests' xl configs, <name>.cfg. Absent means
	// the profile declares no guests.
	GuestsDir string
	// GuestImages holds each guest's kernel and initramfs, <name>/vmlinuz
	// and <name>/initrd.
	GuestImages string
	// GuestWatch is how long started guests are watched for a crash or
	// shutdown, polling xl list every GuestPoll.
	GuestWatch time.Duration
	GuestPoll  time.Duration
	// HostConfig is the network and storage config (contract.HostConfig);
	// absent means neither.
	HostConfig string
	// DeviceWait bounds the wait for the NICs and the data disk to appear.
	DeviceWait time.Duration
	// ImagesManifest lists the guest-image files (contract.GuestImages).
	ImagesManifest string
	// RedfishPort is the Redfish service's TCP port on the management
	// address.
	RedfishPort int
	// MediaWait bounds the wait for the install media's images partition;
	// MediaGrace is how long it is awaited when no USB mass-storage device
	// is attached at all.
	MediaWait, MediaGrace time.Duration
}

func defaultConfig() config {
	return config{
		XenstoreBin: "/usr/bin",
		ModulesList: contract.ModulesList,
		Timeout:     60 * time.Second,
		Poll:        200 * time.Millisecond,
		GuestsDir:   contract.GuestsDir,
		GuestImages: contract.GuestImagesDir,
		GuestWatch:  2 * time.Minute,
		GuestPoll:   2 * time.Second,
		HostConfig:  contract.HostConfigPath,
		DeviceWait:  20 * time.Second,

		ImagesManifest: contract.GuestImagesManifest,
		RedfishPort:    443,
		MediaWait:      30 * time.Second,
		MediaGrace:     3 * time.Second,
	}
}

// runner is the exec boundary: the only place ctld starts other programs.
type runner interface {
	// output runs name to completion and returns its standard output.
	output(ctx context.Context, name string, args ...string) ([]byte, error)
	// startDaemon starts name in its own session with its output appended to
	// logPath, and returns without waiting for it.
	startDaemon(name, logPath string, args ...string) (daemon, error)
	// stream starts name and returns its merged standard output and error;
	// Close stops it. Its standard input stays open and empty.
	stream(ctx context.Context, name string, args ...string) (io.ReadCloser, error)
	// traced runs name to completion like output, and calls each with
	// every line of its standard error as it arrives (a log to time).
	traced(ctx context.Context, each func(line string), name string, args ...string) ([]byte, error)
}

// daemon is a started long-running process.
type daemon interface {
	// done is closed when the process exits.
	done() <-chan struct{}
	// err is why it exited; valid after done is closed.
	err() error
}

// system is the kernel boundary: mounts, files, modules, sockets.
type system interface {
	mounts() ([]mountPoint, error)
	mount(source, target, fstype string) error
	mkdirAll(path string) error
	readFile(path string) ([]byte, error)
	exists(path string) bool
	loadModule(path string) error
	glob(pattern string) ([]string, error)
	dialUnix(path string) error
	writeFile(path string, data []byte, perm fs.FileMode) error
	// readPhys reads physical memory (/dev/mem).
	readPhys(addr, n uint64) ([]byte, error)
	// readlink resolves every symlink in p (sysfs device paths).
	readlink(p string) (string, error)
}

type mountPoint struct {
	Target string
	FSType string
}

type agent struct {
	cfg config
	run runner
	sys system
	dev hostDevices // network and block devices (the guest helper and hotplug)
	// xs reads xenstore directly (domain ids, @releaseDomain); nil: ask xl.
	xs store
	// mgmt is the management address bringUpNetwork configured (the
	// Redfish service listens there and nowhere else).
	mgmt netip.Addr
	// redfishDone gets the Redfish service's error when it stops; nil
	// when it never started.
	redfishDone <-chan error
	out         io.Writer
	// steps, if set, receives a contract.Step line as each step ends,
	// timed on clock (the control domain's monotonic clock; nil: time
	// since the agent's first step).
	steps io.Writer
	clock func() time.Duration
	epoch time.Time
	// guests are the declared guests start found.
	guests []guest
	// version is the payload's (fwbuild.version=), "" when it has none.
	version string
	// slots are the ESP's payload slots and the one this boot runs, once
	// slotsReady is closed (nil: not an ESP boot).
	slots      *slotManager
	booted     string
	slotsReady chan struct{}
	// spiSlots is the SPI payload slot this boot runs (spislots.go); nil
	// when the launcher started none.
	spiSlots *spiSlots
	mu       sync.Mutex // serialises lines on out
}

// stepError names the step that failed; its text is the FAILED line.
type stepError struct {
	step string
	err  error
}

func (e *stepError) Error() string {
	return contract.Failed{Step: e.step, Reason: e.err.Error()}.String()
}

func (e *stepError) Unwrap() error { return e.err }

// start brings the control domain up and prints exactly one status line, the
// ready line or a FAILED line. Daemons keep running after it returns.
func (a *agent) start(ctx context.Context) error {
	// Each stage's steps run side by side: they depend on the stages
	// before them, not on each other.
	stages := [][]step{
		{{"mount", a.mountBase}},
		{{"version", a.reportVersion}},
		{{"modules", a.loadModules}},
		{{"xenfs", a.mountXenfs}},
		{{"toolstack", a.findToolstack}},
		{{"dirs", a.makeDirs}},
		{{"xenstored", a.startXenstored}},
		// Both need only xenstored, as in Xen's own systemd units
		// (xen-init-dom0.service and xenconsoled.service are each ordered
		// after xenstored alone). Each is mostly its dynamic loader's and
		// libxenctrl's start, 0.1-0.25 s under TCG: side by side on
		// dom0's two vCPUs the ready line waits for the longer one only.
		{{"xen-init-dom0", a.initDom0}, {"xenconsoled", a.startXenconsoled}},
		{{"loopback", a.loopback}},
		{{"guests", a.loadGuestBundle}},
	}
	for _, st := range stages {
		if name, err := a.runStage(ctx, st); err != nil {
			return a.fail(name, err)
		}
	}
	var st status
	err := a.timed("status", func() (err error) {
		st, err = a.status(ctx)
		return err
	})
	if err != nil {
		return a.fail("status", err)
	}
	var gs []guest
	var declared bool
	err = a.timed("find-guests", func() (err error) {
		gs, declared, err = a.findGuests()
		return err
	})
	if err != nil {
		return a.fail("guests", err)
	}
	if declared {
		// Guests start after the ready line, so count what the profile
		// declares rather than what runs now.
		a.guests, st.Guests = gs, len(gs)
	}
	fmt.Fprintln(a.out, contract.Ready{Xen: st.Version, Dom0MemMiB: st.Dom0MemMiB, Guests: st.Guests})
	return nil
}

// step is one of start's boot steps.
type step struct {
	name string
	fn   func(context.Context) error
}

// runStage runs the steps of one stage side by side and returns the step
// that failed first. That failure cancels its siblings, so the FAILED line
// names the cause, not a sibling that the cancellation stopped, and does not
// wait for a daemon's whole timeout.
func (a *agent) runStage(ctx context.Context, steps []step) (string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first step
		ferr  error
	)
	for _, s := range steps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.timed(s.name, func() error { return s.fn(ctx) }); err != nil {
				once.Do(func() { first, ferr = s, err; cancel() })
			}
		}()
	}
	wg.Wait()
	return first.name, ferr
}

// timed runs fn as the step name and, when a.steps is set, prints the
// step's contract.Step line once it ends, whatever fn returned.
func (a *agent) timed(name string, fn func() error) error {
	if a.steps == nil {
		return fn()
	}
	t0 := a.now()
	err := fn()
	a.stepLine(name, t0, a.now())
	return err
}

// stepLine prints the step line of a step that ran from start to end on the
// step clock, when a.steps is set.
func (a *agent) stepLine(name string, start, end time.Duration) {
	if a.steps == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	fmt.Fprintln(a.steps, contract.Step{Name: name, Took: end - start, At: end})
}

// now reads the step clock.
func (a *agent) now() time.Duration {
	if a.clock != nil {
		return a.clock()
	}
	if a.epoch.IsZero() {
		a.epoch = time.Now()
	}
	return time.Since(a.epoch)
}

func (a *agent) fail(step string, err error) error {
	se := &stepError{step: step, err: err}
	fmt.Fprintln(a.out, se.Error())
	return se
}

// mountBase mounts what u-root's init normally mounts already, so ctld also
// works under another init.
func (a *agent) mountBase(context.Context) error {
	have := map[string]string{}
	if ms, err := a.sys.mounts(); err == nil {
		for _, m := range ms {
			have[m.Target] = m.FSType
		}
	}
	for _, m := range []mountPoint{{"/proc", "proc"}, {"/sys", "sysfs"}, {"/dev", "devtmpfs"}} {
		if _, ok := have[m.Target]; ok {
			continue
		}
		if err := a.sys.mkdirAll(m.Target); err != nil {
			return err
		}
		if err := a.sys.mount(m.FSType, m.Target, m.FSType); err != nil {
			return fmt.Errorf("mount %s on %s: %w", m.FSType, m.Target, err)
		}
	}
	return nil
}

func (a *agent) loadModules(context.Context) error {
	if !a.sys.exists(a.cfg.ModulesList) {
		return nil
	}
	b, err := a.sys.readFile(a.cfg.ModulesList)
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(b), "\n") {
		p := strings.TrimSpace(line)
		if p == "" || strings.HasPrefix(p, "#") {
			continue
		}
		if err := a.sys.loadModule(p); err != nil {
			return fmt.Errorf("load %s: %w", p, err)
		}
	}
	return nil
}

func (a *agent) mountXenfs(context.Context) error {
	const caps = "/proc/xen/capabilities"
	if !a.sys.exists(caps) {
		if err := a.sys.mkdirAll("/proc/xen"); err != nil {
			return err
		}
		if err := a.sys.mount("xenfs", "/proc/xen", "xenfs"); err != nil {
			return fmt.Errorf("mount xenfs on /proc/xen (is the kernel a Xen dom0 with CONFIG_XENFS?): %w", err)
		}
	}
	b, err := a.sys.readFile(caps)
	if err != nil {
		return err
	}
	if !strings.Contains(string(b), "control_d") {
		return fmt.Errorf("%s says %q: this domain is not the control domain", caps, strings.TrimSpace(string(b)))
	}
	return nil
}

// findToolstack picks the toolstack directory the way Debian's
// xen-utils-wrapper does: by the running hypervisor's major.minor.
func (a *agent) findToolstack(context.Context) error {
	if a.cfg.XenBin != "" {
		return a.checkToolstack()
	}
	maj, err1 := a.sys.readFile("/sys/hypervisor/version/major")
	min, err2 := a.sys.readFile("/sys/hypervisor/version/minor")
	if err1 == nil && err2 == nil {
		a.cfg.XenBin = fmt.Sprintf("/usr/lib/xen-%s.%s/bin", strings.TrimSpace(string(maj)), strings.TrimSpace(string(min)))
		return a.checkToolstack()
	}
	// No /sys/hypervisor (CONFIG_XEN_SYS_HYPERVISOR=n): accept a single
	// installed toolstack.
	dirs, err := a.sys.glob("/usr/lib/xen-*/bin/xenstored")
	if err != nil {
		return err
	}
	if len(dirs) != 1 {
		return fmt.Errorf("cannot tell which toolstack to use: /sys/hypervisor/version unreadable and %d of /usr/lib/xen-*/bin/xenstored", len(dirs))
	}
	a.cfg.XenBin = path.Dir(dirs[0])
	return a.checkToolstack()
}

func (a *agent) checkToolstack() error {
	var missing []string
	for _, p := range []string{a.bin("xenstored"), a.bin("xenconsoled"), a.bin("xen-init-dom0"), a.bin("xl"), a.xenstore("xenstore-list")} {
		if !a.sys.exists(p) {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing from the initramfs: %s", strings.Join(missing, ", "))
	}
	return nil
}

func (a *agent) bin(name string) string      { return path.Join(a.cfg.XenBin, name) }
func (a *agent) xenstore(name string) string { return path.Join(a.cfg.XenstoreBin, name) }

func (a *agent) makeDirs(context.Context) error {
	for _, d := range runtimeDirs {
		if err := a.sys.mkdirAll(d); err != nil {
			return err
		}
	}
	return nil
}

func (a *agent) startXenstored(ctx context.Context) error {
	logPath := logDir + "/xenstored.log"
	d, err := a.run.startDaemon(a.bin("xenstored"), logPath, "--no-fork", "--pid-file", xenstoredPid)
	if err != nil {
		return err
	}
	return a.waitReady(ctx, d, logPath, func(ctx context.Context) error {
		// Listing the root over the socket proves xenstored answers, as
		// xenstore-list would, without a process whose dynamic loading
		// costs dom0 0.05-0.1 s under TCG on the way to the ready line.
		if a.xs != nil {
			_, err := a.xs.Directory(ctx, "/")
			return err
		}
		if err := a.sys.dialUnix(xenstoredSocket); err != nil {
			return err
		}
		_, err := a.run.output(ctx, a.xenstore("xenstore-list"), "/")
		return err
	})
}

func (a *agent) initDom0(ctx context.Context) error {
	_, err := a.run.output(ctx, a.bin("xen-init-dom0"))
	return err
}

func (a *agent) startXenconsoled(ctx context.Context) error {
	logPath := logDir + "/xenconsoled.log"
	// -i keeps it in the foreground, a child whose exit ctld sees; --log=all
	// also keeps Xen's console in a file for the operator, and each guest's
	// in guest-<name>.log, which the SSH console's `log <guest>` reads.
	d, err := a.run.startDaemon(a.bin("xenconsoled"), logPath, "-i", "--log=all")
	if err != nil {
		return err
	}
	return a.waitReady(ctx, d, logPath, func(context.Context) error {
		if !a.sys.exists(hypervisorLog) {
			return errors.New(hypervisorLog + " not created yet")
		}
		return nil
	})
}

// waitReady polls probe until it succeeds, the daemon exits, or the timeout.
func (a *agent) waitReady(ctx context.Context, d daemon, logPath string, probe func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.Timeout)
	defer cancel()
	var last error
	for {
		pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
		last = probe(pctx)
		pcancel()
		if last == nil {
			return nil
		}
		select {
		case <-d.done():
			return fmt.Errorf("exited: %v%s", d.err(), a.logTail(logPath))
		case <-ctx.Done():
			return fmt.Errorf("not ready after %v: %v%s", a.cfg.Timeout, last, a.logTail(logPath))
		case <-time.After(a.cfg.Poll):
		}
	}
}

func (a *agent) logTail(logPath string) string {
	b, err := a.sys.readFile(logPath)
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 3 {
		lines = lines[len(lines)-3:]
	}
	return " (" + logPath + ": " + strings.Join(lines, " | ") + ")"
}

// loopback brings lo up unless u-root's init already did (flags has IFF_UP).
func (a *agent) loopback(ctx context.Context) error {
	if b, err := a.sys.readFile("/sys/class/net/lo/flags"); err == nil {
		var flags uint64
		if _, err := fmt.Sscanf(strings.TrimSpace(string(b)), "0x%x", &flags); err == nil && flags&1 != 0 {
			return nil
		}
	}
	_, err := a.run.output(ctx, "ip", "link", "set", "dev", "lo", "up")
	return err
}

type status struct {
	Version    string
	Dom0MemMiB int
	Guests     int
}

// Where dom0's kernel says what xl info and xl list would (its Xen sysfs
// files, CONFIG_XEN_SYS_HYPERVISOR, and the balloon driver's counters).
const (
	sysHypervisor = "/sys/hypervisor"
	balloonKiB    = "/sys/devices/system/xen_memory/xen_memory0/info/current_kb"
)

// status is Xen's version, dom0's memory and the guests running. It reads
// them from dom0's kernel and xenstore where it can: each xl run costs dom0
// 0.1-0.2 s under TCG (the loader maps libxl and a dozen libraries), and the
// ready line waits for this. A dom0 kernel without those files, or a
// xenstored that does not answer, gets xl's answer.
func (a *agent) status(ctx context.Context) (status, error) {
	if st, ok := a.statusFromKernel(ctx); ok {
		return st, nil
	}
	return a.statusFromXL(ctx)
}

func (a *agent) statusFromKernel(ctx context.Context) (status, bool) {
	if a.xs == nil {
		return status{}, false
	}
	read := func(p string) string {
		b, err := a.sys.readFile(p)
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(b))
	}
	if read(sysHypervisor+"/type") != "xen" {
		return status{}, false
	}
	ver, err := xenVersion(map[string]string{
		"xen_major": read(sysHypervisor + "/version/major"),
		"xen_minor": read(sysHypervisor + "/version/minor"),
		"xen_extra": read(sysHypervisor + "/version/extra"),
	})
	if err != nil {
		return status{}, false
	}
	kib, err := strconv.Atoi(read(balloonKiB))
	if err != nil || kib <= 0 {
		return status{}, false
	}
	xctx, cancel := context.WithTimeout(ctx, xenstoreTimeout)
	defer cancel()
	doms, err := a.xs.Directory(xctx, "/local/domain")
	if err != nil || !slices.Contains(doms, "0") {
		return status{}, false
	}
	return status{Version: ver, Dom0MemMiB: kib / 1024, Guests: len(doms) - 1}, true
}

func (a *agent) statusFromXL(ctx context.Context) (status, error) {
	info, err := a.run.output(ctx, a.bin("xl"), "info")
	if err != nil {
		return status{}, err
	}
	ver, err := xenVersion(parseXLInfo(info))
	if err != nil {
		return status{}, fmt.Errorf("xl info: %w", err)
	}
	list, err := a.run.output(ctx, a.bin("xl"), "list")
	if err != nil {
		return status{}, err
	}
	doms, err := parseXLList(list)
	if err != nil {
		return status{}, fmt.Errorf("xl list: %w", err)
	}
	st := status{Version: ver, Dom0MemMiB: -1}
	for _, d := range doms {
		if d.ID == 0 {
			st.Dom0MemMiB = d.MemMiB
		} else {
			st.Guests++
		}
	}
	if st.Dom0MemMiB < 0 {
		return status{}, errors.New("xl list: no domain with ID 0")
	}
	return st, nil
}

// parseXLInfo parses `xl info`: one "key : value" per line.
func parseXLInfo(b []byte) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		k = strings.TrimSpace(k)
		if k == "" || strings.ContainsAny(k, " \t") {
			continue
		}
		if _, dup := m[k]; !dup {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// xenVersion joins xen_major, xen_minor and xen_extra as Xen prints its own
// version ("4.17" + ".7" or "4.17" + "-rc").
func xenVersion(info map[string]string) (string, error) {
	maj, min := info["xen_major"], info["xen_minor"]
	if !isDigits(maj) || !isDigits(min) {
		return "", fmt.Errorf("no numeric xen_major/xen_minor (got %q, %q)", maj, min)
	}
	extra := info["xen_extra"]
	if strings.ContainsAny(extra, " \t") {
		return "", fmt.Errorf("xen_extra %q has spaces", extra)
	}
	return maj + "." + min + extra, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

type domain struct {
	Name   string
	ID     int
	MemMiB int
	State  string // e.g. "-b----"; empty if xl list has no State column
}

// parseXLList parses `xl list`: a header naming the columns, then one domain
// a line. Columns are found by name, and Name is the first column, so a
// domain name never shifts the numbers.
func parseXLList(b []byte) ([]domain, error) {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) == 0 {
		return nil, errors.New("empty output")
	}
	hdr := strings.Fields(lines[0])
	col := map[string]int{}
	for i, h := range hdr {
		col[h] = i
	}
	idCol, ok1 := col["ID"]
	memCol, ok2 := col["Mem"]
	if len(hdr) == 0 || hdr[0] != "Name" || !ok1 || !ok2 {
		return nil, fmt.Errorf("unexpected header %q", lines[0])
	}
	var doms []domain
	for _, line := range lines[1:] {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != len(hdr) {
			return nil, fmt.Errorf("line %q: %d columns, header has %d", line, len(f), len(hdr))
		}
		var d domain
		d.Name = f[0]
		if _, err := fmt.Sscan(f[idCol], &d.ID); err != nil || !isDigits(f[idCol]) {
			return nil, fmt.Errorf("line %q: bad ID %q", line, f[idCol])
		}
		if _, err := fmt.Sscan(f[memCol], &d.MemMiB); err != nil || !isDigits(f[memCol]) {
			return nil, fmt.Errorf("line %q: bad Mem %q", line, f[memCol])
		}
		if stateCol, ok := col["State"]; ok {
			d.State = f[stateCol]
		}
		doms = append(doms, d)
	}
	sort.SliceStable(doms, func(i, j int) bool { return doms[i].ID < doms[j].ID })
	return doms, nil
}
