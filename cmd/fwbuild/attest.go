package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"

	"github.com/spf13/cobra"

	"github.com/fwbuild/fwbuild/attest"
	"github.com/fwbuild/fwbuild/contract"
	"github.com/fwbuild/fwbuild/provision"
	"github.com/fwbuild/fwbuild/remote"
)

// attestOptions are `fwbuild attest`'s flags: a quote from a file (the
// console's `ctld quote`), or one fetched over the unit's Redfish API.
type attestOptions struct {
	manifest, quoteFile, nonce, path, eventlog string
	host, user, passwordFile, fingerprint      string
}

func (e *env) attestCommand() *cobra.Command {
	var o attestOptions
	c := &cobra.Command{
		Use:   "attest --manifest out/B/manifest.json (--redfish H[:port] --password-file F --fingerprint SHA256 | --quote FILE --nonce HEX) [--path usb|spi] [--eventlog FILE]",
		Short: "verify a control domain's TPM quote against a build's predicted PCRs",
		Long: "attest checks a TPM quote: the attestation key's signature, that it is over the verifier's nonce (a\n" +
			"replayed quote is not), that the listed PCR values are the quoted ones, and that PCRs 4 and 7 are the\n" +
			"manifest's prediction for the boot path.\n\n" +
			"With --redfish, attest asks the unit itself: it makes a fresh random nonce, runs the Redfish action\n" +
			"ComponentIntegrity/TPM TPMGetSignedMeasurements, reads the PCR values and the attestation key's\n" +
			"certificate, and checks that certificate is signed by the unit's TLS key (pinned by --fingerprint,\n" +
			"the sha256= of ctld's redfish line). With --quote, it checks a quote from `ctld quote <nonce-hex>` (the\n" +
			"line, or its JSON) against --nonce. With --eventlog (the firmware's binary_bios_measurements) the log\n" +
			"must replay to the quoted PCRs and match the predicted events. Exit 0 when everything matches, 1 with\n" +
			"each difference named.",
		Example: "  fwbuild attest --manifest out/qemu-q35/manifest.json --path spi --redfish 10.0.2.15 --password-file unit.pw --fingerprint 3f0c...e1\n" +
			"  fwbuild attest --manifest out/qemu-q35/manifest.json --quote quote.txt --nonce 0011aabb --path spi",
		Args: noArgs,
		RunE: runE(func(*cobra.Command, []string) error { return e.runAttest(o) }),
	}
	f := c.Flags()
	f.StringVar(&o.manifest, "manifest", "", "the build's manifest.json")
	f.StringVar(&o.quoteFile, "quote", "", "file holding ctld's quote line or its JSON")
	f.StringVar(&o.nonce, "nonce", "", "the nonce the verifier gave ctld, hex (with --redfish: default a fresh random one)")
	f.StringVar(&o.path, "path", "usb", "boot path the machine booted: usb or spi")
	f.StringVar(&o.eventlog, "eventlog", "", "optional: the firmware's event log (binary_bios_measurements)")
	f.StringVar(&o.host, "redfish", "", "the unit's management address, host[:port]: fetch a fresh quote over its Redfish API")
	f.StringVar(&o.user, "user", provision.DefaultUser, "with --redfish: account name (an Administrator: DMTF's privilege registry gives the quote action ConfigureManager)")
	f.StringVar(&o.passwordFile, "password-file", "", "with --redfish: file holding the account's password (its first line)")
	f.StringVar(&o.fingerprint, "fingerprint", "", "with --redfish: the unit certificate's SHA-256 (sha256= of ctld's redfish line)")
	c.MarkFlagFilename("password-file")
	c.MarkFlagsMutuallyExclusive("redfish", "quote")
	return c
}

func (e *env) runAttest(o attestOptions) error {
	switch {
	case o.manifest == "":
		return usagef("--manifest is required")
	case o.host == "" && (o.quoteFile == "" || o.nonce == ""):
		return usagef("give --redfish (with --password-file and --fingerprint), or --quote and --nonce")
	case o.host != "" && (o.passwordFile == "" || o.fingerprint == ""):
		// Without the pin nothing says the attestation key's certificate
		// is the unit's: its issuer is the unit's self-signed TLS key.
		return usagef("--redfish needs --password-file and --fingerprint (the sha256= of ctld's redfish line)")
	}
	var nonce []byte
	if o.nonce != "" {
		var err error
		if nonce, err = hex.DecodeString(o.nonce); err != nil || len(nonce) == 0 {
			return usagef("--nonce %q: give the nonce as hex", o.nonce)
		}
	} else {
		nonce = make([]byte, 32)
		rand.Read(nonce)
	}
	b, err := os.ReadFile(o.manifest)
	if err != nil {
		return err
	}
	var m struct {
		Board        string                               `json:"board"`
		Measurements map[string]*contract.PathMeasurement `json:"measurements"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("%s: %w", o.manifest, err)
	}
	want, ok := m.Measurements[o.path]
	if !ok {
		var have []string
		for p := range m.Measurements {
			have = append(have, p)
		}
		sort.Strings(have)
		return fmt.Errorf("%s: no predicted measurements for path %q (it has %v): rebuild with this fwbuild, or pick --path", o.manifest, o.path, have)
	}
	var q contract.Quote
	var verr error
	if o.host != "" {
		pw, err := readPasswordFile(o.passwordFile)
		if err != nil {
			return err
		}
		cl, err := remote.New(remote.Options{Host: o.host, User: o.user, Password: pw, Fingerprint: o.fingerprint})
		if err != nil {
			return err
		}
		rq, err := cl.Quote(e.ctx, nonce)
		if err != nil {
			return err
		}
		q = rq.Quote
		verr = attest.VerifyCertified(q, rq.AKCertificate, rq.Server, nonce, want)
	} else {
		qb, err := os.ReadFile(o.quoteFile)
		if err != nil {
			return err
		}
		if q, err = contract.ParseQuote(string(qb)); err != nil {
			return fmt.Errorf("%s: %w", o.quoteFile, err)
		}
		verr = attest.Verify(q, nonce, want)
	}
	var mm *attest.Mismatch
	if verr != nil && !errors.As(verr, &mm) {
		return verr
	}
	if verr == nil && o.eventlog != "" {
		lb, err := os.ReadFile(o.eventlog)
		if err != nil {
			return err
		}
		log, err := contract.ParseEventLog(lb)
		if err != nil {
			return fmt.Errorf("%s: %w", o.eventlog, err)
		}
		verr = attest.ReplayLog(log, q, want)
	}
	if e.json {
		out := map[string]any{"board": m.Board, "path": o.path, "match": verr == nil, "nonce": hex.EncodeToString(nonce), "pcr_sha256": q.PCRs, "predicted": want.SHA256}
		if errors.As(verr, &mm) {
			out["problems"] = mm.Problems
		}
		if err := e.printJSON(out); err != nil {
			return err
		}
	} else if verr == nil {
		from := "quote " + o.quoteFile
		if o.host != "" {
			from = "Redfish " + o.host
		}
		fmt.Fprintf(e.stdout, "attest: match: %s %s path, PCR 4 %s, PCR 7 %s, nonce %x (%s)\n", m.Board, o.path, q.PCRs["4"], q.PCRs["7"], nonce, from)
	}
	return verr
}
