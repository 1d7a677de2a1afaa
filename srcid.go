// Package fwbuild identifies the code that turns inputs into artefacts.
//
// Stage caches are keyed by SourceID, not by the running binary: the CLI and
// every test binary then share cached stages, yet a change to any code that
// shapes an artefact (or to a dependency's version) makes them rebuild.
package fwbuild

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"runtime"
	"sort"
	"strings"
)

// Packages whose code ends up in, or decides the bytes of, an artefact. A new
// package on that path must be added here.
//
//go:embed go.sum
//go:embed boardcfg/*.go
//go:embed cmd/ctld/*.go
//go:embed hvcore/*.go hvcore/pe/*.go hvcore/kbuild/*.go
//go:embed image/*.go
//go:embed initramfs/*.go initramfs/*.txtar initramfs/internal/closure/*.go initramfs/internal/gensrc/*.go
//go:embed internal/pipeline/*.go internal/debpkg/*.go
var sources embed.FS

// SourceID is a SHA-256 over the artefact-shaping sources (tests excluded),
// go.sum and the Go toolchain version.
func SourceID() string {
	var names []string
	fs.WalkDir(sources, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasSuffix(p, "_test.go") {
			names = append(names, p)
		}
		return nil
	})
	sort.Strings(names)
	h := sha256.New()
	h.Write([]byte(runtime.Version()))
	for _, n := range names {
		data, _ := sources.ReadFile(n)
		h.Write([]byte{0})
		h.Write([]byte(n))
		h.Write([]byte{0})
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil))
}
