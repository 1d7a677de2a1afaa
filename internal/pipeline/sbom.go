package pipeline

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/fwbuild/fwbuild/initramfs"
	"github.com/fwbuild/fwbuild/internal/provenance"
)

// SBOMFile is the build's software bill of materials (CycloneDX 1.5 JSON),
// published next to manifest.json.
const SBOMFile = "sbom.cdx.json"

// The document is written with our own small types (the standard library's
// JSON encoder gives fixed field order and no timestamps but the build's
// epoch): reproducible bytes, and the test parses it with CycloneDX's own Go
// library, which had no part in writing it.
type cdxBOM struct {
	BOMFormat    string         `json:"bomFormat"`
	SpecVersion  string         `json:"specVersion"`
	SerialNumber string         `json:"serialNumber"`
	Version      int            `json:"version"`
	Metadata     cdxMetadata    `json:"metadata"`
	Components   []cdxComponent `json:"components"`
}

type cdxMetadata struct {
	Timestamp string        `json:"timestamp"`
	Tools     cdxTools      `json:"tools"`
	Component cdxComponent  `json:"component"`
	Props     []cdxProperty `json:"properties,omitempty"`
}

type cdxTools struct {
	Components []cdxComponent `json:"components"`
}

type cdxComponent struct {
	BOMRef      string        `json:"bom-ref,omitempty"`
	Type        string        `json:"type"`
	Group       string        `json:"group,omitempty"`
	Name        string        `json:"name"`
	Version     string        `json:"version,omitempty"`
	Description string        `json:"description,omitempty"`
	Hashes      []cdxHash     `json:"hashes,omitempty"`
	Licenses    []cdxLicense  `json:"licenses,omitempty"`
	PURL        string        `json:"purl,omitempty"`
	Props       []cdxProperty `json:"properties,omitempty"`
}

type cdxHash struct {
	Alg     string `json:"alg"`
	Content string `json:"content"`
}

type cdxLicense struct {
	License struct {
		Name string `json:"name"`
	} `json:"license"`
}

type cdxProperty struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

func sha256Hash(hexSum string) []cdxHash { return []cdxHash{{Alg: "SHA-256", Content: hexSum}} }

// sbom lists what went into the build and what came out: every Debian
// package of the profile (name, version, .deb SHA-256, the licences its
// copyright file states), every Go module of the control domain's build
// module (version and go.sum hash), the dom0 kernel's config, the SPI base
// firmware, and each output with its SHA-256. It carries the build's epoch
// as its timestamp and a serial number derived from its content, so two
// builds of the same inputs give the same bytes.
func (r *run) sbom(arts []Artefact) ([]byte, error) {
	b := r.Board
	bom := cdxBOM{BOMFormat: "CycloneDX", SpecVersion: "1.5", Version: 1}
	bom.Metadata.Timestamp = r.Epoch.UTC().Format("2006-01-02T15:04:05Z")
	// The same provenance as manifest.json's: which fwbuild made the build.
	fw := provenance.Current()
	bom.Metadata.Tools.Components = []cdxComponent{{Type: "application", Name: "fwbuild", Version: fw.Version, Props: []cdxProperty{
		{Name: "fwbuild:revision", Value: fw.Revision}, {Name: "fwbuild:dirty", Value: strconv.FormatBool(fw.Dirty)}, {Name: "fwbuild:go", Value: fw.GoVersion},
	}}}
	bom.Metadata.Component = cdxComponent{BOMRef: "board:" + b.Name, Type: "firmware", Name: b.Name, Description: b.Description}
	var comps []cdxComponent
	for _, c := range b.Components {
		cc := cdxComponent{
			BOMRef: "deb:" + c.Name, Type: "library", Name: c.Package, Version: c.Version,
			Hashes: sha256Hash(string(c.SHA256)),
			PURL:   fmt.Sprintf("pkg:deb/debian/%s@%s", c.Package, purlEscape(c.Version)),
			Props:  []cdxProperty{{Name: "fwbuild:component", Value: c.Name}},
		}
		if f, ok := r.comps[c.Name]; ok {
			for _, l := range debLicenses(f.Root, c.Package) {
				var lic cdxLicense
				lic.License.Name = l
				cc.Licenses = append(cc.Licenses, lic)
			}
		}
		comps = append(comps, cc)
	}
	mods, err := initramfs.BuildModules()
	if err != nil {
		return nil, fmt.Errorf("sbom: %w", err)
	}
	for _, m := range mods {
		comps = append(comps, cdxComponent{
			BOMRef: "go:" + m.Path, Type: "library", Name: m.Path, Version: m.Version,
			PURL:  fmt.Sprintf("pkg:golang/%s@%s", m.Path, purlEscape(m.Version)),
			Props: []cdxProperty{{Name: "fwbuild:go-sum", Value: m.Sum}, {Name: "fwbuild:built-into", Value: "control domain"}},
		})
	}
	if r.kernelConfig != "" {
		data, err := os.ReadFile(r.kernelConfig)
		if err != nil {
			return nil, fmt.Errorf("sbom: dom0 kernel config: %w", err)
		}
		sum := sha256.Sum256(data)
		comps = append(comps, cdxComponent{BOMRef: "file:dom0-kernel-config", Type: "file", Name: "dom0 kernel .config",
			Description: "the configuration the dom0 kernel was built with", Hashes: sha256Hash(hex.EncodeToString(sum[:]))})
	}
	if s := b.Outputs.SPI; s != nil {
		fw := cdxComponent{BOMRef: "firmware:base", Type: "firmware", Name: "base firmware " + s.Firmware.String(),
			Description: "the board's UEFI firmware the launcher is inserted into"}
		if s.Firmware.IsFile() {
			fw.Hashes = sha256Hash(string(s.Firmware.SHA256))
		} else {
			comp, role, _ := strings.Cut(s.Firmware.Ref, ":")
			data, err := r.comps.Read(comp, role, b)
			if err != nil {
				return nil, fmt.Errorf("sbom: base firmware: %w", err)
			}
			sum := sha256.Sum256(data)
			fw.Hashes = sha256Hash(hex.EncodeToString(sum[:]))
		}
		comps = append(comps, fw)
	}
	for _, a := range arts {
		comps = append(comps, cdxComponent{BOMRef: "output:" + a.Name, Type: "file", Name: a.Name, Hashes: sha256Hash(a.SHA256),
			Props: []cdxProperty{{Name: "fwbuild:output-size", Value: fmt.Sprint(a.Size)}}})
	}
	bom.Components = comps
	body, err := json.Marshal(bom)
	if err != nil {
		return nil, fmt.Errorf("sbom: %w", err)
	}
	bom.SerialNumber = "urn:uuid:" + uuid.NewSHA1(uuid.NameSpaceOID, body).String()
	out, err := json.MarshalIndent(bom, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("sbom: %w", err)
	}
	return append(out, '\n'), nil
}

// purlEscape percent-encodes what a package URL's version may not hold as is
// (Debian's epoch colon and '+', Go's '+incompatible').
func purlEscape(v string) string {
	return strings.NewReplacer("%", "%25", ":", "%3A", "+", "%2B", " ", "%20").Replace(v)
}

// debLicenses are the licence short names a package's machine-readable
// copyright file (DEP-5, usr/share/doc/<pkg>/copyright) states, sorted and
// unique; none when the file is missing, not a regular file inside the
// package (many libraries link their doc directory to another package's),
// or not machine-readable. Only the package's own tree is read.
func debLicenses(root, pkg string) []string {
	p := filepath.Join(root, "usr", "share", "doc", pkg, "copyright")
	for dir := filepath.Dir(p); dir != root && len(dir) > len(root); dir = filepath.Dir(dir) {
		if st, err := os.Lstat(dir); err != nil || !st.IsDir() {
			return nil
		}
	}
	st, err := os.Lstat(p)
	if err != nil || !st.Mode().IsRegular() {
		return nil
	}
	f, err := os.Open(p)
	if err != nil {
		return nil
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 4<<20))
	if err != nil || !bytes.HasPrefix(bytes.TrimSpace(data), []byte("Format:")) {
		return nil
	}
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "License:")
		if !ok {
			continue
		}
		if v = strings.TrimSpace(v); v != "" {
			seen[v] = true
		}
	}
	var out []string
	for l := range seen {
		out = append(out, l)
	}
	sort.Strings(out)
	return out
}
