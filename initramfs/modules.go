package initramfs

import (
	"bufio"
	"bytes"
	"fmt"
	"sort"
	"strings"

	"golang.org/x/mod/modfile"
	"golang.org/x/tools/txtar"
)

// Module is a Go module the control domain is built with: its path, version
// and go.sum hash (h1:, of the module's file tree).
type Module struct {
	Path, Version, Sum string
}

// BuildModules lists the modules the embedded build module requires (the
// u-root commands' and ctld's, as `go mod tidy` keeps them: every module
// providing a package the build can compile), each with its go.sum hash,
// sorted by path. It is what an SBOM records for the control domain.
func BuildModules() ([]Module, error) {
	ar := txtar.Parse(buildModule)
	var gomod, gosum []byte
	for _, f := range ar.Files {
		switch f.Name {
		case "go.mod":
			gomod = f.Data
		case "go.sum":
			gosum = f.Data
		}
	}
	if gomod == nil || gosum == nil {
		return nil, fmt.Errorf("build module: no go.mod or go.sum (run go generate ./initramfs)")
	}
	mf, err := modfile.Parse("module.txtar/go.mod", gomod, nil)
	if err != nil {
		return nil, fmt.Errorf("build module: %w", err)
	}
	sums := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(gosum))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 3 && !strings.HasSuffix(f[1], "/go.mod") {
			sums[f[0]+"@"+f[1]] = f[2]
		}
	}
	var mods []Module
	for _, r := range mf.Require {
		m := Module{Path: r.Mod.Path, Version: r.Mod.Version, Sum: sums[r.Mod.Path+"@"+r.Mod.Version]}
		if m.Sum == "" {
			return nil, fmt.Errorf("build module: go.sum has no hash for %s %s (run go generate ./initramfs)", m.Path, m.Version)
		}
		mods = append(mods, m)
	}
	sort.Slice(mods, func(i, j int) bool { return mods[i].Path < mods[j].Path })
	return mods, nil
}
