package boottest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"

	"github.com/google/go-tpm/legacy/tpm2"

	"github.com/fwbuild/fwbuild/attest"
	"github.com/fwbuild/fwbuild/contract"
	qemutests "github.com/fwbuild/fwbuild/qemu-tests"
)

// Measured boot in every boot Run makes: the machine gets a TPM (swtpm),
// ctld's measured line must follow its ready line, and once the operator
// commands have run, `ctld quote <nonce>` is typed with a fresh nonce. After
// the boot the measured PCRs must be the build's prediction for the path
// (manifest.json), the quote must verify against it and the nonce (package
// attest), and the PCRs read from swtpm on the host must be the quoted ones.

// QuotePattern matches ctld's quote line (its JSON ends with PCR 7's value).
var QuotePattern = regexp.QuoteMeta(contract.QuotePrefix) + `\{"nonce":.*"pcr_sha256":\{.*"7":"[0-9a-f]{64}"\}\}`

// tpmMarkers adds the measured marker after the ready line and the quote at the end.
func tpmMarkers(markers []qemutests.Marker, nonce []byte) []qemutests.Marker {
	var out []qemutests.Marker
	for _, mk := range markers {
		out = append(out, mk)
		if mk.Name == "ctld-ready" {
			out = append(out, qemutests.Regexp("ctld-measured", contract.MeasuredPattern, qemutests.TimeoutReady))
		}
	}
	out[len(out)-1].Then += "ctld quote " + hex.EncodeToString(nonce) + "\n"
	return append(out, qemutests.Regexp("ctld-quote", QuotePattern, qemutests.TimeoutReady))
}

// withTPM starts swtpm for a boot (its state in a temporary directory,
// removed by done) and adds it to the machine.
func withTPM(ctx context.Context, m *qemutests.Machine, markers []qemutests.Marker) (tpm *qemutests.TPM, _ []qemutests.Marker, nonce []byte, done func(), err error) {
	// A short path: the control socket's name must fit sockaddr_un.
	dir, err := os.MkdirTemp("", "fwbuild-tpm-")
	if err != nil {
		return nil, nil, nil, nil, err
	}
	if tpm, err = qemutests.StartTPM(ctx, dir); err != nil {
		os.RemoveAll(dir)
		return nil, nil, nil, nil, fmt.Errorf("boottest: %w", err)
	}
	done = func() { tpm.Stop(); os.RemoveAll(dir) }
	m.Args = append(m.Args, tpm.Args()...)
	nonce = make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		done()
		return nil, nil, nil, nil, err
	}
	return tpm, tpmMarkers(markers, nonce), nonce, done, nil
}

// Prediction reads a build's predicted measurements for a path from its manifest.json.
func Prediction(outDir, path string) (*contract.PathMeasurement, error) {
	b, err := os.ReadFile(filepath.Join(outDir, "manifest.json"))
	if err != nil {
		return nil, err
	}
	var m struct {
		Measurements map[string]*contract.PathMeasurement `json:"measurements"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("manifest.json: %w", err)
	}
	p, ok := m.Measurements[path]
	if !ok {
		return nil, fmt.Errorf("manifest.json in %s predicts no PCRs for the %s path", outDir, path)
	}
	return p, nil
}

// CheckMeasured holds a measured line against the prediction.
func CheckMeasured(line string, want *contract.PathMeasurement) (contract.Measured, error) {
	got, err := contract.ParseMeasured(line)
	if err != nil {
		return got, err
	}
	if got.PCR4 != want.SHA256["4"] || got.PCR7 != want.SHA256["7"] {
		return got, fmt.Errorf("ctld measured pcr4=%s pcr7=%s, the build predicts pcr4=%s pcr7=%s (%s)", got.PCR4, got.PCR7, want.SHA256["4"], want.SHA256["7"], want.Platform)
	}
	return got, nil
}

// checkTPM runs the checks above on a finished boot.
func checkTPM(s Spec, tpm *qemutests.TPM, nonce []byte, matches []qemutests.Match, rep *Report) error {
	want, err := Prediction(s.OutDir, s.Path)
	if err != nil {
		return err
	}
	for _, mt := range matches {
		switch mt.Marker.Name {
		case "ctld-measured":
			if rep.Measured, err = CheckMeasured(mt.Line, want); err != nil {
				// Name the premise that broke, when it is the boot order.
				if log, rerr := os.ReadFile(rep.LogPath); rerr == nil {
					if n := bytes.Count(log, []byte("BdsDxe: failed to load Boot")); n != want.FailedBootOptions {
						err = fmt.Errorf("%w; the firmware failed to load %d boot option(s) before the payload, the prediction assumes %d", err, n, want.FailedBootOptions)
					}
				}
				return err
			}
		case "ctld-quote":
			q, err := contract.ParseQuote(mt.Line)
			if err != nil {
				return err
			}
			rep.Quote = &q
			if err := attest.Verify(q, nonce, want); err != nil {
				return err
			}
		}
	}
	if rep.Quote == nil {
		return fmt.Errorf("no quote line")
	}
	host, err := tpm.PCRs(tpm2.AlgSHA256)
	if err != nil {
		return err
	}
	for _, i := range contract.QuotePCRs {
		if h := hex.EncodeToString(host[i]); h != rep.Quote.PCRs[fmt.Sprint(i)] {
			return fmt.Errorf("PCR %d: swtpm holds %s, the quote lists %s", i, h, rep.Quote.PCRs[fmt.Sprint(i)])
		}
	}
	if !bytes.Equal([]byte(rep.Quote.Nonce), []byte(hex.EncodeToString(nonce))) {
		return fmt.Errorf("the quote line names nonce %s, ctld was given %x", rep.Quote.Nonce, nonce)
	}
	return nil
}
