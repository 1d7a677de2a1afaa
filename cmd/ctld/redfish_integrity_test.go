package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-tpm/legacy/tpm2"
	"github.com/google/go-tpm/tpmutil"

	"github.com/fwbuild/fwbuild/attest"
	"github.com/fwbuild/fwbuild/contract"
	rf "github.com/fwbuild/fwbuild/contract/redfish"
	"github.com/fwbuild/fwbuild/measure"
	qemutests "github.com/fwbuild/fwbuild/qemu-tests"
	"github.com/fwbuild/fwbuild/remote"
)

// tpmFixture is the Redfish fixture with a real TPM (swtpm, no machine)
// whose PCRs 4 and 7 hold a predicted boot's values, served with the
// production TLS setup (serveRedfish) by the key that certifies the
// attestation key. want is the prediction; addr and fp where the service
// is and its certificate's pin.
type tpmFixture struct {
	*rfFixture
	want     *contract.PathMeasurement
	addr, fp string
}

func newTPMFixture(t *testing.T) *tpmFixture {
	t.Helper()
	tpm, err := qemutests.StartStandaloneTPM(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err) // swtpm is installed by fwbuild doctor --fix
	}
	t.Cleanup(tpm.Stop)
	rw, err := tpm.Open()
	if err != nil {
		t.Fatal(err)
	}
	app := measure.Digests{SHA256: make([]byte, 32), SHA1: make([]byte, 20)}
	rand.Read(app.SHA256)
	rand.Read(app.SHA1)
	p := measure.BootOption(app, measure.SecureBootPolicy([]byte{0}, nil), nil, 1)
	for _, e := range p.Events {
		if err := tpm2.PCRExtend(rw, tpmutil.Handle(e.PCR), tpm2.AlgSHA256, e.Digest.SHA256, ""); err != nil {
			t.Fatalf("extend PCR %d: %v", e.PCR, err)
		}
	}
	rw.Close()
	f := &tpmFixture{rfFixture: newRFFixture(t), want: &contract.PathMeasurement{Payload: "payload-flash.efi", SHA256: measure.Hex(p.SHA256, 4, 7)}}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	lo := netip.MustParseAddr("127.0.0.1")
	cert, fp, err := selfSigned(key, "qemu-q35-host", "FW-TEST-0001", lo)
	if err != nil {
		t.Fatal(err)
	}
	f.fp = fp
	f.svc.tpm = &tpmService{open: func() (io.ReadWriteCloser, error) { return tpm.Open() }, issuer: cert, board: "qemu-q35-host", serial: "FW-TEST-0001"}
	a, _, err := serveRedfish(t.Context(), lo, 0, cert, f.svc, f.svc.log)
	if err != nil {
		t.Fatal(err)
	}
	f.addr = a.String()
	return f
}

func (f *tpmFixture) client(t *testing.T, user, pass, fp string) *remote.Client {
	t.Helper()
	cl, err := remote.New(remote.Options{Host: f.addr, User: user, Password: pass, Fingerprint: fp})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// TestRedfishQuote fetches a quote through the real HTTP handler the way
// `fwbuild attest --redfish` does (remote.Client.Quote: the action, the
// MeasurementSet, the attestation key's certificate) and verifies it with
// package attest: accepted over its fresh nonce and the prediction; refused
// over another nonce (a replayed quote), against another build, and with
// a certificate the pinned service key did not sign. The same quote path
// serves `ctld quote`: the console's and the API's keys are one key.
func TestRedfishQuote(t *testing.T) {
	f := newTPMFixture(t)
	ctx := t.Context()
	cl := f.client(t, "admin", adminPass, f.fp)
	nonce := make([]byte, 32)
	rand.Read(nonce)
	rq, err := cl.Quote(ctx, nonce)
	if err != nil {
		t.Fatal(err)
	}
	if err := attest.VerifyCertified(rq.Quote, rq.AKCertificate, rq.Server, nonce, f.want); err != nil {
		t.Fatalf("a fresh quote over the API: %v", err)
	}
	if rq.Quote.PCRs["4"] != f.want.SHA256["4"] || rq.Quote.PCRs["7"] != f.want.SHA256["7"] {
		t.Fatalf("PCRs %v, predicted %v", rq.Quote.PCRs, f.want.SHA256)
	}
	var mm *attest.Mismatch
	if err := attest.VerifyCertified(rq.Quote, rq.AKCertificate, rq.Server, []byte("the verifier's next nonce"), f.want); !errors.As(err, &mm) || !strings.Contains(err.Error(), "nonce") {
		t.Errorf("another nonce: %v", err)
	}
	other := &contract.PathMeasurement{Payload: "payload-flash.efi", SHA256: map[string]string{"4": strings.Repeat("ab", 32), "7": f.want.SHA256["7"]}}
	if err := attest.VerifyCertified(rq.Quote, rq.AKCertificate, rq.Server, nonce, other); !errors.As(err, &mm) || !strings.Contains(err.Error(), "PCR 4") {
		t.Errorf("another build's prediction: %v", err)
	}
	// A certificate the pinned key did not issue: the AK certificate
	// itself stands in as a wrong issuer.
	if err := attest.VerifyCertified(rq.Quote, rq.AKCertificate, rq.AKCertificate, nonce, f.want); !errors.As(err, &mm) || !strings.Contains(err.Error(), "not signed by the service's key") {
		t.Errorf("a foreign issuer: %v", err)
	}
	// The console's quote (the same quoteOn) is signed by the same key.
	var console contract.Quote
	if err := f.svc.tpm.with(func(rw io.ReadWriter) (err error) {
		console, err = quoteOn(ctx, rw, []byte{1, 2, 3}, contract.QuotePCRs)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := attest.Verify(console, []byte{1, 2, 3}, f.want); err != nil {
		t.Fatalf("console quote: %v", err)
	}
	if err := attest.VerifyCertified(console, rq.AKCertificate, rq.Server, []byte{1, 2, 3}, f.want); err != nil {
		t.Errorf("the console's quote does not verify with the API's certificate: %v", err)
	}
	// A wrong pin never gets a quote.
	if _, err := f.client(t, "admin", adminPass, strings.Repeat("00", 32)).Quote(ctx, nonce); err == nil || !strings.Contains(err.Error(), "pinned") {
		t.Errorf("wrong fingerprint: %v", err)
	}
}

// TestRedfishQuoteRequests: the resource and the action as a client sees
// them, and every refusal: unauthenticated 401, ReadOnly and Operator 403
// (the registry's ConfigureManager), GET on the
// action 405, each missing or malformed parameter 400 naming it, and a unit
// without a TPM a 404 saying so.
func TestRedfishQuoteRequests(t *testing.T) {
	f := newTPMFixture(t)
	good := func(nonce string) string {
		return `{"Certificate": {"@odata.id": "` + rf.AKCertificate + `"}, "Nonce": "` + nonce + `", "PCRSelection": "` + rf.QuotePCRSelection() + `", "Scheme": "` + rf.QuoteScheme() + `"}`
	}
	root := f.do(t, "GET", rf.Root, "", "").json(t)
	if ci, _ := root["ComponentIntegrity"].(map[string]any); ci["@odata.id"] != rf.ComponentIntegrity {
		t.Errorf("service root: ComponentIntegrity %v", root["ComponentIntegrity"])
	}
	col := f.do(t, "GET", rf.ComponentIntegrity, admin, "")
	if col.code != 200 || !strings.Contains(string(col.body), `"`+rf.TPMIntegrity+`"`) {
		t.Errorf("collection: %d %s", col.code, col.body)
	}
	res := f.do(t, "GET", rf.TPMIntegrity, "viewer:"+viewerPass, "")
	body := string(res.body)
	for _, want := range []string{`"ComponentIntegrityType": "TPM"`, `"TargetComponentURI": "` + rf.TPMTrustedModule + `"`, `"target": "` + rf.TPMSignedTarget + `"`,
		`"MeasurementHashAlgorithm": "TPM_ALG_SHA256"`, `"PCR": 23`, `"NonceSizeBytesMaximum": 64`} {
		if res.code != 200 || !strings.Contains(body, want) {
			t.Errorf("ComponentIntegrity/TPM lacks %s: %d %s", want, res.code, body)
		}
	}
	host := string(f.do(t, "GET", rf.System(rf.HostID), admin, "").body)
	if !strings.Contains(host, `"InterfaceType": "TPM2_0"`) || !strings.Contains(host, `"`+rf.HostCertificates+`"`) {
		t.Errorf("host system lacks its TrustedModules or Certificates: %s", host)
	}
	cert := f.do(t, "GET", rf.AKCertificate, admin, "").json(t)
	if !strings.HasPrefix(cert["CertificateString"].(string), "-----BEGIN CERTIFICATE-----") || cert["CertificateType"] != "PEM" {
		t.Errorf("certificate: %v", cert)
	}

	nonce := strings.Repeat("5a", 32)
	ok := f.do(t, "POST", rf.TPMSignedTarget, admin, good(nonce))
	if ok.code != 200 || !strings.Contains(string(ok.body), `"SignedMeasurements"`) {
		t.Fatalf("action: %d %s", ok.code, ok.body)
	}
	if r := f.do(t, "POST", rf.TPMSignedTarget, "", good(nonce)); r.code != 401 {
		t.Errorf("unauthenticated: %d %s", r.code, r.body)
	}
	// DMTF's privilege registry: the action needs ConfigureManager
	// (Administrator), the host's certificates ConfigureComponents
	// (Operator too), the resource Login (ReadOnly too).
	for _, who := range []string{"viewer:" + viewerPass, "operator:" + opPass} {
		if r := f.do(t, "POST", rf.TPMSignedTarget, who, good(nonce)); r.code != 403 || !strings.HasSuffix(r.messageID(t), ".InsufficientPrivilege") {
			t.Errorf("POST as %s: %d %s", who, r.code, r.body)
		}
	}
	if r := f.do(t, "GET", rf.AKCertificate, "viewer:"+viewerPass, ""); r.code != 403 {
		t.Errorf("ReadOnly GET of the certificate: %d %s", r.code, r.body)
	}
	if r := f.do(t, "GET", rf.AKCertificate, "operator:"+opPass, ""); r.code != 200 {
		t.Errorf("Operator GET of the certificate: %d %s", r.code, r.body)
	}
	if r := f.do(t, "GET", rf.TPMSignedTarget, admin, ""); r.code != 405 || r.hdr.Get("Allow") != "POST" {
		t.Errorf("GET on the action: %d %v", r.code, r.hdr)
	}
	for _, c := range []struct{ name, body, id, param string }{
		{"nonce not hex", good("xyz"), "ActionParameterValueFormatError", "Nonce"},
		{"nonce too long", good(strings.Repeat("00", 65)), "ActionParameterValueFormatError", "Nonce"},
		{"no certificate", `{"PCRSelection": "` + rf.QuotePCRSelection() + `", "Scheme": "` + rf.QuoteScheme() + `"}`, "ActionParameterMissing", "Certificate"},
		{"another certificate", strings.Replace(good(nonce), rf.AKCertificate, rf.HostCertificates+"/Other", 1), "ActionParameterValueError", "Certificate"},
		{"no selection", strings.Replace(good(nonce), rf.QuotePCRSelection(), "", 1), "ActionParameterMissing", "PCRSelection"},
		{"SHA-1 bank", strings.Replace(good(nonce), rf.QuotePCRSelection(), "AAAAAQAEA/8AAA==", 1), "ActionParameterValueFormatError", "PCRSelection"},
		{"another scheme", strings.Replace(good(nonce), rf.QuoteScheme(), "ABYACw==", 1), "ActionParameterValueFormatError", "Scheme"},
	} {
		r := f.do(t, "POST", rf.TPMSignedTarget, admin, c.body)
		if r.code != 400 || !strings.HasSuffix(r.messageID(t), "."+c.id) || !strings.Contains(string(r.body), `"`+c.param+`"`) {
			t.Errorf("%s: %d %s", c.name, r.code, r.body)
		}
	}
	// Without a Nonce the service makes one, as the schema says.
	if r := f.do(t, "POST", rf.TPMSignedTarget, admin, strings.Replace(good(""), `"Nonce": "", `, "", 1)); r.code != 200 {
		t.Errorf("no nonce: %d %s", r.code, r.body)
	}

	none := newRFFixture(t)
	for _, p := range []string{rf.TPMIntegrity, rf.TPMSignedTarget} {
		method := map[string]string{rf.TPMIntegrity: "GET", rf.TPMSignedTarget: "POST"}[p]
		r := none.do(t, method, p, admin, good(nonce))
		if r.code != 404 || !strings.HasSuffix(r.messageID(t), ".ResourceNotFound") || !strings.Contains(string(r.body), "no TPM") {
			t.Errorf("%s %s without a TPM: %d %s", method, p, r.code, r.body)
		}
	}
	if root := string(none.do(t, "GET", rf.Root, "", "").body); strings.Contains(root, "ComponentIntegrity") {
		t.Errorf("a unit without a TPM links ComponentIntegrity: %s", root)
	}
}
