// Package debpkg fetches pinned Debian packages with apt-get, verifies their
// SHA-256 and unpacks them in Go into a cache keyed by that hash, so a
// package is downloaded and unpacked once per content, whatever its name.
package debpkg

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fwbuild/fwbuild/internal/atomicfile"
	"github.com/fwbuild/fwbuild/internal/cache"
)

// Pkg is one pinned package. Origin says who asked for it ("board qemu-q35,
// component xen"), for error messages.
type Pkg struct {
	Name    string
	Version string
	SHA256  string
	Origin  string
}

func (p Pkg) String() string { return p.Name + "=" + p.Version }

// Fetched is a package in the cache.
type Fetched struct {
	Pkg
	Deb        string // the verified .deb
	Root       string // its unpacked data.tar
	Downloaded bool   // false when the cache already had it
}

// Path returns the absolute path of rel inside the unpacked package.
func (f Fetched) Path(rel string) string { return filepath.Join(f.Root, filepath.FromSlash(rel)) }

// Cache is the package cache under Dir: debs/<sha256>.deb and pkgs/<sha256>/.
type Cache struct {
	Dir string
	// AptGet is the apt-get binary; empty means "apt-get" from PATH.
	AptGet string
	Log    *slog.Logger
}

// HashMismatchError means a downloaded .deb is not the pinned one.
type HashMismatchError struct {
	Pkg      Pkg
	Actual   string
	Filename string
}

func (e *HashMismatchError) Error() string {
	return fmt.Sprintf("debpkg: %s (%s): SHA-256 mismatch: the profile pins %s, apt delivered %s (%s); nothing was cached. "+
		"If Debian replaced the package, update version and sha256 in the profile after checking the new one",
		e.Pkg, e.Pkg.Origin, e.Pkg.SHA256, e.Actual, e.Filename)
}

func (c *Cache) log() *slog.Logger {
	if c.Log != nil {
		return c.Log
	}
	return slog.New(slog.DiscardHandler)
}

func (c *Cache) open() (*cache.Dir, error) {
	d, err := cache.Open(c.Dir)
	if err != nil {
		return nil, fmt.Errorf("debpkg: %w", err)
	}
	return d.WithWaiting(func(kind, key string) {
		c.log().Info("waiting for another fwbuild fetching the same package", "entry", kind+"/"+key)
	}), nil
}

// The .deb and its unpacked tree are both cache entries named by the pinned
// hash: debs/<sha256>.deb and pkgs/<sha256>/.
const (
	debsKind = "debs"
	pkgsKind = "pkgs"
)

func debName(p Pkg) string { return p.SHA256 + ".deb" }

func (c *Cache) fetched(d *cache.Dir, p Pkg) Fetched {
	return Fetched{Pkg: p, Deb: d.Path(debsKind, debName(p)), Root: d.Path(pkgsKind, p.SHA256)}
}

// Lookup returns a package already in the cache, without any download.
func (c *Cache) Lookup(p Pkg) (Fetched, bool) {
	d, err := c.open()
	if err != nil {
		return Fetched{}, false
	}
	if _, ok := d.Lookup(pkgsKind, p.SHA256); !ok {
		return Fetched{}, false
	}
	return c.fetched(d, p), true
}

// Fetch makes every package available unpacked. Missing ones are downloaded
// with one apt-get call, verified and unpacked; present ones cost a stat.
// Waits for another fwbuild fetching the same packages end with ctx.
func (c *Cache) Fetch(ctx context.Context, pkgs []Pkg) ([]Fetched, error) {
	for _, p := range pkgs {
		if len(p.SHA256) != 64 {
			return nil, fmt.Errorf("debpkg: %s (%s): no valid sha256 pinned", p, p.Origin)
		}
	}
	d, err := c.open()
	if err != nil {
		return nil, err
	}
	out := make([]Fetched, len(pkgs))
	var missing []Pkg
	for i, p := range pkgs {
		if _, ok := d.Lookup(pkgsKind, p.SHA256); ok {
			out[i] = c.fetched(d, p)
		} else if !containsPkg(missing, p) {
			missing = append(missing, p)
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	downloaded, err := c.fill(ctx, d, missing)
	if err != nil {
		return nil, err
	}
	for i, p := range pkgs {
		if out[i].Root == "" {
			out[i] = c.fetched(d, p)
			// A package listed twice was downloaded once, for the first.
			out[i].Downloaded = downloaded[p.SHA256]
			delete(downloaded, p.SHA256)
		}
	}
	return out, nil
}

// missingPkg is a package whose unpacked tree this process has claimed.
type missingPkg struct {
	Pkg
	tree *cache.Claim
	deb  *cache.Claim // nil when the .deb is in the cache
}

// fill downloads and unpacks the packages, reporting which it downloaded.
// All claims are taken in one order, trees before .debs and each kind by
// hash, so two fwbuilds fetching overlapping sets cannot deadlock.
func (c *Cache) fill(ctx context.Context, d *cache.Dir, pkgs []Pkg) (map[string]bool, error) {
	pkgs = slices.Clone(pkgs)
	slices.SortFunc(pkgs, func(a, b Pkg) int { return strings.Compare(a.SHA256, b.SHA256) })
	var todo []*missingPkg
	defer func() {
		for _, m := range todo {
			m.tree.Release()
			if m.deb != nil {
				m.deb.Release()
			}
		}
	}()
	for _, p := range pkgs {
		_, tree, err := d.Claim(ctx, pkgsKind, p.SHA256)
		if err != nil {
			return nil, fmt.Errorf("debpkg: %s: %w", p, err)
		}
		if tree != nil { // else another fwbuild unpacked it while we waited
			todo = append(todo, &missingPkg{Pkg: p, tree: tree})
		}
	}
	var download []*missingPkg
	for _, m := range todo {
		_, deb, err := d.ClaimFile(ctx, debsKind, debName(m.Pkg))
		if err != nil {
			return nil, fmt.Errorf("debpkg: %s: %w", m.Pkg, err)
		}
		if deb != nil {
			m.deb = deb
			download = append(download, m)
		}
	}
	downloaded := map[string]bool{}
	if len(download) > 0 {
		if err := c.download(ctx, download); err != nil {
			return nil, err
		}
		for _, m := range download {
			downloaded[m.SHA256] = true
		}
	}
	for _, m := range todo {
		start := time.Now()
		if err := Unpack(d.Path(debsKind, debName(m.Pkg)), m.tree.Temp()); err != nil {
			return nil, fmt.Errorf("debpkg: %s (%s): %w", m.Pkg, m.Origin, err)
		}
		if _, err := m.tree.Commit(); err != nil {
			return nil, fmt.Errorf("debpkg: %s: %w", m.Pkg, err)
		}
		c.log().Info("unpacked", "package", m.Pkg.String(), "took", time.Since(start).Round(time.Millisecond))
	}
	return downloaded, nil
}

func containsPkg(list []Pkg, p Pkg) bool {
	for _, q := range list {
		if q.SHA256 == p.SHA256 {
			return true
		}
	}
	return false
}

// download fetches the claimed .debs with one apt-get call and commits each
// once verified.
func (c *Cache) download(ctx context.Context, pkgs []*missingPkg) error {
	apt := c.AptGet
	if apt == "" {
		apt = "apt-get"
	}
	if _, err := exec.LookPath(apt); err != nil {
		return fmt.Errorf("debpkg: %s not found: fwbuild fetches components with apt-get download (Debian/Ubuntu hosts): %w", apt, err)
	}
	tmpRoot := filepath.Join(c.Dir, "tmp")
	if err := os.MkdirAll(tmpRoot, 0o755); err != nil {
		return fmt.Errorf("debpkg: %w", err)
	}
	tmp, err := os.MkdirTemp(tmpRoot, "download-")
	if err != nil {
		return fmt.Errorf("debpkg: %w", err)
	}
	defer os.RemoveAll(tmp)

	args := []string{"download", "-q", "-o", "APT::Sandbox::User=root"}
	plain := make([]Pkg, len(pkgs))
	for i, m := range pkgs {
		args = append(args, m.String())
		plain[i] = m.Pkg
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, apt, args...)
	cmd.Dir = tmp
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdout = &stderr
	start := time.Now()
	c.log().Info("downloading", "packages", len(pkgs), "cmd", apt+" "+strings.Join(args, " "))
	if err := cmd.Run(); err != nil {
		return aptError(plain, stderr.String(), err)
	}
	for _, m := range pkgs {
		if err := adopt(tmp, m); err != nil {
			return err
		}
	}
	c.log().Info("downloaded", "packages", len(pkgs), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// aptError names the package apt could not find and the board component
// that asked for it, rather than apt's generic failure.
func aptError(pkgs []Pkg, out string, err error) error {
	for _, p := range pkgs {
		if strings.Contains(out, "'"+p.Version+"' for '"+p.Name+"' was not found") ||
			strings.Contains(out, "Unable to locate package "+p.Name) {
			return fmt.Errorf("debpkg: apt cannot find %s, asked for by %s: run `apt-get update`; if it still fails, "+
				"Debian no longer carries this version: pin one that `apt-cache policy %s` lists\napt-get said:\n%s",
				p, p.Origin, p.Name, strings.TrimSpace(out))
		}
	}
	return fmt.Errorf("debpkg: apt-get download failed: %w\n%s", err, strings.TrimSpace(out))
}

// adopt verifies the .deb apt put in dir and commits it as the package's
// cache entry.
func adopt(dir string, m *missingPkg) error {
	p := m.Pkg
	// apt names files NAME_VERSION_ARCH.deb with the epoch's ':' escaped as %3a.
	version := strings.ReplaceAll(p.Version, ":", "%3a")
	matches, _ := filepath.Glob(filepath.Join(dir, p.Name+"_"+version+"_*.deb"))
	if len(matches) != 1 {
		return fmt.Errorf("debpkg: apt-get download of %s (%s) left no .deb in %s", p, p.Origin, dir)
	}
	sum, _, err := atomicfile.HashFile(matches[0])
	if err != nil {
		return fmt.Errorf("debpkg: %s: %w", p, err)
	}
	if sum != p.SHA256 {
		os.Remove(matches[0])
		return &HashMismatchError{Pkg: p, Actual: sum, Filename: filepath.Base(matches[0])}
	}
	if err := os.Rename(matches[0], m.deb.Temp()); err != nil {
		return fmt.Errorf("debpkg: %s: %w", p, err)
	}
	if _, err := m.deb.Commit(); err != nil {
		return fmt.Errorf("debpkg: %s: %w", p, err)
	}
	return nil
}
