package qemutests_test

// The Redfish service in a real boot of qemu-q35-host (issue 18): the
// unit is provisioned (`fwbuild provision --image` on a copy of spi.bin)
// before the SPI boot, QEMU forwards the service's port 443 to 127.0.0.1,
// and from the host fwbuild's own client (remote, pinned to the
// certificate fingerprint ctld prints), Debian's python3-sushy and DMTF's
// redfishtool drive it while the boot runs. TestHostDataDiskPersists's
// second boot carries these checks (no boot of its own).

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/attest"
	"github.com/fwbuild/fwbuild/contract"
	rf "github.com/fwbuild/fwbuild/contract/redfish"
	"github.com/fwbuild/fwbuild/provision"
	qemutests "github.com/fwbuild/fwbuild/qemu-tests"
	"github.com/fwbuild/fwbuild/remote"
)

// redfishPort is ctld's Redfish port on the management address.
const redfishPort = 443

// apiVM is the VM the boot test creates through the API.
const apiVM = "apivm"

// Debian's Python packages import only under the system interpreter (a
// pyenv shim may come first on PATH).
const systemPython = "/usr/bin/python3"

// requireRedfishClients fails (never skips) without the third-party
// clients; `fwbuild doctor --fix` installs both.
func requireRedfishClients(t testing.TB) {
	t.Helper()
	if err := exec.Command(systemPython, "-c", "import sushy").Run(); err != nil {
		t.Fatalf("python3-sushy missing (%s -c 'import sushy': %v): run `fwbuild doctor --fix`", systemPython, err)
	}
	if _, err := exec.LookPath("redfishtool"); err != nil {
		t.Fatal("redfishtool missing: run `fwbuild doctor --fix`")
	}
}

// provisionHostChip copies the host build's spi.bin and provisions it as
// the factory does (fwbuild provision --image): the unit's own password,
// only its hash in the unit region.
func provisionHostChip(t testing.TB, bl hostBuild) (chip string, res provision.Result) {
	t.Helper()
	chip = filepath.Join(t.TempDir(), "unit.bin")
	b, err := os.ReadFile(filepath.Join(bl.out, "spi.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(chip, b, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err = provision.Provision(context.Background(), provision.Options{Board: bl.board, Serial: "FW-HOST-0001", Image: chip})
	if err != nil {
		t.Fatalf("provision %s: %v", chip, err)
	}
	return chip, res
}

// rfSession is the host's side of the service in one boot.
type rfSession struct {
	hostport, fingerprint, user, password string
	client                                *remote.Client
	once                                  sync.Once
	hc                                    *http.Client
}

func newRFSession(hostport string, up contract.RedfishUp, user, password string) (*rfSession, error) {
	c, err := remote.New(remote.Options{Host: hostport, User: user, Password: password, Fingerprint: up.Fingerprint, Timeout: 5 * time.Minute})
	if err != nil {
		return nil, err
	}
	return &rfSession{hostport: hostport, fingerprint: up.Fingerprint, user: user, password: password, client: c}, nil
}

// raw is one request with the pinned certificate and the given Basic
// credentials ("" for none); it returns the status. Its connections are
// kept between requests (as a client's are).
func (s *rfSession) raw(ctx context.Context, method, path, user, password string) (int, error) {
	return s.do(ctx, method, path, "", func(req *http.Request) {
		if user != "" {
			req.SetBasicAuth(user, password)
		}
	})
}

// withToken is raw with a session's X-Auth-Token instead of Basic auth.
func (s *rfSession) withToken(ctx context.Context, method, path, token string) (int, error) {
	return s.do(ctx, method, path, "", func(req *http.Request) { req.Header.Set(rf.HeaderToken, token) })
}

// login opens a session (POST Sessions, as sushy does) and returns its
// token and its Location, which DELETE closes.
func (s *rfSession) login(ctx context.Context) (token, location string, err error) {
	body := fmt.Sprintf(`{"UserName":%q,"Password":%q}`, s.user, s.password)
	var hdr http.Header
	code, err := s.do(ctx, "POST", rf.Sessions, body, func(req *http.Request) {
		req.Header.Set("Content-Type", "application/json")
	}, &hdr)
	if err != nil || code != http.StatusCreated {
		return "", "", fmt.Errorf("POST %s: %d, %v", rf.Sessions, code, err)
	}
	return hdr.Get(rf.HeaderToken), hdr.Get("Location"), nil
}

// do sends one request on the session's client (the pinned certificate,
// connections kept); set adds the credentials, hdr gets the response's
// headers.
func (s *rfSession) do(ctx context.Context, method, path, body string, set func(*http.Request), hdr ...*http.Header) (int, error) {
	s.once.Do(func() {
		pin := s.fingerprint
		s.hc = &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{
			MinVersion:         tls.VersionTLS12,
			InsecureSkipVerify: true, // the pin below replaces the chain check
			VerifyConnection: func(cs tls.ConnectionState) error {
				if h := sha256.Sum256(cs.PeerCertificates[0].Raw); fmt.Sprintf("%x", h) != pin {
					return fmt.Errorf("certificate sha256 %x, not the pinned %s", h, pin)
				}
				return nil
			}}}}
	})
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "https://"+s.hostport+path, rd)
	if err != nil {
		return 0, err
	}
	set(req)
	resp, err := s.hc.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	for _, h := range hdr {
		*h = resp.Header
	}
	return resp.StatusCode, nil
}

// runTool runs a third-party client without the CA variables that
// python3-requests lets override a session's verify setting.
func runTool(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 6*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "REQUESTS_CA_BUNDLE=") && !strings.HasPrefix(e, "CURL_CA_BUNDLE=") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// bootSushyScript lists the systems, then powers the VM it is given on and
// off, reading its state after each. verify=False: the certificate names
// the management address (10.0.2.15), the test reaches it as 127.0.0.1
// through QEMU's forward; fwbuild's client checked its fingerprint first.
const bootSushyScript = `
import sys, sushy
url, user, password, vm = sys.argv[1:5]
s = sushy.Sushy(url, username=user, password=password, verify=False)
for m in s.get_system_collection().get_members():
    print("SYSTEM", m.identity, m.system_type.value if m.system_type else None, m.power_state.value)
v = s.get_system("/redfish/v1/Systems/" + vm)
v.reset_system(sushy.RESET_ON)
v.refresh()
print("AFTER_ON", v.power_state.value)
v.reset_system(sushy.RESET_FORCE_OFF)
v.refresh()
print("AFTER_OFF", v.power_state.value)
s._auth.close()
`

// apiVMSpec is the VM created through the API: the stock Debian image's
// kernel and initrd, its root disk a copy of the image's root.img, a NIC
// on the bridge (a MAC from Xen), PV (the boot's CPU has no NPT).
func apiVMSpec(typ string) rf.CreateSystem {
	spec := rf.CreateSystem{Name: apiVM, ProcessorSummary: rf.ProcessorSummary{Count: 1}}
	spec.Oem.Fwbuild = rf.CreateFwbuild{Image: hostGuest, MemoryMiB: 256, Type: typ,
		Disks: []rf.CreateDisk{{Name: "root", SizeBytes: 64 << 20, From: hostGuest}}, NICs: []rf.CreateNIC{{}}}
	return spec
}

// errs collects failures found off the test's goroutine.
type errs struct {
	mu   sync.Mutex
	list []string
}

func (e *errs) add(format string, args ...any) {
	e.mu.Lock()
	e.list = append(e.list, fmt.Sprintf(format, args...))
	e.mu.Unlock()
}

func (e *errs) report(t testing.TB) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.list {
		t.Error(s)
	}
}

// checkQuote runs the TPM quote action as `fwbuild attest --redfish` does
// (remote.Client.Quote over a fresh nonce, then attest.VerifyCertified
// against the build's prediction), and checks it is refused without
// credentials and with a malformed nonce, and that the quote does not
// verify over another nonce. It returns the verified quote, or nil.
func (s *rfSession) checkQuote(ctx context.Context, e *errs, want *contract.PathMeasurement) *contract.Quote {
	if code, err := s.raw(ctx, "POST", rf.TPMSignedTarget, "", ""); err != nil || code != http.StatusUnauthorized {
		e.add("POST %s without credentials: %d, %v; want 401", rf.TPMSignedTarget, code, err)
	}
	bad := `{"Certificate": {"@odata.id": "` + rf.AKCertificate + `"}, "Nonce": "not-hex", "PCRSelection": "` + rf.QuotePCRSelection() + `", "Scheme": "` + rf.QuoteScheme() + `"}`
	if code, err := s.do(ctx, "POST", rf.TPMSignedTarget, bad, func(req *http.Request) {
		req.SetBasicAuth(s.user, s.password)
		req.Header.Set("Content-Type", "application/json")
	}); err != nil || code != http.StatusBadRequest {
		e.add("POST %s with a malformed Nonce: %d, %v; want 400", rf.TPMSignedTarget, code, err)
	}
	nonce := make([]byte, 32)
	rand.Read(nonce)
	rq, err := s.client.Quote(ctx, nonce)
	if err != nil {
		e.add("the TPM quote through Redfish: %v", err)
		return nil
	}
	if err := attest.VerifyCertified(rq.Quote, rq.AKCertificate, rq.Server, nonce, want); err != nil {
		e.add("the TPM quote through Redfish against the %s prediction: %v", want.Payload, err)
		return nil
	}
	var mm *attest.Mismatch
	if err := attest.VerifyCertified(rq.Quote, rq.AKCertificate, rq.Server, []byte("another nonce"), want); !errors.As(err, &mm) {
		e.add("the API's quote verified over another nonce (a replay): %v", err)
	}
	return &rq.Quote
}

// checkServiceAndCreate is the first half, run once the stock guest is
// up: 401s, fwbuild remote's list, sushy, redfishtool, then the API VM
// created (remote) and started (redfishtool's Reset). It returns an error
// that makes waiting on for the VM pointless.
func (s *rfSession) checkServiceAndCreate(ctx context.Context, e *errs, typ string) error {
	// No credentials, a wrong password: 401 (the service root alone is open).
	for _, c := range []struct{ user, pass string }{{"", ""}, {s.user, s.password + "x"}} {
		code, err := s.raw(ctx, "GET", rf.Systems, c.user, c.pass)
		if err != nil || code != http.StatusUnauthorized {
			e.add("GET Systems as %q: %d, %v; want 401", c.user, code, err)
		}
	}
	if code, err := s.raw(ctx, "GET", rf.Root, "", ""); err != nil || code != http.StatusOK {
		e.add("GET the service root without credentials: %d, %v; want 200", code, err)
	}

	systems, err := s.client.List(ctx)
	if err != nil {
		return fmt.Errorf("remote list: %w", err)
	}
	types := map[string]string{}
	for _, cs := range systems {
		types[cs.ID] = cs.SystemType
	}
	if types[rf.HostID] != rf.SystemPhysical || types[hostGuest] != rf.SystemVM || types[installerGuest] != rf.SystemVM {
		e.add("remote list: system types %v; want host %s, %s and %s %s", types, rf.SystemPhysical, hostGuest, installerGuest, rf.SystemVM)
	}

	if _, err := s.client.Create(ctx, apiVMSpec(typ)); err != nil {
		return fmt.Errorf("remote create %s: %w", apiVM, err)
	}

	url := "https://" + s.hostport
	out, err := runTool(ctx, systemPython, "-c", bootSushyScript, url, s.user, s.password, apiVM)
	for _, want := range []string{
		"SYSTEM host Physical On\n", "SYSTEM " + hostGuest + " Virtual On\n", "SYSTEM " + apiVM + " Virtual Off\n",
		"AFTER_ON On\n", "AFTER_OFF Off\n",
	} {
		if err != nil || !strings.Contains(out, want) {
			e.add("sushy (%v) lacks %q:\n%s", err, want, out)
		}
	}

	rft := func(args ...string) (string, error) {
		// -T: a Reset On waits for xl create, 40 s and more under TCG on
		// a loaded machine (redfishtool's default is 10 s).
		return runTool(ctx, "redfishtool", append([]string{"-r", s.hostport, "-S", "Always", "-T", "300", "-u", s.user, "-p", s.password}, args...)...)
	}
	out, err = rft("Systems")
	for _, want := range []string{`"/redfish/v1/Systems/host"`, `"/redfish/v1/Systems/` + hostGuest + `"`, `"/redfish/v1/Systems/` + apiVM + `"`} {
		if err != nil || !strings.Contains(out, want) {
			e.add("redfishtool Systems (%v) lacks %s:\n%s", err, want, out)
		}
	}
	if out, err = rft("Systems", "-I", apiVM, "reset", "On"); err != nil {
		return fmt.Errorf("redfishtool Systems -I %s reset On: %v\n%s", apiVM, err, out)
	}
	if cs, err := s.client.Get(ctx, apiVM); err != nil || cs.PowerState != rf.PowerOn {
		e.add("after redfishtool's reset On: %s is %q (%v), want On", apiVM, cs.PowerState, err)
	}
	return nil
}

// checkConsoleAndDelete is the second half, once the API VM has its
// lease: its console log through the API holds the lease line, then
// DELETE (remote), after which ctld prints what it freed.
func (s *rfSession) checkConsoleAndDelete(ctx context.Context, e *errs, dhcpLine string) error {
	log, err := s.client.ConsoleLog(ctx, apiVM)
	d, perr := contract.ParseGuestOSDHCP(dhcpLine)
	if err != nil || perr != nil || !strings.Contains(string(log), d.String()) {
		e.add("console log of %s through the API (%v, %v): lacks %q; its end:\n%s", apiVM, err, perr, d.String(), tail(string(log), 2000))
	}
	if err := s.client.Delete(ctx, apiVM); err != nil {
		return fmt.Errorf("remote delete %s: %w", apiVM, err)
	}
	var rerr *remote.Error
	if _, err := s.client.Get(ctx, apiVM); !errors.As(err, &rerr) || rerr.Status != http.StatusNotFound {
		e.add("GET %s after DELETE: %v, want 404", apiVM, err)
	}
	return nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// listeners reads `cat /proc/net/tcp /proc/net/tcp6` from a console log:
// every listening socket's local address as "hexaddr:port" (the kernel's
// spelling: IPv4 addresses little-endian).
func listeners(log []byte) []string {
	re := regexp.MustCompile(`(?m)^\s*\d+: ([0-9A-F]{8}|[0-9A-F]{32}):([0-9A-F]{4}) [0-9A-F]+:[0-9A-F]{4} 0A `)
	var out []string
	for _, m := range re.FindAllSubmatch(log, -1) {
		out = append(out, string(m[1])+":"+string(m[2]))
	}
	return out
}

// procNetAddr is an IPv4 address and port as /proc/net/tcp writes them.
func procNetAddr(ip string, port int) string {
	var b [4]int
	fmt.Sscanf(ip, "%d.%d.%d.%d", &b[0], &b[1], &b[2], &b[3])
	return fmt.Sprintf("%02X%02X%02X%02X:%04X", b[3], b[2], b[1], b[0], port)
}

// checkListeners says whether the service (and the SSH console) listen on
// the management address alone: not on every address, not on loopback,
// nowhere in IPv6.
func checkListeners(t testing.TB, log []byte, mgmt string) {
	t.Helper()
	ls := listeners(log)
	if len(ls) == 0 {
		t.Errorf("no listening sockets read from /proc/net/tcp on the console")
	}
	for _, port := range []int{redfishPort, 22} {
		hex := fmt.Sprintf(":%04X", port)
		var on []string
		for _, l := range ls {
			if strings.HasSuffix(l, hex) {
				on = append(on, l)
			}
		}
		if want := procNetAddr(mgmt, port); len(on) != 1 || on[0] != want {
			t.Errorf("port %d listens on %v, want only %s (%s:%d)", port, on, want, mgmt, port)
		}
	}
	t.Logf("dom0's listening sockets: %s", strings.Join(ls, " "))
}

// mustAtoi is strconv.Atoi for a regexp group of digits.
func mustAtoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// redfishBoot is the host's side of the service in one boot of the host
// board: the markers it adds, what runs as they match, and the checks on
// the result. trigger is the marker after which the host starts (the
// stock guest up, so the VM it creates does not compete with its boot).
type redfishBoot struct {
	port    int
	unit    provision.Result
	trigger string
	typ     string // the API VM's pv or pvh
	// want is the build's PCR prediction for the boot's path: the TPM
	// quote through the API must verify against it (nil: no quote check).
	want   *contract.PathMeasurement
	ctx    context.Context
	cancel context.CancelFunc
	errs   errs

	sess *rfSession // set as the redfish marker matches (Run's goroutine)
	mu   sync.Mutex
	// checked is when the host's first half began, done when the second ended.
	checked, done time.Time
	// quoted is the API's quote that verified, quoteTook its round trips.
	quoted    *contract.Quote
	quoteTook time.Duration
}

func newRedfishBoot(port int, unit provision.Result, trigger, typ string) *redfishBoot {
	rb := &redfishBoot{port: port, unit: unit, trigger: trigger, typ: typ}
	rb.ctx, rb.cancel = context.WithCancel(context.Background())
	return rb
}

// markers are the boot's markers from the API VM's running line on; next
// is typed once they are done. The unit and redfish markers come earlier,
// after the data disk's line (see TestHostDataDiskPersists).
func (rb *redfishBoot) markers(r time.Duration, next string) []qemutests.Marker {
	return []qemutests.Marker{
		// sushy's On starts it first (and its ForceOff ends it at once),
		// redfishtool's On for good.
		qemutests.Regexp("api-running", contract.GuestRunningPattern(apiVM)+" type="+rb.typ, r),
		qemutests.Regexp("api-dhcp", contract.GuestOSDHCPPattern(apiVM), 2*r),
		then(qemutests.Regexp("api-deleted", contract.GuestDeletedPattern(apiVM), r),
			"ls "+contract.DataGuestDir(apiVM)+"; cat /proc/net/tcp /proc/net/tcp6; echo listeners-$((2+3))\n"),
		then(qemutests.Regexp("listeners", `listeners-5`, r), next),
	}
}

func (rb *redfishBoot) fail(err error) {
	rb.errs.add("%v", err)
	rb.cancel() // the markers after it cannot come
}

func (rb *redfishBoot) onMarker(mt qemutests.Match) {
	switch mt.Marker.Name {
	case "redfish":
		up, err := contract.ParseRedfishUp(mt.Line)
		if err == nil {
			rb.sess, err = newRFSession(fmt.Sprintf("127.0.0.1:%d", rb.port), up, rb.unit.User, rb.unit.Password)
		}
		if err != nil {
			rb.fail(err)
		}
	case rb.trigger:
		s := rb.sess
		if s == nil {
			rb.fail(errors.New("no redfish line before " + rb.trigger))
			return
		}
		rb.mu.Lock()
		rb.checked = time.Now()
		rb.mu.Unlock()
		go func() {
			if rb.want != nil {
				start := time.Now()
				q := s.checkQuote(rb.ctx, &rb.errs, rb.want)
				rb.mu.Lock()
				rb.quoted, rb.quoteTook = q, time.Since(start)
				rb.mu.Unlock()
			}
			if err := s.checkServiceAndCreate(rb.ctx, &rb.errs, rb.typ); err != nil {
				rb.fail(err)
			}
		}()
	case "api-dhcp":
		s, line := rb.sess, mt.Line
		go func() {
			if err := s.checkConsoleAndDelete(rb.ctx, &rb.errs, line); err != nil {
				rb.fail(err)
			}
			rb.mu.Lock()
			rb.done = time.Now()
			rb.mu.Unlock()
		}()
	}
}

// check is what the console says after the run: the unit and redfish
// lines, the bytes DELETE freed, dom0's ls of the VM's directory and its
// listening sockets.
func (rb *redfishBoot) check(t testing.TB, res qemutests.Result, log []byte, mgmt string) {
	t.Helper()
	v, l := values(res), lines(res)
	if v["unit"][0] != rb.unit.Serial {
		t.Errorf("unit line %q, want serial %s (provisioned before the boot)", l["unit"], rb.unit.Serial)
	}
	if up, err := contract.ParseRedfishUp(l["redfish"]); err != nil || up.Key != "data" || !strings.HasPrefix(up.URL, "https://"+mgmt+":443/") {
		t.Errorf("redfish line %q (%v): want https on the management address %s, its key on the data disk", l["redfish"], err, mgmt)
	}
	// The API's VM is on the guest network, not on the management
	// segment where the service listens.
	checkGuestLease(t, apiVM, l["api-dhcp"])
	if freed := mustAtoi(v["api-deleted"][0]); freed < 64<<20 {
		t.Errorf("deleting %s freed %d bytes, want at least its 64 MiB root disk", apiVM, freed)
	}
	after := log
	if i := strings.Index(string(log), l["api-deleted"]); i >= 0 {
		after = log[i:]
	}
	if !regexp.MustCompile(`(?m)` + regexp.QuoteMeta(contract.DataGuestDir(apiVM)) + `.*no such file or directory`).Match(after) {
		t.Errorf("ls %s after DELETE did not say it is gone (log %s)", contract.DataGuestDir(apiVM), res.LogPath)
	}
	checkListeners(t, after, mgmt)
	rb.mu.Lock()
	defer rb.mu.Unlock()
	if rb.want != nil {
		// ctld's measured line says the same as the quote.
		m := regexp.MustCompile(contract.MeasuredPattern).FindSubmatch(log)
		switch {
		case m == nil:
			t.Errorf("no measured line in a boot with a TPM (log %s)", res.LogPath)
		case string(m[1]) != rb.want.SHA256["4"] || (rb.quoted != nil && string(m[1]) != rb.quoted.PCRs["4"]):
			t.Errorf("measured line's PCR 4 %s; predicted %s", m[1], rb.want.SHA256["4"])
		}
		if rb.quoted != nil {
			t.Logf("TPM quote through Redfish (action, MeasurementSet, AK certificate) verified against the spi prediction in %v: PCR 4 %s, PCR 7 %s, nonce %s",
				rb.quoteTook.Round(time.Millisecond), rb.quoted.PCRs["4"], rb.quoted.PCRs["7"], rb.quoted.Nonce)
		}
	}
	t.Logf("Redfish up after %v; from the host's first request to %s's running line %v, its DHCP lease %v later; the host's checks took %v in all",
		at(res, "redfish"), apiVM, at(res, "api-running")-at(res, rb.trigger), at(res, "api-dhcp")-at(res, "api-running"), rb.done.Sub(rb.checked).Round(time.Second))
}
