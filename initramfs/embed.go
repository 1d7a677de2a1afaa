package initramfs

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/fwbuild/fwbuild"
	"golang.org/x/tools/txtar"
)

// buildModule is the go.mod, go.sum and tools.go of the Go module the
// busybox and the guest init are built in: every u-root core command and
// every module ctld and guestinit import, with their checksums, so the
// build needs no checksum database. The sources themselves are fwbuild's
// own (fwbuild.ControlDomainSources), written next to these at build time.
// Regenerate after changing the u-root version or ctld's imports;
// TestEmbeddedModuleUpToDate says when.
//
//go:generate go run ./internal/gensrc -repo .. -out module.txtar
//go:embed module.txtar
var buildModule []byte

// writeModule writes the build module into dir: the generated module files
// and the control domain's sources.
func writeModule(dir string) error {
	ar := txtar.Parse(buildModule)
	if len(ar.Files) == 0 {
		return errors.New("embedded build module is empty (run go generate ./initramfs)")
	}
	files := map[string][]byte{}
	for _, f := range ar.Files {
		files[f.Name] = f.Data
	}
	for _, f := range fwbuild.ControlDomainSources() {
		files[f.Path] = f.Data
	}
	for name, data := range files {
		if strings.Contains(name, "..") || filepath.IsAbs(name) {
			return fmt.Errorf("build module: bad file name %q", name)
		}
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}
