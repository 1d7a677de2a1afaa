package pipeline

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	cdx "github.com/CycloneDX/cyclonedx-go"
	"github.com/xeipuuv/gojsonschema"

	"github.com/fwbuild/fwbuild/initramfs"
	"github.com/fwbuild/fwbuild/internal/atomicfile"
	"github.com/fwbuild/fwbuild/internal/testdeps"
)

// The SBOM parses with CycloneDX's own Go library (which did not write it)
// and lists every Debian package of the profile with its version, .deb
// SHA-256 and licences where the package states them, every Go module of
// the control domain with its go.sum hash, the kernel config, the base
// firmware and every output with the SHA-256 of the file on disk; a second
// build into another directory writes the same bytes.
func TestSBOM(t *testing.T) {
	outA, outB := t.TempDir(), t.TempDir()
	for _, out := range []string{outA, outB} {
		if _, err := Build(context.Background(), q35Options(t, out)); err != nil {
			t.Fatal(err)
		}
	}
	a, err := os.ReadFile(filepath.Join(outA, SBOMFile))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(outB, SBOMFile)); !bytes.Equal(a, b) {
		t.Errorf("%s differs between two builds", SBOMFile)
	}
	for _, e := range validateCycloneDX(t, a) {
		t.Errorf("CycloneDX 1.5 schema: %s", e)
	}
	// The schema check can fail: a hash algorithm the schema does not know.
	if errs := validateCycloneDX(t, bytes.Replace(a, []byte(`"alg": "SHA-256"`), []byte(`"alg": "SHA256"`), 1)); len(errs) == 0 {
		t.Error("the schema accepted an unknown hash algorithm")
	}
	var bom cdx.BOM
	if err := cdx.NewBOMDecoder(bytes.NewReader(a), cdx.BOMFileFormatJSON).Decode(&bom); err != nil {
		t.Fatalf("cyclonedx-go cannot parse %s: %v", SBOMFile, err)
	}
	if bom.BOMFormat != "CycloneDX" || bom.SpecVersion != cdx.SpecVersion1_5 || !strings.HasPrefix(bom.SerialNumber, "urn:uuid:") || bom.Metadata == nil || bom.Metadata.Timestamp != "2024-01-01T00:00:00Z" {
		t.Fatalf("header: format %q spec %v serial %q metadata %+v", bom.BOMFormat, bom.SpecVersion, bom.SerialNumber, bom.Metadata)
	}
	byRef := map[string]cdx.Component{}
	refs := map[string]bool{}
	for _, c := range *bom.Components {
		if refs[c.BOMRef] {
			t.Errorf("bom-ref %s twice", c.BOMRef)
		}
		refs[c.BOMRef] = true
		byRef[c.BOMRef] = c
	}
	sha := func(c cdx.Component) string {
		if c.Hashes == nil || len(*c.Hashes) != 1 || (*c.Hashes)[0].Algorithm != cdx.HashAlgoSHA256 {
			return ""
		}
		return (*c.Hashes)[0].Value
	}
	licensed := 0
	for _, c := range testdeps.Board(t, "qemu-q35").Components {
		got, ok := byRef["deb:"+c.Name]
		if !ok || got.Name != c.Package || got.Version != c.Version || sha(got) != string(c.SHA256) || !strings.HasPrefix(got.PackageURL, "pkg:deb/debian/"+c.Package+"@") {
			t.Errorf("package %s: %+v", c.Name, got)
		}
		if got.Licenses != nil && len(*got.Licenses) > 0 {
			licensed++
		}
	}
	// A package whose copyright file is machine-readable (DEP-5) has its
	// licences listed (xen's is); one whose file is free text has none.
	comps, err := Fetch(context.Background(), testdeps.Board(t, "qemu-q35"), testdeps.CacheDir(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range testdeps.Board(t, "qemu-q35").Components {
		cr, _ := os.ReadFile(filepath.Join(comps[c.Name].Root, "usr/share/doc", c.Package, "copyright"))
		dep5 := bytes.HasPrefix(cr, []byte("Format:"))
		l := byRef["deb:"+c.Name].Licenses
		if has := l != nil && len(*l) > 0; has != dep5 {
			t.Errorf("package %s: licences %v, machine-readable copyright %v", c.Name, l, dep5)
		}
	}
	var xenLicences []string
	if l := byRef["deb:xen"].Licenses; l != nil {
		for _, c := range *l {
			if c.License != nil {
				xenLicences = append(xenLicences, c.License.Name)
			}
		}
	}
	if !strings.Contains(strings.Join(xenLicences, " "), "GPL-2") {
		t.Errorf("xen's licences %q: want GPL-2 among them", xenLicences)
	}
	mods, err := initramfs.BuildModules()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mods {
		got, ok := byRef["go:"+m.Path]
		if !ok || got.Version != m.Version || got.Properties == nil || (*got.Properties)[0].Value != m.Sum {
			t.Errorf("Go module %s: %+v", m.Path, got)
		}
	}
	if _, ok := byRef["go:github.com/u-root/u-root"]; !ok {
		t.Error("u-root is not listed")
	}
	if sha(byRef["file:dom0-kernel-config"]) == "" || sha(byRef["firmware:base"]) == "" {
		t.Errorf("kernel config %+v, base firmware %+v", byRef["file:dom0-kernel-config"], byRef["firmware:base"])
	}
	entries, _ := os.ReadDir(outA)
	outputs := 0
	for _, e := range entries {
		switch e.Name() {
		case SBOMFile, "manifest.json", "SHA256SUMS", ".fwbuild-published":
			continue
		}
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		outputs++
		sum, _, _ := atomicfile.HashFile(filepath.Join(outA, e.Name()))
		if got := sha(byRef["output:"+e.Name()]); got != sum {
			t.Errorf("output %s: SBOM says %q, the file's SHA-256 is %s", e.Name(), got, sum)
		}
	}
	t.Logf("%d components: %d packages (%d with licences), %d Go modules, %d outputs", len(*bom.Components), len(testdeps.Board(t, "qemu-q35").Components), licensed, len(mods), outputs)
}

// validateCycloneDX checks the document against CycloneDX's own JSON schema
// for 1.5, as shipped in the cyclonedx-go module (its tests validate with it).
func validateCycloneDX(t *testing.T, doc []byte) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/CycloneDX/cyclonedx-go").Output()
	if err != nil {
		t.Fatalf("locate the cyclonedx-go module: %v", err)
	}
	src := filepath.Join(strings.TrimSpace(string(out)), "schema")
	read := func(name string) gojsonschema.JSONLoader {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		return gojsonschema.NewBytesLoader(b)
	}
	// bom-1.5 refers to these by URL (relative to its $id); the machine is
	// offline, so they are registered from the module's copies (it ships
	// the JSF schema as .schemax.json).
	sl := gojsonschema.NewSchemaLoader()
	for url, name := range map[string]string{
		"http://cyclonedx.org/schema/spdx.schema.json":     "spdx.schema.json",
		"http://cyclonedx.org/schema/jsf-0.82.schema.json": "jsf-0.82.schemax.json",
	} {
		if err := sl.AddSchema(url, read(name)); err != nil {
			t.Fatalf("schema %s: %v", name, err)
		}
	}
	schema, err := sl.Compile(read("bom-1.5.schema.json"))
	if err != nil {
		t.Fatalf("compile the CycloneDX 1.5 schema: %v", err)
	}
	res, err := schema.Validate(gojsonschema.NewBytesLoader(doc))
	if err != nil {
		t.Fatalf("schema validation: %v", err)
	}
	var errs []string
	for _, e := range res.Errors() {
		errs = append(errs, e.String())
	}
	return errs
}
