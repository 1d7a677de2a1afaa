// Package pipeline runs fwbuild's stages for a board: it maps the profile to
// each stage's plain inputs, caches each stage's result by the content hash
// of its inputs, and writes the artefacts.
package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/fwbuild/fwbuild/boardcfg"
	"github.com/fwbuild/fwbuild/internal/debpkg"
)

// Components are a board's fetched packages by component name.
type Components map[string]debpkg.Fetched

// File returns the path of a component's file role ("xen", "efi").
func (c Components) File(component, role string, b *boardcfg.Board) (string, error) {
	f, ok := c[component]
	if !ok {
		return "", fmt.Errorf("component %q was not fetched", component)
	}
	comp, _ := b.Component(component)
	rel, ok := comp.Files[role]
	if !ok {
		return "", fmt.Errorf("component %q has no file role %q", component, role)
	}
	p := f.Path(rel)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("component %q (%s): %s is not in the package: fix files.%s in %s", component, f.Pkg, rel, role, b.Loc("components"))
	}
	return p, nil
}

// Read returns the content of a component's file role.
func (c Components) Read(component, role string, b *boardcfg.Board) ([]byte, error) {
	p, err := c.File(component, role, b)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(p)
}

// Fetch downloads (or finds in the cache) every component of the board.
func Fetch(ctx context.Context, b *boardcfg.Board, cacheDir string, log *slog.Logger) (Components, error) {
	pkgs := make([]debpkg.Pkg, len(b.Components))
	for i, c := range b.Components {
		pkgs[i] = debpkg.Pkg{Name: c.Package, Version: c.Version, SHA256: string(c.SHA256),
			Origin: fmt.Sprintf("board %s, component %s (%s)", b.Name, c.Name, b.Loc(fmt.Sprintf("components[%d]", i)))}
	}
	dc := &debpkg.Cache{Dir: cacheDir, Log: log}
	got, err := dc.Fetch(ctx, pkgs)
	if err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	out := Components{}
	for i, c := range b.Components {
		out[c.Name] = got[i]
	}
	// Every file the profile names must exist: a typo surfaces here, not three stages later.
	for _, c := range b.Components {
		for role := range c.Files {
			if _, err := out.File(c.Name, role, b); err != nil {
				return nil, fmt.Errorf("fetch: %w", err)
			}
		}
	}
	return out, nil
}

// BoardsDir returns a directory of board profiles: dir if given, ./boards if
// present, else the built-in profiles written once into the cache.
func BoardsDir(dir, cacheDir string) (string, error) {
	if dir != "" {
		return dir, nil
	}
	if m, _ := filepath.Glob(filepath.Join("boards", "*.yaml")); len(m) > 0 {
		return "boards", nil
	}
	return materializeBuiltin(cacheDir)
}

// fetch is the fetch stage: a package store lookup, never reported as cached.
func (r *run) fetch(ctx context.Context) (Components, error) {
	return Fetch(ctx, r.Board, r.CacheDir, r.log())
}

func (Components) fromCache() bool { return false }
func (Components) entry() string   { return "" }
