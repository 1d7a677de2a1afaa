package fwbuild

import (
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// Every non-test Go file under the artefact-shaping trees must be in the ID,
// so a package added without updating srcid.go fails here. pesynth and
// q35test are test helpers.
func TestSourceIDCoversPackages(t *testing.T) {
	testOnly := map[string]bool{"hvcore/pe/pesynth": true, "initramfs/internal/q35test": true}
	for _, top := range []string{"boardcfg", "cmd/ctld", "hvcore", "image", "initramfs", "internal/pipeline", "internal/debpkg"} {
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
