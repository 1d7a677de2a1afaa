package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/attest"
	"github.com/fwbuild/fwbuild/contract"
	"github.com/fwbuild/fwbuild/contract/redfish"
)

// Third-party clients against ctld's real handler, served over TLS by
// serveRedfish on 127.0.0.1 (no boot): Debian's python3-sushy (OpenStack
// Ironic's Redfish library) and redfishtool (DMTF's CLI), with Xen behind
// the runner seam (fakeXen). `fwbuild doctor --fix` installs both.

// Debian's Python packages import only under the system interpreter (a
// pyenv shim may come first on PATH).
const systemPython = "/usr/bin/python3"

func requireClients(t *testing.T) {
	t.Helper()
	if err := exec.Command(systemPython, "-c", "import sushy").Run(); err != nil {
		t.Fatalf("python3-sushy missing (%s -c 'import sushy': %v): run `fwbuild doctor --fix` (apt-get install python3-sushy)", systemPython, err)
	}
	if _, err := exec.LookPath("redfishtool"); err != nil {
		t.Fatalf("redfishtool missing: run `fwbuild doctor --fix` (apt-get install redfishtool)")
	}
}

// recorder notes each request's method, path and how it authenticated.
type recorder struct {
	h     http.Handler
	mu    sync.Mutex
	reqs  []string
	codes []int // each request's status, in order
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	how := "none"
	if req.Header.Get(redfish.HeaderToken) != "" {
		how = "token"
	} else if _, _, ok := req.BasicAuth(); ok {
		how = "basic"
	}
	sw := &statusWriter{ResponseWriter: w, code: 200}
	r.h.ServeHTTP(sw, req)
	r.mu.Lock()
	r.reqs = append(r.reqs, req.Method+" "+req.URL.Path+" "+how)
	r.codes = append(r.codes, sw.code)
	r.mu.Unlock()
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.reqs
	r.reqs, r.codes = nil, nil
	return out
}

// serveFixture serves the fixture's handler with serveRedfish (the
// production TLS setup) and returns host:port and the certificate's PEM
// file, for a client to verify the service against.
func serveFixture(t *testing.T, f *rfFixture) (string, *recorder, string) {
	t.Helper()
	k, _, err := loadOrCreateKey(filepath.Join(t.TempDir(), "tls.key"))
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddr("127.0.0.1")
	cert, _, err := selfSigned(k, "qemu-q35-host", "FW-TEST-0001", addr)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{h: f.svc}
	a, _, err := serveRedfish(t.Context(), addr, 0, cert, rec, f.svc.log)
	if err != nil {
		t.Fatal(err)
	}
	pemFile := filepath.Join(t.TempDir(), "ctld.pem")
	if err := os.WriteFile(pemFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o644); err != nil {
		t.Fatal(err)
	}
	return a.String(), rec, pemFile
}

func runClient(t *testing.T, name string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	// python3-requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE override a
	// session's verify setting (psf/requests#3829): without them, sushy
	// verifies against the file it is given and redfishtool (which never
	// verifies) connects at all.
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "REQUESTS_CA_BUNDLE=") && !strings.HasPrefix(e, "CURL_CA_BUNDLE=") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return out.String(), code
}

const sushyScript = `
import sys, sushy
url, user, password, ca = sys.argv[1:5]
s = sushy.Sushy(url, username=user, password=password, verify=ca)
for m in s.get_system_collection().get_members():
    print("SYSTEM", m.identity, m.system_type.value if m.system_type else None, m.power_state.value, m.memory_summary.size_gib if m.memory_summary else None)
vm = s.get_system("/redfish/v1/Systems/db")
print("ALLOWED", ",".join(sorted(v.value for v in vm.get_allowed_reset_system_values())))
vm.reset_system(sushy.RESET_ON)
vm.refresh()
print("AFTER_ON", vm.power_state.value)
vm.reset_system(sushy.RESET_FORCE_OFF)
vm.refresh()
print("AFTER_OFF", vm.power_state.value)
m = s.get_manager("/redfish/v1/Managers/ctld")
print("MANAGER", m.identity, m.manager_type.value)
print("SESSION", s._auth.get_session_key() is not None if hasattr(s._auth, "get_session_key") else "basic")
# What Sushy.__del__ does (which an exiting interpreter may skip): log out.
s._auth.close()
`

// sushy lists the host and the VMs (VMs as Virtual), reads a VM's allowed
// resets, powers it on and off and reads its state after each, over a
// session it logs into (X-Auth-Token) and out of. A wrong password and a
// ReadOnly account's reset fail in sushy with its access error.
func TestSushy(t *testing.T) {
	requireClients(t)
	f := newRFFixture(t)
	hostport, rec, ca := serveFixture(t, f)
	url := "https://" + hostport
	out, code := runClient(t, systemPython, "-c", sushyScript, url, "operator", opPass, ca)
	if code != 0 {
		t.Fatalf("sushy: exit %d:\n%s", code, out)
	}
	// sushy reads TotalSystemMemoryGiB as an integer (int_or_none).
	for _, want := range []string{
		"SYSTEM host Physical On 1\n",
		"SYSTEM db Virtual Off 0\n",
		"SYSTEM web Virtual On 1\n",
		"ALLOWED ForceOff,ForceRestart,GracefulRestart,GracefulShutdown,On\n",
		"AFTER_ON On\n",
		"AFTER_OFF Off\n",
		"MANAGER ctld Service\n",
		"SESSION True\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("sushy output lacks %q:\n%s", want, out)
		}
	}
	calls := strings.Join(f.xen.callList(), "\n")
	if !strings.Contains(calls, "xl create ") || !strings.Contains(calls, "xl destroy db") {
		t.Errorf("sushy's resets did not reach xl:\n%s", calls)
	}
	reqs := rec.take()
	var sawLogin, sawLogout bool
	for _, r := range reqs {
		sawLogin = sawLogin || r == "POST /redfish/v1/SessionService/Sessions none"
		sawLogout = sawLogout || strings.HasPrefix(r, "DELETE /redfish/v1/SessionService/Sessions/") && strings.HasSuffix(r, " token")
		if strings.HasPrefix(r, "GET /redfish/v1/Systems") && !strings.HasSuffix(r, " token") {
			t.Errorf("sushy request without its session token: %s", r)
		}
	}
	if !sawLogin || !sawLogout {
		t.Errorf("sushy did not log in and out (login %v, logout %v):\n%s", sawLogin, sawLogout, strings.Join(reqs, "\n"))
	}

	out, code = runClient(t, systemPython, "-c", sushyScript, url, "operator", "wrong", ca)
	if code == 0 || !strings.Contains(out, "AccessError") {
		t.Errorf("sushy with a wrong password: exit %d:\n%s", code, out)
	}
	// A ReadOnly account's Reset is refused with 403. sushy 4.3.3 then
	// logs in again and retries, but does not check the retry's answer
	// (connector.py's _op): the script goes on, and the VM stays off.
	rec.take()
	out, code = runClient(t, systemPython, "-c", sushyScript, url, "viewer", viewerPass, ca)
	if !strings.Contains(out, "AFTER_ON Off\n") || f.xen.running("db") {
		t.Errorf("sushy resetting as ReadOnly: exit %d, db running %v:\n%s", code, f.xen.running("db"), out)
	}
	rec.mu.Lock()
	forbidden := 0
	for i, r := range rec.reqs {
		if r == "POST /redfish/v1/Systems/db/Actions/ComputerSystem.Reset token" {
			if rec.codes[i] != 403 {
				t.Errorf("ReadOnly reset answered %d, want 403", rec.codes[i])
			}
			forbidden++
		}
	}
	rec.mu.Unlock()
	if forbidden == 0 {
		t.Errorf("no ReadOnly reset reached the service")
	}
}

// redfishtool lists the Systems, reads one, resets a VM by its Id (both
// with Basic auth and with a session), and fails on a wrong password.
func TestRedfishtool(t *testing.T) {
	requireClients(t)
	f := newRFFixture(t)
	hostport, rec, _ := serveFixture(t, f)
	rft := func(auth string, args ...string) (string, int) {
		return runClient(t, "redfishtool", append([]string{"-r", hostport, "-S", "Always", "-A", auth, "-u", "admin", "-p", adminPass}, args...)...)
	}
	out, code := rft("Basic", "Systems")
	if code != 0 {
		t.Fatalf("redfishtool Systems: exit %d:\n%s", code, out)
	}
	for _, want := range []string{`"/redfish/v1/Systems/host"`, `"/redfish/v1/Systems/db"`, `"/redfish/v1/Systems/web"`, `"Members@odata.count": 3`} {
		if !strings.Contains(out, want) {
			t.Errorf("redfishtool Systems lacks %s:\n%s", want, out)
		}
	}
	out, code = rft("Basic", "Systems", "-I", "web")
	if code != 0 || !strings.Contains(out, `"SystemType": "Virtual"`) || !strings.Contains(out, `"PowerState": "On"`) {
		t.Errorf("redfishtool Systems -I web: exit %d:\n%s", code, out)
	}
	out, code = rft("Basic", "Systems", "-I", "db", "reset", "On")
	if code != 0 || !f.xen.running("db") {
		t.Fatalf("redfishtool reset On: exit %d, db running %v:\n%s", code, f.xen.running("db"), out)
	}
	rec.take()
	out, code = rft("Session", "Systems", "-I", "db", "reset", "ForceOff")
	if code != 0 || f.xen.running("db") {
		t.Fatalf("redfishtool (session) reset ForceOff: exit %d, db running %v:\n%s", code, f.xen.running("db"), out)
	}
	reqs := strings.Join(rec.take(), "\n")
	if !strings.Contains(reqs, "POST /redfish/v1/SessionService/Sessions none") || !strings.Contains(reqs, "POST /redfish/v1/Systems/db/Actions/ComputerSystem.Reset token") {
		t.Errorf("redfishtool -A Session did not use a session:\n%s", reqs)
	}
	out, code = rft("Basic", "Systems", "-I", "db", "reset", "Nmi")
	if code == 0 {
		t.Errorf("redfishtool reset Nmi (not allowed): exit 0:\n%s", out)
	}
	out, code = runClient(t, "redfishtool", "-r", hostport, "-S", "Always", "-u", "admin", "-p", "wrong", "Systems")
	if code == 0 || !strings.Contains(out, "401") {
		t.Errorf("redfishtool with a wrong password: exit %d:\n%s", code, out)
	}
}

// redfishtool, unmodified, invokes the TPM quote action (raw POST, as DMTF's
// CLI has no subcommand for ComponentIntegrity) and the quote it prints
// verifies with package attest over its nonce.
func TestRedfishtoolQuote(t *testing.T) {
	requireClients(t)
	f := newTPMFixture(t)
	nonce := make([]byte, 24)
	rand.Read(nonce)
	body := `{"Certificate": {"@odata.id": "` + redfish.AKCertificate + `"}, "Nonce": "` + hex.EncodeToString(nonce) +
		`", "PCRSelection": "` + redfish.QuotePCRSelection() + `", "Scheme": "` + redfish.QuoteScheme() + `"}`
	out, code := runClient(t, "redfishtool", "-r", f.addr, "-S", "Always", "-u", "admin", "-p", adminPass,
		"raw", "POST", redfish.TPMSignedTarget, "-d", body)
	if code != 0 {
		t.Fatalf("redfishtool raw POST: exit %d:\n%s", code, out)
	}
	var resp redfish.TPMGetSignedMeasurementsResponse
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &resp); err != nil || resp.SignedMeasurements == "" {
		t.Fatalf("redfishtool's answer %q: %v", out, err)
	}
	var ci redfish.ComponentIntegrityResource
	if err := json.Unmarshal(f.do(t, "GET", redfish.TPMIntegrity, admin, "").body, &ci); err != nil || ci.TPM == nil {
		t.Fatalf("ComponentIntegrity/TPM: %v", err)
	}
	q, err := redfish.QuoteFrom(resp, ci.TPM.MeasurementSet, nonce, contract.QuotePCRs)
	if err != nil {
		t.Fatal(err)
	}
	var cert redfish.CertificateResource
	if err := json.Unmarshal(f.do(t, "GET", redfish.AKCertificate, admin, "").body, &cert); err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode([]byte(cert.CertificateString))
	if blk == nil {
		t.Fatalf("certificate %q", cert.CertificateString)
	}
	ak, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := attest.VerifyCertified(q, ak, f.svc.tpm.issuer.Leaf, nonce, f.want); err != nil {
		t.Fatalf("redfishtool's quote: %v", err)
	}
	out, code = runClient(t, "redfishtool", "-r", f.addr, "-S", "Always", "-u", "admin", "-p", adminPass,
		"raw", "POST", redfish.TPMSignedTarget, "-d", strings.Replace(body, hex.EncodeToString(nonce), "nothex", 1))
	if code == 0 || !strings.Contains(out, "400") {
		t.Errorf("redfishtool with a bad nonce: exit %d:\n%s", code, out)
	}
}
