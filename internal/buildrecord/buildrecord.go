// Package buildrecord is the format of what a build records next to its
// artefacts: the outputs list of manifest.json and SHA256SUMS. The pipeline
// writes them; the flasher reads them to refuse an image that is not the
// one the build made. Both use this package, so the two cannot drift.
package buildrecord

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// File names of the records in an output directory.
const (
	ManifestFile = "manifest.json"
	SumsFile     = "SHA256SUMS"
)

// Output is one artefact as the records list it.
type Output struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"` // lower-case hex
}

// ManifestOutputs reads the board and the outputs from manifest.json's
// bytes; the rest of the manifest is the pipeline's.
func ManifestOutputs(data []byte) (board string, outputs []Output, err error) {
	var m struct {
		Board   string   `json:"board"`
		Outputs []Output `json:"outputs"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return "", nil, fmt.Errorf("not a build manifest: %w", err)
	}
	return m.Board, m.Outputs, nil
}

// SHA256SUMS renders outputs as sha256sum(1) does, sorted by name, so that
// `sha256sum -c SHA256SUMS` checks the directory.
func SHA256SUMS(outputs []Output) []byte {
	sorted := append([]Output(nil), outputs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	var b bytes.Buffer
	for _, o := range sorted {
		fmt.Fprintf(&b, "%s  %s\n", o.SHA256, o.Name)
	}
	return b.Bytes()
}

// ParseSHA256SUMS reads sha256sum(1)'s format: "<hex>  <name>" (text mode)
// or "<hex> *<name>" (binary mode); lines it cannot read are skipped, as
// sha256sum -c warns and goes on.
func ParseSHA256SUMS(data []byte) []Output {
	var out []Output
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		sum, file, ok := strings.Cut(sc.Text(), " ")
		if !ok || len(sum) != 64 {
			continue
		}
		out = append(out, Output{Name: strings.TrimPrefix(strings.TrimPrefix(file, " "), "*"), SHA256: strings.ToLower(sum), Size: -1})
	}
	return out
}
