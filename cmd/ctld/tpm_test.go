package main

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-tpm/legacy/tpm2"
	"github.com/google/go-tpm/tpmutil"

	"github.com/fwbuild/fwbuild/attest"
	"github.com/fwbuild/fwbuild/contract"
	"github.com/fwbuild/fwbuild/measure"
	qemutests "github.com/fwbuild/fwbuild/qemu-tests"
)

// TestQuoteVerifies runs ctld's quote on a real TPM (swtpm, no machine)
// whose PCRs 4 and 7 were extended with a predicted boot's events, and
// fwbuild's verifier on the result: accepted with its nonce and prediction;
// refused with an old nonce (a replayed quote), another build's prediction,
// a changed PCR value or signature. The same TPM gives the same attestation
// key twice.
func TestQuoteVerifies(t *testing.T) {
	tpm, err := qemutests.StartStandaloneTPM(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err) // swtpm is installed by fwbuild doctor --fix
	}
	defer tpm.Stop()
	rw, err := tpm.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer rw.Close()

	app := measure.Digests{SHA256: make([]byte, 32), SHA1: make([]byte, 20)}
	rand.Read(app.SHA256)
	rand.Read(app.SHA1)
	p := measure.BootOption(app, measure.SecureBootPolicy([]byte{0}, nil), nil, 1)
	for _, e := range p.Events {
		if err := tpm2.PCRExtend(rw, tpmutilHandle(e.PCR), tpm2.AlgSHA256, e.Digest.SHA256, ""); err != nil {
			t.Fatalf("extend PCR %d: %v", e.PCR, err)
		}
	}
	want := &contract.PathMeasurement{Payload: "payload-esp.efi", SHA256: measure.Hex(p.SHA256, 4, 7)}

	nonce := []byte("fresh nonce from the verifier")
	q, err := quoteOn(context.Background(), rw, nonce, contract.QuotePCRs)
	if err != nil {
		t.Fatal(err)
	}
	line := q.String()
	if !strings.HasPrefix(line, contract.QuotePrefix) || strings.Contains(line, "\n") {
		t.Fatalf("quote line %q", line)
	}
	back, err := contract.ParseQuote(line)
	if err != nil {
		t.Fatal(err)
	}
	if err := attest.Verify(back, nonce, want); err != nil {
		t.Fatalf("a fresh quote with the predicted PCRs: %v", err)
	}
	if q.PCRs["4"] != want.SHA256["4"] || q.PCRs["7"] != want.SHA256["7"] {
		t.Fatalf("quoted PCRs %v, predicted %v", q.PCRs, want.SHA256)
	}

	var mm *attest.Mismatch
	// A replayed quote: the verifier's new nonce is not in it.
	if err := attest.Verify(back, []byte("the verifier's next nonce"), want); !errors.As(err, &mm) || !strings.Contains(err.Error(), "nonce") {
		t.Errorf("old nonce: %v", err)
	}
	// Another build's prediction (another payload).
	other := &contract.PathMeasurement{Payload: "payload-esp.efi", SHA256: map[string]string{"4": strings.Repeat("ab", 32), "7": want.SHA256["7"]}}
	if err := attest.Verify(back, nonce, other); !errors.As(err, &mm) || !strings.Contains(err.Error(), "PCR 4") {
		t.Errorf("another build's prediction: %v", err)
	}
	// PCR values changed after quoting.
	forged := back
	forged.PCRs = map[string]string{}
	for k, v := range back.PCRs {
		forged.PCRs[k] = v
	}
	forged.PCRs["4"] = strings.Repeat("ab", 32)
	if err := attest.Verify(forged, nonce, other); !errors.As(err, &mm) || !strings.Contains(err.Error(), "not the ones the TPM quoted") {
		t.Errorf("forged PCR list: %v", err)
	}
	// A flipped bit in the signed structure.
	bad := back
	bad.Quoted = append([]byte(nil), back.Quoted...)
	bad.Quoted[len(bad.Quoted)-1] ^= 1
	if err := attest.Verify(bad, nonce, want); !errors.As(err, &mm) || !strings.Contains(err.Error(), "signature") {
		t.Errorf("altered quote: %v", err)
	}

	// Same TPM, same key (the template makes it deterministic).
	q2, err := quoteOn(context.Background(), rw, []byte{1}, contract.QuotePCRs)
	if err != nil {
		t.Fatal(err)
	}
	if string(q2.AKPublic) != string(q.AKPublic) {
		t.Error("a second quote used another attestation key")
	}
	if _, err := quoteOn(context.Background(), rw, nil, contract.QuotePCRs); err == nil {
		t.Error("an empty nonce was accepted")
	}
}

func tpmutilHandle(pcr int) tpmutil.Handle { return tpmutil.Handle(pcr) }

// TestMeasured reads a sysfs tree as the kernel lays it out.
func TestMeasured(t *testing.T) {
	root := t.TempDir()
	p := tpmPaths{sysClass: filepath.Join(root, "class/tpm/tpm0"), securityFS: filepath.Join(root, "security")}
	if _, ok, err := p.measured(); ok || err != nil {
		t.Fatalf("no TPM: ok=%v err=%v", ok, err)
	}
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(p.sysClass, "pcr-sha256"), 0o755))
	h4, h7 := strings.Repeat("A1", 32), strings.Repeat("b2", 32)
	must(os.WriteFile(filepath.Join(p.sysClass, "pcr-sha256", "4"), []byte(h4+"\n"), 0o644))
	if _, ok, err := p.measured(); !ok || err == nil {
		t.Fatalf("PCR 7 missing: ok=%v err=%v", ok, err)
	}
	must(os.WriteFile(filepath.Join(p.sysClass, "pcr-sha256", "7"), []byte(h7+"\n"), 0o644))
	m, ok, err := p.measured()
	if !ok || err != nil {
		t.Fatal(ok, err)
	}
	back, err := contract.ParseMeasured("$ " + m.String())
	if err != nil || back.PCR4 != strings.ToLower(h4) || back.PCR7 != h7 || back.LogEvents != -1 {
		t.Fatalf("%q -> %+v, %v", m.String(), back, err)
	}
}
