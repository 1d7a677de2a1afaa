package fwbuild

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
)

// Every non-test Go file under the artefact-shaping trees must be in the ID,
// so a package added without updating srcid.go fails here. pesynth and
// q35test are test helpers.
func TestSourceIDCoversPackages(t *testing.T) {
	testOnly := map[string]bool{"hvcore/pe/pesynth": true, "initramfs/internal/q35test": true}
	for _, top := range []string{"boardcfg", "cmd/ctld", "cmd/guestinit", "contract", "hvcore", "image", "initramfs", "internal/pipeline", "internal/debpkg", "internal/buildrecord", "internal/boundedfile", "release", "secboot", "measure"} {
		filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && (d.Name() == "testdata" || testOnly[p]) {
				return filepath.SkipDir
			}
			if !d.IsDir() && strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
				if _, err := fs.Stat(sources, p); err != nil {
					t.Errorf("%s is not covered by SourceID: add its directory to srcid.go", p)
				}
			}
			return nil
		})
	}
	if id := SourceID(); id != SourceID() || len(id) != 64 {
		t.Error("SourceID is not a stable SHA-256")
	}
}

// The control domain is built from the real sources: what is embedded is
// what is on disk, every file of its packages, tests excluded.
func TestControlDomainSourcesAreTheRealOnes(t *testing.T) {
	embedded := map[string][]byte{}
	for _, f := range ControlDomainSources() {
		embedded[f.Path] = f.Data
	}
	for _, dir := range controlDomainDirs {
		names, err := filepath.Glob(dir + "/*.go")
		if err != nil || len(names) == 0 {
			t.Fatalf("%s: %v", dir, err)
		}
		for _, n := range names {
			if strings.HasSuffix(n, "_test.go") {
				if _, ok := embedded[n]; ok {
					t.Errorf("%s: a test file is built into the control domain", n)
				}
				continue
			}
			disk, err := os.ReadFile(n)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(embedded[n], disk) {
				t.Errorf("%s: embedded copy differs from the file", n)
			}
			delete(embedded, n)
		}
	}
	for n := range embedded {
		t.Errorf("%s is embedded but not on disk", n)
	}
}

// Editing any of ctld's, guestinit's or the contract's sources changes
// SourceID, which keys the initramfs stage (and every stage after it): the
// control domain is rebuilt without a regeneration step.
func TestControlDomainEditChangesSourceID(t *testing.T) {
	base := fstest.MapFS{}
	for _, p := range nonTestFiles(sources) {
		data, _ := sources.ReadFile(p)
		base[p] = &fstest.MapFile{Data: data}
	}
	if sourceID(base) != SourceID() {
		t.Fatal("sourceID of a copy differs from SourceID")
	}
	for _, f := range ControlDomainSources() {
		edited := fstest.MapFS{}
		for p, mf := range base {
			edited[p] = mf
		}
		edited[f.Path] = &fstest.MapFile{Data: append(bytes.Clone(f.Data), "\n// edited\n"...)}
		if sourceID(edited) == SourceID() {
			t.Errorf("editing %s leaves SourceID unchanged", f.Path)
		}
	}
}
