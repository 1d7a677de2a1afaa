// Package fwbuild identifies the code that turns inputs into artefacts, and
// carries the sources of the programs that run inside the control domain.
//
// Stage caches are keyed by SourceID, not by the running binary: the CLI and
// every test binary then share cached stages, yet a change to any code that
// shapes an artefact (or to a dependency's version) makes them rebuild.
//
// ctld and guestinit are compiled at build time for the control domain, so
// an installed fwbuild carries their sources; they are embedded here, the
// one package whose directory holds both them and the contract package.
package fwbuild

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"path"
	"runtime"
	"sort"
	"strings"
)

// Packages whose code ends up in, or decides the bytes of, an artefact. A new
// package on that path must be added here.
//
//go:embed go.sum
//go:embed boardcfg/*.go
//go:embed cmd/ctld/*.go cmd/guestinit/*.go contract/*.go contract/bundle/*.go contract/unit/*.go contract/update/*.go contract/redfish/*.go
//go:embed hvcore/*.go hvcore/pe/*.go hvcore/kbuild/*.go hvcore/kconfig/*.go
//go:embed image/*.go launcher/*.go launcher/src/*
//go:embed initramfs/*.go initramfs/*.txtar initramfs/internal/closure/*.go initramfs/internal/gensrc/*.go
//go:embed internal/pipeline/*.go internal/debpkg/*.go internal/buildrecord/*.go internal/boundedfile/*.go
//go:embed release/*.go secboot/*.go measure/*.go
var sources embed.FS

// controlDomainDirs are the packages built into the control domain and its
// guests: the two commands and the contract package they share with the
// build.
var controlDomainDirs = []string{"cmd/ctld", "cmd/guestinit", "contract", "contract/bundle", "contract/unit", "contract/update", "contract/redfish"}

// SourceFile is one embedded source file.
type SourceFile struct {
	Path string // slash-separated, relative to the module root
	Data []byte
}

// ControlDomainSources returns the Go sources (tests excluded) of the
// packages built into the control domain and its guests, sorted by path.
func ControlDomainSources() []SourceFile {
	var out []SourceFile
	for _, p := range nonTestFiles(sources) {
		for _, d := range controlDomainDirs {
			if path.Dir(p) == d {
				data, _ := sources.ReadFile(p)
				out = append(out, SourceFile{Path: p, Data: data})
			}
		}
	}
	return out
}

// SourceID is a SHA-256 over the artefact-shaping sources (tests excluded),
// go.sum and the Go toolchain version.
func SourceID() string { return sourceID(sources) }

func sourceID(fsys fs.FS) string {
	h := sha256.New()
	h.Write([]byte(runtime.Version()))
	for _, n := range nonTestFiles(fsys) {
		data, _ := fs.ReadFile(fsys, n)
		h.Write([]byte{0})
		h.Write([]byte(n))
		h.Write([]byte{0})
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// nonTestFiles lists the files of fsys but tests, sorted.
func nonTestFiles(fsys fs.FS) []string {
	var names []string
	fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasSuffix(p, "_test.go") {
			names = append(names, p)
		}
		return nil
	})
	sort.Strings(names)
	return names
}
