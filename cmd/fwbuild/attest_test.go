package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-tpm/legacy/tpm2"
	"github.com/google/go-tpm/tpmutil"

	"github.com/fwbuild/fwbuild/contract"
	"github.com/fwbuild/fwbuild/measure"
	qemutests "github.com/fwbuild/fwbuild/qemu-tests"
)

// TestAttestCommand needs no boot: a real TPM (swtpm) gets the events the
// build predicts for a payload, quotes them over a nonce with a restricted
// key (as ctld quote does), and `fwbuild attest` must accept that quote with
// its manifest and nonce (exit 0), and refuse it with another nonce (a
// replayed quote) and with the manifest of another build (exit 1, naming
// what differs).
func TestAttestCommand(t *testing.T) {
	dir := t.TempDir()
	tpm, err := qemutests.StartStandaloneTPM(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer tpm.Stop()
	rw, err := tpm.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer rw.Close()
	predict := func(b byte) *contract.PathMeasurement {
		app := measure.Digests{SHA256: []byte(strings.Repeat(string(rune('a'+b)), 32)), SHA1: make([]byte, 20)}
		p := measure.BootOption(app, measure.SecureBootPolicy([]byte{0}, nil), nil, 0)
		if b == 0 {
			for _, e := range p.Events {
				if err := tpm2.PCRExtend(rw, tpmutil.Handle(e.PCR), tpm2.AlgSHA256, e.Digest.SHA256, ""); err != nil {
					t.Fatal(err)
				}
			}
		}
		return &contract.PathMeasurement{Payload: "payload-flash.efi", SHA256: measure.Hex(p.SHA256, 4, 7)}
	}
	writeManifest := func(name string, m *contract.PathMeasurement) string {
		b, _ := json.Marshal(map[string]any{"board": "qemu-q35", "measurements": map[string]any{"spi": m}})
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	this, other := writeManifest("this.json", predict(0)), writeManifest("other.json", predict(1))

	tmpl := tpm2.Public{Type: tpm2.AlgRSA, NameAlg: tpm2.AlgSHA256,
		Attributes:    tpm2.FlagFixedTPM | tpm2.FlagFixedParent | tpm2.FlagSensitiveDataOrigin | tpm2.FlagUserWithAuth | tpm2.FlagRestricted | tpm2.FlagSign,
		RSAParameters: &tpm2.RSAParams{Sign: &tpm2.SigScheme{Alg: tpm2.AlgRSASSA, Hash: tpm2.AlgSHA256}, KeyBits: 2048}}
	ak, _, err := tpm2.CreatePrimary(rw, tpm2.HandleEndorsement, tpm2.PCRSelection{}, "", "", tmpl)
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, err := tpm2.ReadPublic(rw, ak)
	if err != nil {
		t.Fatal(err)
	}
	sel := tpm2.PCRSelection{Hash: tpm2.AlgSHA256, PCRs: contract.QuotePCRs}
	nonce := []byte{0x00, 0x11, 0xaa, 0xbb}
	quoted, sig, err := tpm2.Quote(rw, ak, "", "", nonce, sel, tpm2.AlgNull)
	if err != nil {
		t.Fatal(err)
	}
	q := contract.Quote{Nonce: "0011aabb", Quoted: quoted, PCRs: map[string]string{}}
	if q.AKPublic, err = pub.Encode(); err != nil {
		t.Fatal(err)
	}
	if q.Signature, err = sig.Encode(); err != nil {
		t.Fatal(err)
	}
	pcrs, err := tpm2.ReadPCRs(rw, sel)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range pcrs {
		q.PCRs[itoa(i)] = hexs(v)
	}
	quoteFile := filepath.Join(dir, "quote.txt")
	if err := os.WriteFile(quoteFile, []byte("$ "+q.String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	code, out, errOut := runCLI(t, "attest", "--manifest", this, "--quote", quoteFile, "--nonce", "0011aabb", "--path", "spi")
	if code != 0 || !strings.Contains(out, "attest: match") {
		t.Fatalf("fresh quote: exit %d, %q %q", code, out, errOut)
	}
	code, _, errOut = runCLI(t, "attest", "--manifest", this, "--quote", quoteFile, "--nonce", "0011aabc", "--path", "spi")
	if code != 1 || !strings.Contains(errOut, "nonce") {
		t.Errorf("old nonce: exit %d, %q", code, errOut)
	}
	code, _, errOut = runCLI(t, "attest", "--manifest", other, "--quote", quoteFile, "--nonce", "0011aabb", "--path", "spi")
	if code != 1 || !strings.Contains(errOut, "PCR 4: want") {
		t.Errorf("another build's manifest: exit %d, %q", code, errOut)
	}
	code, _, errOut = runCLI(t, "attest", "--manifest", this, "--quote", quoteFile, "--nonce", "0011aabb", "--path", "usb")
	if code != 1 || !strings.Contains(errOut, `no predicted measurements for path "usb"`) {
		t.Errorf("a path the manifest lacks: exit %d, %q", code, errOut)
	}
	if code, _, _ = runCLI(t, "attest", "--manifest", this); code != 2 {
		t.Errorf("missing flags: exit %d, want 2", code)
	}
	// --redfish without the pin: the attestation key's certificate would
	// be checked against nothing.
	if code, _, errOut = runCLI(t, "attest", "--manifest", this, "--redfish", "127.0.0.1:1", "--password-file", quoteFile); code != 2 || !strings.Contains(errOut, "--fingerprint") {
		t.Errorf("--redfish without --fingerprint: exit %d, %q", code, errOut)
	}
	if code, _, _ = runCLI(t, "attest", "--manifest", this, "--redfish", "127.0.0.1:1", "--quote", quoteFile); code != 2 {
		t.Errorf("--redfish with --quote: exit %d, want 2", code)
	}
}

func hexs(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}
