package main

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"

	"github.com/spf13/cobra"

	"github.com/fwbuild/fwbuild/attest"
	"github.com/fwbuild/fwbuild/contract"
)

func (e *env) attestCommand() *cobra.Command {
	var manifest, quoteFile, nonce, path, eventlog string
	c := &cobra.Command{
		Use:   "attest --manifest out/B/manifest.json --quote FILE --nonce HEX [--path usb|spi] [--eventlog FILE]",
		Short: "verify a control domain's TPM quote against a build's predicted PCRs",
		Long: "attest checks a quote from `ctld quote <nonce-hex>` (the line, or its JSON): the attestation key's\n" +
			"signature, that it is over --nonce (a replayed quote is not), that the listed PCR values are the quoted\n" +
			"ones, and that PCRs 4 and 7 are the manifest's prediction for the boot path. With --eventlog (the\n" +
			"firmware's binary_bios_measurements) the log must replay to the quoted PCRs and match the predicted\n" +
			"events. Exit 0 when everything matches, 1 with each difference named.",
		Example: "  fwbuild attest --manifest out/qemu-q35/manifest.json --quote quote.txt --nonce 0011aabb --path spi",
		Args:    noArgs,
		RunE: runE(func(*cobra.Command, []string) error {
			return e.runAttest(manifest, quoteFile, nonce, path, eventlog)
		}),
	}
	c.Flags().StringVar(&manifest, "manifest", "", "the build's manifest.json")
	c.Flags().StringVar(&quoteFile, "quote", "", "file holding ctld's quote line or its JSON")
	c.Flags().StringVar(&nonce, "nonce", "", "the nonce the verifier gave ctld, hex")
	c.Flags().StringVar(&path, "path", "usb", "boot path the machine booted: usb or spi")
	c.Flags().StringVar(&eventlog, "eventlog", "", "optional: the firmware's event log (binary_bios_measurements)")
	return c
}

func (e *env) runAttest(manifestFile, quoteFile, nonceHex, path, eventlog string) error {
	if manifestFile == "" || quoteFile == "" || nonceHex == "" {
		return usagef("--manifest, --quote and --nonce are required")
	}
	nonce, err := hex.DecodeString(nonceHex)
	if err != nil || len(nonce) == 0 {
		return usagef("--nonce %q: give the nonce as hex", nonceHex)
	}
	b, err := os.ReadFile(manifestFile)
	if err != nil {
		return err
	}
	var m struct {
		Board        string                               `json:"board"`
		Measurements map[string]*contract.PathMeasurement `json:"measurements"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("%s: %w", manifestFile, err)
	}
	want, ok := m.Measurements[path]
	if !ok {
		var have []string
		for p := range m.Measurements {
			have = append(have, p)
		}
		sort.Strings(have)
		return fmt.Errorf("%s: no predicted measurements for path %q (it has %v): rebuild with this fwbuild, or pick --path", manifestFile, path, have)
	}
	qb, err := os.ReadFile(quoteFile)
	if err != nil {
		return err
	}
	q, err := contract.ParseQuote(string(qb))
	if err != nil {
		return fmt.Errorf("%s: %w", quoteFile, err)
	}
	verr := attest.Verify(q, nonce, want)
	var mm *attest.Mismatch
	if verr != nil && !errors.As(verr, &mm) {
		return verr
	}
	if verr == nil && eventlog != "" {
		lb, err := os.ReadFile(eventlog)
		if err != nil {
			return err
		}
		log, err := contract.ParseEventLog(lb)
		if err != nil {
			return fmt.Errorf("%s: %w", eventlog, err)
		}
		verr = attest.ReplayLog(log, q, want)
	}
	if e.json {
		out := map[string]any{"board": m.Board, "path": path, "match": verr == nil, "pcr_sha256": q.PCRs, "predicted": want.SHA256}
		if errors.As(verr, &mm) {
			out["problems"] = mm.Problems
		}
		if err := e.printJSON(out); err != nil {
			return err
		}
	} else if verr == nil {
		fmt.Fprintf(e.stdout, "attest: match: %s %s path, PCR 4 %s, PCR 7 %s, nonce %s\n", m.Board, path, q.PCRs["4"], q.PCRs["7"], nonceHex)
	}
	return verr
}
