package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"sort"

	"github.com/fwbuild/fwbuild/contract"
	"github.com/fwbuild/fwbuild/internal/provenance"
	"github.com/fwbuild/fwbuild/launcher"
)

// Manifest records every input and output of a build. It holds no
// timestamps or durations, so two builds of the same inputs give the same bytes.
type Manifest struct {
	Board string `json:"board"`
	// Version is what both payloads carry (fwbuild.version=): the profile's
	// release version and the build's content hash.
	Version string `json:"version,omitempty"`
	// Fwbuild is the fwbuild that made the build (version, VCS revision, dirty flag, Go).
	Fwbuild         provenance.Info     `json:"fwbuild"`
	SourceDateEpoch int64               `json:"source_date_epoch"`
	Components      []ManifestComponent `json:"components"`
	Kernel          string              `json:"dom0_kernel"`
	// Firmware is the SPI base firmware when the profile gives it as a file
	// (a vendor's image): its path as the profile names it and its SHA-256.
	Firmware *ManifestFile `json:"firmware,omitempty"`
	// Launcher is the launcher DXE driver's build inputs, when it is used.
	Launcher  *ManifestLauncher `json:"launcher,omitempty"`
	HostTools map[string]string `json:"host_tools"`
	// Signer is the owner's db certificate the payloads are signed with
	// (build --keys), and whether a variable store was enrolled.
	Signer *ManifestSigner `json:"signer,omitempty"`
	// Authenticode is each payload's Authenticode SHA-256 (peDigests).
	Authenticode map[string]string `json:"authenticode_sha256,omitempty"`
	// Measurements are the predicted PCRs 4 and 7 of each boot path
	// ("usb", "spi"), with the events that make them (package measure).
	Measurements map[string]*contract.PathMeasurement `json:"measurements,omitempty"`
	Outputs      []Artefact                           `json:"outputs"`
	Sizes        *SizeTable                           `json:"sizes,omitempty"`
}

// ManifestFile is an input file named by a profile.
type ManifestFile struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
}

// ManifestLauncher records what the launcher was built from: the component
// (gnu-efi), the SHA-256 of its embedded C sources, the host compilers.
type ManifestLauncher struct {
	Component string            `json:"component"`
	Sources   map[string]string `json:"sources_sha256"`
	Tools     map[string]string `json:"tools"`
}

// ManifestSigner identifies the key set a build was signed with.
type ManifestSigner struct {
	Subject    string `json:"db_subject"`
	CertSHA256 string `json:"db_cert_sha256"`
	Enrolled   bool   `json:"variables_enrolled"`
}

type ManifestComponent struct {
	Name    string            `json:"name"`
	Package string            `json:"package"`
	Version string            `json:"version"`
	SHA256  string            `json:"sha256"`
	Files   map[string]string `json:"files,omitempty"`
}

func (r *run) manifest(ctx context.Context, arts []Artefact) *Manifest {
	m := &Manifest{Board: r.Board.Name, Fwbuild: provenance.Current(), SourceDateEpoch: r.Epoch.Unix(), Sizes: r.result.Sizes, HostTools: r.hostTools(ctx)}
	for _, c := range r.Board.Components {
		m.Components = append(m.Components, ManifestComponent{c.Name, c.Package, c.Version, string(c.SHA256), c.Files})
	}
	if s := r.Board.Outputs.SPI; s != nil {
		if s.Firmware.IsFile() {
			m.Firmware = &ManifestFile{Path: s.Firmware.Path, SHA256: string(s.Firmware.SHA256)}
		}
		if s.Payload != "" {
			l := &ManifestLauncher{Component: s.LauncherComponent(), Sources: map[string]string{},
				Tools: toolVersions(ctx, "gcc", "ld", "objcopy")}
			for name, b := range launcher.Sources() {
				sum := sha256.Sum256(b)
				l.Sources[name] = hex.EncodeToString(sum[:])
			}
			m.Launcher = l
		}
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
	m.Version = r.result.Version
	if o := r.owner; o != nil {
		sum := sha256.Sum256(o.DB.Raw)
		m.Signer = &ManifestSigner{Subject: o.DB.Subject.String(), CertSHA256: hex.EncodeToString(sum[:]), Enrolled: r.Board.Outputs.SecureBoot != nil}
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
