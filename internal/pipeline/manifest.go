package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime/debug"
	"sort"
)

// Manifest records every input and output of a build. It holds no
// timestamps or durations, so two builds of the same inputs give the same bytes.
type Manifest struct {
	Board           string              `json:"board"`
	Fwbuild         string              `json:"fwbuild"`
	SourceDateEpoch int64               `json:"source_date_epoch"`
	Components      []ManifestComponent `json:"components"`
	Kernel          string              `json:"dom0_kernel"`
	HostTools       map[string]string   `json:"host_tools"`
	Outputs         []Artefact          `json:"outputs"`
	Sizes           *SizeTable          `json:"sizes,omitempty"`
}

type ManifestComponent struct {
	Name    string            `json:"name"`
	Package string            `json:"package"`
	Version string            `json:"version"`
	SHA256  string            `json:"sha256"`
	Files   map[string]string `json:"files,omitempty"`
}

// Version is fwbuild's module version (or VCS revision) as built.
func Version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" {
			return s.Value
		}
	}
	return info.Main.Version
}

func (r *run) manifest(ctx context.Context, arts []Artefact) *Manifest {
	m := &Manifest{Board: r.Board.Name, Fwbuild: Version(), SourceDateEpoch: r.Epoch.Unix(), Sizes: r.result.Sizes, HostTools: r.hostTools(ctx)}
	for _, c := range r.Board.Components {
		m.Components = append(m.Components, ManifestComponent{c.Name, c.Package, c.Version, string(c.SHA256), c.Files})
	}
	kc := r.Board.Hypervisor.Dom0.Kernel
	switch {
	case kc.Source != "":
		m.Kernel = fmt.Sprintf("built from %s with %s + %s", kc.Source, kc.Base, kc.Fragment)
	case kc.Component != "":
		m.Kernel = "component " + kc.Component
	default:
		m.Kernel = "file " + kc.Path
	}
	m.Outputs = append(m.Outputs, arts...)
	sort.Slice(m.Outputs, func(i, j int) bool { return m.Outputs[i].Name < m.Outputs[j].Name })
	return m
}

// JSON is the manifest as written to manifest.json.
func (m *Manifest) JSON() []byte {
	b, _ := json.MarshalIndent(m, "", "  ")
	return append(b, '\n')
}

func writeSizeTable(p string, t SizeTable) error {
	b, err := json.Marshal(t)
	if err != nil {
		return err
	}
	return os.WriteFile(p, b, 0o644)
}

func readSizeTable(p string) (SizeTable, error) {
	var t SizeTable
	b, err := os.ReadFile(p)
	if err != nil {
		return t, fmt.Errorf("size table: %w", err)
	}
	return t, json.Unmarshal(b, &t)
}
