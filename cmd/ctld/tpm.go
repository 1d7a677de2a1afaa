package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-tpm/legacy/tpm2"
	"github.com/google/go-tpm/tpmutil"

	"github.com/fwbuild/fwbuild/contract"
)

// The TPM: the measured line at boot (the firmware's PCRs 4 and 7 as the
// kernel exposes them in sysfs, and whether the firmware's event log reached
// the kernel), and quotes over a verifier's nonce (`ctld quote <nonce-hex>`,
// and the Redfish action in redfish_integrity.go: both are quoteOn). ctld
// compares nothing itself: see contract/attest.go for why the verifier does.

// tpmPaths are where the kernel exposes the TPM (a test points them at a
// temporary tree).
type tpmPaths struct {
	sysClass   string // /sys/class/tpm/tpm0
	securityFS string // /sys/kernel/security
	devices    []string
}

var linuxTPM = tpmPaths{
	sysClass:   "/sys/class/tpm/tpm0",
	securityFS: "/sys/kernel/security",
	// The resource manager first: it flushes what a crashed caller left.
	devices: []string{"/dev/tpmrm0", "/dev/tpm0"},
}

// measured reads PCRs 4 and 7 (SHA-256) and counts the event log's events.
// ok is false when the machine has no TPM.
func (p tpmPaths) measured() (m contract.Measured, ok bool, err error) {
	if _, err := os.Stat(p.sysClass); err != nil {
		return m, false, nil
	}
	read := func(pcr int) (string, error) {
		f := filepath.Join(p.sysClass, "pcr-sha256", fmt.Sprint(pcr))
		b, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("tpm: %w (a TPM without an active SHA-256 bank?)", err)
		}
		h := strings.ToLower(strings.TrimSpace(string(b)))
		if d, err := hex.DecodeString(h); err != nil || len(d) != 32 {
			return "", fmt.Errorf("tpm: %s holds %q, not a SHA-256 digest", f, h)
		}
		return h, nil
	}
	if m.PCR4, err = read(4); err != nil {
		return m, true, err
	}
	if m.PCR7, err = read(7); err != nil {
		return m, true, err
	}
	m.LogEvents = -1
	if b, err := os.ReadFile(filepath.Join(p.securityFS, "tpm0", "binary_bios_measurements")); err == nil && len(b) > 0 {
		if n, err := contract.CountEvents(b); err == nil {
			m.LogEvents = n
		}
	}
	return m, true, nil
}

// reportMeasured prints the measured line (or that there is no TPM). A TPM
// that cannot be read is a FAILED line but not a failed boot: the toolstack
// and the guests do not depend on it.
func (a *agent) reportMeasured() {
	// securityfs holds the event log; nothing else mounts it.
	if _, err := os.Stat(filepath.Join(linuxTPM.securityFS, "tpm0")); err != nil {
		_ = a.sys.mount("securityfs", linuxTPM.securityFS, "securityfs")
	}
	m, ok, err := linuxTPM.measured()
	switch {
	case err != nil:
		a.say(contract.Failed{Step: "tpm", Reason: err.Error()})
	case !ok:
		a.say(line(contract.NoTPM))
	default:
		a.say(m)
	}
}

// line is a fixed console line.
type line string

func (l line) String() string { return string(l) }

// akTemplate is the attestation key's template: a restricted RSA-2048
// signing key (RSASSA, SHA-256) in the endorsement hierarchy. A primary key
// is derived from the hierarchy's seed and the template, so the same TPM
// gives the same key every boot without storing anything.
var akTemplate = tpm2.Public{
	Type:    tpm2.AlgRSA,
	NameAlg: tpm2.AlgSHA256,
	Attributes: tpm2.FlagFixedTPM | tpm2.FlagFixedParent | tpm2.FlagSensitiveDataOrigin |
		tpm2.FlagUserWithAuth | tpm2.FlagRestricted | tpm2.FlagSign | tpm2.FlagNoDA,
	RSAParameters: &tpm2.RSAParams{
		Sign:    &tpm2.SigScheme{Alg: tpm2.AlgRSASSA, Hash: tpm2.AlgSHA256},
		KeyBits: 2048,
	},
}

// open opens the machine's TPM, the resource manager first.
func (p tpmPaths) open() (io.ReadWriteCloser, error) {
	var err error
	for _, d := range p.devices {
		var rw io.ReadWriteCloser
		if rw, err = tpm2.OpenTPM(d); err == nil {
			return rw, nil
		}
	}
	return nil, fmt.Errorf("tpm: open %s: %w", strings.Join(p.devices, " or "), err)
}

// quote asks the TPM for a quote of contract.QuotePCRs over nonce (`ctld
// quote`; the Redfish action calls quoteOn on the service's TPM).
func quote(ctx context.Context, nonce []byte) (contract.Quote, error) {
	rw, err := linuxTPM.open()
	if err != nil {
		return contract.Quote{}, err
	}
	defer rw.Close()
	return quoteOn(ctx, rw, nonce, contract.QuotePCRs)
}

// quoteOn quotes SHA-256 PCRs pcrs over nonce with the attestation key, and
// reads the PCR values it covers. Every quote, the console's and the
// Redfish API's, is this function.
func quoteOn(ctx context.Context, rw io.ReadWriter, nonce []byte, pcrs []int) (contract.Quote, error) {
	q := contract.Quote{Nonce: hex.EncodeToString(nonce), PCRs: map[string]string{}}
	if len(nonce) == 0 || len(nonce) > 64 {
		return q, fmt.Errorf("quote: nonce of %d bytes: give 1 to 64 (the TPM's digest buffer)", len(nonce))
	}
	if err := ctx.Err(); err != nil {
		return q, err
	}
	ak, public, err := loadAK(rw)
	if err != nil {
		return q, err
	}
	defer tpm2.FlushContext(rw, ak)
	q.AKPublic = public
	sel := tpm2.PCRSelection{Hash: tpm2.AlgSHA256, PCRs: pcrs}
	attest, sig, err := tpm2.Quote(rw, ak, "", "", nonce, sel, tpm2.AlgNull)
	if err != nil {
		return q, fmt.Errorf("tpm: quote: %w", err)
	}
	q.Quoted = attest
	if sig.RSA == nil {
		return q, errors.New("tpm: quote: not an RSA signature")
	}
	if q.Signature, err = sig.Encode(); err != nil {
		return q, fmt.Errorf("tpm: encode the signature: %w", err)
	}
	if q.PCRs, err = readPCRsOn(rw, pcrs); err != nil {
		return q, err
	}
	return q, nil
}

// loadAK makes the attestation key (the same one every time: see
// akTemplate) and returns its handle, which the caller flushes, and its
// TPMT_PUBLIC.
func loadAK(rw io.ReadWriter) (tpmutil.Handle, []byte, error) {
	ak, _, err := tpm2.CreatePrimary(rw, tpm2.HandleEndorsement, tpm2.PCRSelection{}, "", "", akTemplate)
	if err != nil {
		return 0, nil, fmt.Errorf("tpm: create the attestation key: %w", err)
	}
	public, _, _, err := tpm2.ReadPublic(rw, ak)
	if err != nil {
		tpm2.FlushContext(rw, ak)
		return 0, nil, fmt.Errorf("tpm: read the attestation key: %w", err)
	}
	b, err := public.Encode()
	if err != nil {
		tpm2.FlushContext(rw, ak)
		return 0, nil, fmt.Errorf("tpm: encode the attestation key: %w", err)
	}
	return ak, b, nil
}

// readPCRsOn reads SHA-256 PCRs, index -> hex. TPM2_PCR_Read answers at
// most 8 digests at a time, so larger selections go in rounds.
func readPCRsOn(rw io.ReadWriter, pcrs []int) (map[string]string, error) {
	out := map[string]string{}
	for len(pcrs) > 0 {
		n := min(len(pcrs), 8)
		vals, err := tpm2.ReadPCRs(rw, tpm2.PCRSelection{Hash: tpm2.AlgSHA256, PCRs: pcrs[:n]})
		if err != nil {
			return nil, fmt.Errorf("tpm: read PCRs %v: %w", pcrs[:n], err)
		}
		for _, i := range pcrs[:n] {
			v, ok := vals[i]
			if !ok {
				return nil, fmt.Errorf("tpm: read PCRs: no SHA-256 value of PCR %d", i)
			}
			out[fmt.Sprint(i)] = hex.EncodeToString(v)
		}
		pcrs = pcrs[n:]
	}
	return out, nil
}

// runQuote is `ctld quote <nonce-hex>`: one line, the quote.
func runQuote(ctx context.Context, args []string, w io.Writer) error {
	if len(args) != 1 {
		return errors.New("usage: ctld quote <nonce-hex>")
	}
	nonce, err := hex.DecodeString(args[0])
	if err != nil {
		return fmt.Errorf("nonce %q: not hex: %w", args[0], err)
	}
	q, err := quote(ctx, nonce)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, q)
	return err
}
