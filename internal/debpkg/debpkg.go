// Package debpkg fetches pinned Debian packages with apt-get, verifies their
// SHA-256 and unpacks them in Go into a cache keyed by that hash, so a
// package is downloaded and unpacked once per content, whatever its name.
package debpkg

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/fwbuild/fwbuild/internal/atomicfile"
	"github.com/fwbuild/fwbuild/internal/cache"
	"pault.ag/go/debian/deb"
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

func (c *Cache) debPath(p Pkg) string  { return filepath.Join(c.Dir, "debs", p.SHA256+".deb") }
func (c *Cache) rootPath(p Pkg) string { return filepath.Join(c.Dir, "pkgs", p.SHA256) }

// Lookup returns a package already in the cache, without any download.
func (c *Cache) Lookup(p Pkg) (Fetched, bool) {
	root := c.rootPath(p)
	if st, err := os.Stat(root); err == nil && st.IsDir() {
		return Fetched{Pkg: p, Deb: c.debPath(p), Root: root}, true
	}
	return Fetched{}, false
}

// Fetch makes every package available unpacked. Missing ones are downloaded
// with one apt-get call, verified and unpacked; present ones cost a stat.
func (c *Cache) Fetch(ctx context.Context, pkgs []Pkg) ([]Fetched, error) {
	for _, p := range pkgs {
		if len(p.SHA256) != 64 {
			return nil, fmt.Errorf("debpkg: %s (%s): no valid sha256 pinned", p, p.Origin)
		}
	}
	unlock, err := cache.Lock(ctx, filepath.Join(c.Dir, "debs.lock"), nil)
	if err != nil {
		return nil, err
	}
	defer unlock()

	out := make([]Fetched, len(pkgs))
	var missingDeb []Pkg
	for i, p := range pkgs {
		if f, ok := c.Lookup(p); ok {
			out[i] = f
			continue
		}
		if _, err := os.Stat(c.debPath(p)); err != nil && !containsPkg(missingDeb, p) {
			missingDeb = append(missingDeb, p)
		}
	}
	if len(missingDeb) > 0 {
		if err := c.download(ctx, missingDeb); err != nil {
			return nil, err
		}
	}
	for i, p := range pkgs {
		if out[i].Root != "" {
			continue
		}
		if f, ok := c.Lookup(p); ok { // an earlier duplicate unpacked it
			out[i] = f
			continue
		}
		start := time.Now()
		if err := c.unpack(p); err != nil {
			return nil, err
		}
		c.log().Info("unpacked", "package", p.String(), "took", time.Since(start).Round(time.Millisecond))
		out[i] = Fetched{Pkg: p, Deb: c.debPath(p), Root: c.rootPath(p), Downloaded: containsPkg(missingDeb, p)}
	}
	return out, nil
}

func containsPkg(list []Pkg, p Pkg) bool {
	for _, q := range list {
		if q.SHA256 == p.SHA256 {
			return true
		}
	}
	return false
}

func (c *Cache) download(ctx context.Context, pkgs []Pkg) error {
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
	for _, p := range pkgs {
		args = append(args, p.String())
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
		return aptError(pkgs, stderr.String(), err)
	}
	for _, p := range pkgs {
		if err := c.adopt(tmp, p); err != nil {
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

// adopt verifies the .deb apt put in dir and moves it into the cache.
func (c *Cache) adopt(dir string, p Pkg) error {
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
	if err := os.MkdirAll(filepath.Dir(c.debPath(p)), 0o755); err != nil {
		return fmt.Errorf("debpkg: %w", err)
	}
	return os.Rename(matches[0], c.debPath(p))
}

func (c *Cache) unpack(p Pkg) error {
	if err := os.MkdirAll(filepath.Join(c.Dir, "pkgs"), 0o755); err != nil {
		return fmt.Errorf("debpkg: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Join(c.Dir, "pkgs"), "."+p.SHA256[:12]+".tmp-")
	if err != nil {
		return fmt.Errorf("debpkg: %w", err)
	}
	if err := Unpack(c.debPath(p), tmp); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("debpkg: %s (%s): %w", p, p.Origin, err)
	}
	if err := os.Rename(tmp, c.rootPath(p)); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("debpkg: %w", err)
	}
	return nil
}

// Unpack extracts the data archive of a .deb into dest (which must exist).
// Paths that would escape dest are refused.
func Unpack(debPath, dest string) error {
	d, closer, err := deb.LoadFile(debPath)
	if err != nil {
		return fmt.Errorf("read %s: %w", debPath, err)
	}
	defer closer()
	return extractTar(d.Data, dest)
}

func extractTar(tr *tar.Reader, dest string) error {
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("data archive: %w", err)
		}
		name := filepath.Clean(strings.TrimPrefix(h.Name, "./"))
		if name == "." || name == "" {
			continue
		}
		if filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("data archive: entry %q escapes the package root", h.Name)
		}
		target := filepath.Join(dest, name)
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode).Perm()|0o200)
			if err != nil {
				return err
			}
			if _, err := io.Copy(f, tr); err != nil {
				f.Close()
				return fmt.Errorf("data archive: %s: %w", h.Name, err)
			}
			if err := f.Close(); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, target); err != nil {
				return err
			}
		case tar.TypeLink:
			old := filepath.Clean(strings.TrimPrefix(h.Linkname, "./"))
			if strings.HasPrefix(old, "../") || filepath.IsAbs(old) {
				return fmt.Errorf("data archive: hard link %q escapes the package root", h.Linkname)
			}
			if err := os.Link(filepath.Join(dest, old), target); err != nil {
				return err
			}
		default:
			// Device nodes and fifos have no place in a build input.
		}
	}
}
