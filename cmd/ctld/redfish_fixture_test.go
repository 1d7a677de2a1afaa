package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/contract"
	"github.com/fwbuild/fwbuild/contract/unit"
)

// fakeXen is a stateful stand-in for xl at the runner seam: xl create of a
// config starts a domain named by its name line, destroy/shutdown end it,
// xl list and xl info answer from that state. Safe for concurrent
// requests, as the HTTP server makes them.
type fakeXen struct {
	mu      sync.Mutex
	calls   []string
	doms    map[string]int
	next    int
	failCmd string // a subcommand that fails ("create")
}

func newFakeXen() *fakeXen { return &fakeXen{doms: map[string]int{}, next: 1} }

func (x *fakeXen) output(_ context.Context, name string, args ...string) ([]byte, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.calls = append(x.calls, strings.TrimSpace(filepath.Base(name)+" "+strings.Join(args, " ")))
	if name != xenBin+"/xl" || len(args) == 0 {
		return nil, fmt.Errorf("%s: no such command in fake", name)
	}
	if args[0] == x.failCmd {
		return nil, fmt.Errorf("xl %s: exit status 3 (libxl: error)", args[0])
	}
	switch args[0] {
	case "info":
		return os.ReadFile("testdata/xl-info.txt")
	case "list":
		var b strings.Builder
		b.WriteString("Name                                        ID   Mem VCPUs\tState\tTime(s)\n")
		b.WriteString("Domain-0                                     0   511     2     r-----      10.0\n")
		var names []string
		for n := range x.doms {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(&b, "%-40s %5d   256     1     -b----       1.0\n", n, x.doms[n])
		}
		return []byte(b.String()), nil
	case "create":
		cfg, err := os.ReadFile(args[1])
		if err != nil {
			return nil, err
		}
		var name string
		for _, l := range strings.Split(string(cfg), "\n") {
			if k, v, ok := strings.Cut(l, "="); ok && strings.TrimSpace(k) == "name" {
				name = strings.Trim(strings.TrimSpace(v), `"`)
			}
		}
		if _, ok := x.doms[name]; ok || name == "" {
			return nil, fmt.Errorf("domain %q exists or unnamed", name)
		}
		x.doms[name] = x.next
		x.next++
		return nil, nil
	case "destroy", "shutdown":
		if _, ok := x.doms[args[1]]; !ok {
			return nil, fmt.Errorf("invalid domain identifier %s", args[1])
		}
		delete(x.doms, args[1])
		return nil, nil
	case "reboot", "block-attach", "block-detach":
		if _, ok := x.doms[args[1]]; !ok {
			return nil, fmt.Errorf("invalid domain identifier %s", args[1])
		}
		return nil, nil
	}
	return nil, fmt.Errorf("xl %s: not in fake", args[0])
}

// traced is xl with its debug log (xl -vvv create): the same as without,
// and no log.
func (x *fakeXen) traced(ctx context.Context, _ func(string), name string, args ...string) ([]byte, error) {
	if len(args) > 0 && args[0] == "-vvv" {
		args = args[1:]
	}
	return x.output(ctx, name, args...)
}

func (x *fakeXen) startDaemon(string, string, ...string) (daemon, error) {
	return nil, fmt.Errorf("no daemons in fakeXen")
}

// stream is xl console: the domain's first line, then EOF.
func (x *fakeXen) stream(_ context.Context, name string, args ...string) (io.ReadCloser, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.calls = append(x.calls, "stream "+filepath.Base(name)+" "+strings.Join(args, " "))
	if len(args) != 2 || args[0] != "console" {
		return nil, fmt.Errorf("no such stream in fakeXen")
	}
	if _, ok := x.doms[args[1]]; !ok {
		return nil, fmt.Errorf("xl console %s: no such domain", args[1])
	}
	return io.NopCloser(strings.NewReader("console of " + args[1] + "\r\n")), nil
}

func (x *fakeXen) callList() []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	return append([]string(nil), x.calls...)
}

func (x *fakeXen) running(name string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	_, ok := x.doms[name]
	return ok
}

// Passwords of the fixture's accounts.
const (
	adminPass  = "admin-pass-1234"
	opPass     = "op-pass-1234"
	viewerPass = "viewer-pass-1234"
)

// rfFixture is the Redfish handler over TLS (httptest) on a data disk in a
// temporary directory, with the stock debian image's files and two guests
// (web autostarts and runs, db is off).
type rfFixture struct {
	srv    *httptest.Server
	svc    *redfishService
	vms    *vmManager
	xen    *fakeXen
	root   string
	now    time.Time
	mu     sync.Mutex
	logBuf bytes.Buffer
	// console is what ctld printed (a.out).
	console bytes.Buffer
}

func (f *rfFixture) consoleText() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.console.String()
}

func (f *rfFixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *rfFixture) advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

func testRecord(t testing.TB) unit.Record {
	t.Helper()
	rec := unit.Record{Version: 1, Board: "qemu-q35-host", Serial: "FW-TEST-0001"}
	for _, a := range []struct{ user, role, pass string }{
		{"admin", unit.RoleAdministrator, adminPass},
		{"operator", unit.RoleOperator, opPass},
		{"viewer", unit.RoleReadOnly, viewerPass},
	} {
		h, err := unit.PasswordHash(a.pass)
		if err != nil {
			t.Fatal(err)
		}
		rec.Accounts = append(rec.Accounts, unit.Account{User: a.user, Role: a.role, Hash: h})
	}
	if err := rec.Validate(); err != nil {
		t.Fatal(err)
	}
	return rec
}

// writeDataGuest puts a guest's config (and a root disk) on the data disk.
func writeDataGuest(t testing.TB, root string, g contract.GuestXL) {
	t.Helper()
	if err := os.MkdirAll(root+contract.DataGuestDir(g.Name), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range g.Disks {
		if err := os.WriteFile(root+d, make([]byte, 4096), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(root+contract.DataGuestConfig(g.Name), g.Encode(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// rootImageBytes is the fixture's debian root.img content.
var rootImageBytes = bytes.Repeat([]byte("ext4"), 1024)

func newRFFixture(t testing.TB) *rfFixture {
	root := t.TempDir()
	f := &rfFixture{root: root, xen: newFakeXen(), now: time.Unix(1_800_000_000, 0)}
	for name, data := range map[string][]byte{
		contract.GuestImageKernel: []byte("vmlinuz"), contract.GuestImageInitrd: []byte("initrd"), contract.GuestRootFile: rootImageBytes,
	} {
		p := root + contract.DataImageFile("debian", name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range []contract.GuestXL{
		{Name: "web", Type: "pvh", MemoryMiB: 1024, VCPUs: 2, Kernel: contract.DataImageFile("debian", "vmlinuz"), Ramdisk: contract.DataImageFile("debian", "initrd"),
			Autostart: true, Disks: []string{contract.DataGuestDisk("web", "root")}, Bridge: "xenbr0", MACs: []string{"00:16:3e:00:00:05"}},
		{Name: "db", Type: "pv", MemoryMiB: 256, VCPUs: 1, Kernel: contract.DataImageFile("debian", "vmlinuz"), Ramdisk: contract.DataImageFile("debian", "initrd")},
	} {
		writeDataGuest(t, root, g)
	}
	f.xen.doms["web"] = 7
	cfg := defaultConfig()
	cfg.XenBin = xenBin
	a := &agent{cfg: cfg, run: f.xen, sys: &fakeSystem{files: map[string]string{}}, out: &lockedWriter{w: &f.console, mu: &f.mu}}
	rec := testRecord(t)
	acc, err := newAccounts(rec, defaultLockout(), f.clock)
	if err != nil {
		t.Fatal(err)
	}
	// A unit with a guest network: the API's VMs join its bridge.
	host := &contract.HostConfig{Network: &contract.Network{Bridge: "xenbr0", NICs: []string{"pci:0000:00:03.0"},
		Guests: &contract.GuestNetwork{Bridge: "xenbr1", NICs: []string{"pci:0000:00:04.0"}}}}
	f.vms = &vmManager{a: a, root: root, dataOK: true, bridge: host.GuestBridge(), rebootHost: func() error { return nil }}
	f.svc = newRedfishService(rec, acc, f.vms, f.clock, slog.New(slog.NewTextHandler(&lockedWriter{w: &f.logBuf, mu: &f.mu}, nil)))
	f.srv = httptest.NewTLSServer(f.svc)
	t.Cleanup(f.srv.Close)
	return f
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// rfReq is one request's outcome.
type rfReq struct {
	code int
	hdr  http.Header
	body []byte
}

func (r rfReq) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body is not JSON: %v: %s", err, r.body)
	}
	return m
}

// messageID is the first @Message.ExtendedInfo MessageId of an error body.
func (r rfReq) messageID(t testing.TB) string {
	t.Helper()
	m := r.json(t)
	e, _ := m["error"].(map[string]any)
	info, _ := e["@Message.ExtendedInfo"].([]any)
	if len(info) == 0 {
		t.Fatalf("no @Message.ExtendedInfo in %s", r.body)
	}
	id, _ := info[0].(map[string]any)["MessageId"].(string)
	if e["code"] != id {
		t.Errorf("error code %v differs from MessageId %s", e["code"], id)
	}
	return id
}

// auth is how a request authenticates: "user:password" for Basic, a token,
// or "" for none.
func (f *rfFixture) do(t testing.TB, method, path, auth, body string) rfReq {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if u, p, ok := strings.Cut(auth, ":"); ok {
		req.SetBasicAuth(u, p)
	} else if auth != "" {
		req.Header.Set("X-Auth-Token", auth)
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return rfReq{code: resp.StatusCode, hdr: resp.Header, body: b}
}

const admin = "admin:" + adminPass
