package pipeline

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/fwbuild/fwbuild/internal/atomicfile"
)

// Artefact is one file of the build's output directory.
type Artefact struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	src    string // where the build left it (a stage's cache directory)
}

// outState remembers, per output file, the size, mtime and hash it had when
// fwbuild wrote it: a no-op rebuild then proves a file unchanged with a stat
// instead of hashing a 64 MiB disk image.
type outState map[string]struct {
	Size    int64     `json:"size"`
	ModTime time.Time `json:"mtime"`
	SHA256  string    `json:"sha256"`
}

const stateFile = ".fwbuild-state.json"

func readState(outDir string) outState {
	s := outState{}
	if b, err := os.ReadFile(filepath.Join(outDir, stateFile)); err == nil {
		json.Unmarshal(b, &s)
	}
	return s
}

func (s outState) unchanged(outDir string, a Artefact) bool {
	rec, ok := s[a.Name]
	if !ok || rec.SHA256 != a.SHA256 {
		return false
	}
	st, err := os.Stat(filepath.Join(outDir, a.Name))
	return err == nil && st.Size() == rec.Size && st.ModTime().Equal(rec.ModTime)
}

// publish places every artefact in outDir. Each file is written under a
// temporary name and renamed, and only after every stage succeeded, so a
// failed build leaves the previous outputs intact. Files that already hold
// the right bytes are not rewritten. It returns the names it wrote.
func publish(outDir string, arts []Artefact) ([]string, error) {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, fmt.Errorf("output: %w", err)
	}
	// Fail on a read-only or missing directory before touching anything.
	probe, err := os.CreateTemp(outDir, ".fwbuild-probe-*")
	if err != nil {
		return nil, fmt.Errorf("output: %s is not writable: %w", outDir, err)
	}
	probe.Close()
	os.Remove(probe.Name())

	state := readState(outDir)
	var written []string
	for _, a := range arts {
		if state.unchanged(outDir, a) {
			continue
		}
		dst := filepath.Join(outDir, a.Name)
		if sum, _, err := atomicfile.HashFile(dst); err == nil && sum == a.SHA256 {
			recordState(state, dst, a)
			continue
		}
		if err := copyAtomic(a.src, dst); err != nil {
			return written, fmt.Errorf("output: %s: %w", a.Name, err)
		}
		recordState(state, dst, a)
		written = append(written, a.Name)
	}
	for name := range state {
		if !hasArtefact(arts, name) {
			delete(state, name)
		}
	}
	b, _ := json.MarshalIndent(state, "", "  ")
	if old, err := os.ReadFile(filepath.Join(outDir, stateFile)); err == nil && bytes.Equal(old, b) {
		return written, nil // a no-op rebuild touches nothing, not even this file
	}
	if err := atomicfile.WriteFile(filepath.Join(outDir, stateFile), b, 0o644); err != nil {
		return written, fmt.Errorf("output: %w", err)
	}
	return written, nil
}

func hasArtefact(arts []Artefact, name string) bool {
	for _, a := range arts {
		if a.Name == name {
			return true
		}
	}
	return false
}

func recordState(s outState, dst string, a Artefact) {
	if st, err := os.Stat(dst); err == nil {
		s[a.Name] = struct {
			Size    int64     `json:"size"`
			ModTime time.Time `json:"mtime"`
			SHA256  string    `json:"sha256"`
		}{st.Size(), st.ModTime(), a.SHA256}
	}
}

func copyAtomic(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return atomicfile.Write(dst, 0o644, func(f *os.File) error {
		_, err := io.Copy(f, in)
		return err
	})
}

// sha256sums renders the SHA256SUMS file in sha256sum's format.
func sha256sums(arts []Artefact) string {
	sorted := append([]Artefact(nil), arts...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	var b strings.Builder
	for _, a := range sorted {
		fmt.Fprintf(&b, "%s  %s\n", a.SHA256, a.Name)
	}
	return b.String()
}
