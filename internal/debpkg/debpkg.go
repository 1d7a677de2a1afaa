// Package debpkg fetches pinned Debian packages with apt-get, verifies their
// SHA-256 and unpacks them in Go into a cache keyed by that hash, so a
// package is downloaded and unpacked once per content, whatever its name.
//
// Nothing in the cache is used unchecked: a cached .deb is hashed against
// its pin whenever it is unpacked (and deleted and downloaded again if it
// differs), and an unpacked tree is checked against the manifest recorded
// when it was unpacked on every Fetch (quickly: see cache.Quick), and
// unpacked again if it differs.
package debpkg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fwbuild/fwbuild/boardcfg"
	"github.com/fwbuild/fwbuild/internal/atomicfile"
	"github.com/fwbuild/fwbuild/internal/cache"
	"github.com/fwbuild/fwbuild/internal/progress"
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
	// FullVerify hashes every file of every unpacked tree on each Fetch
	// rather than only files whose inode, mtime or ctime changed: it also
	// catches bits that rot on the disk, for `fwbuild doctor`-like checks.
	FullVerify bool
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
	return d.WithLog(c.log()).WithWaiting(func(kind, key string) {
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

// Lookup returns a package already in the cache, without any download; a
// tree that fails its check is not returned.
func (c *Cache) Lookup(p Pkg) (Fetched, bool) {
	d, err := c.open()
	if err != nil {
		return Fetched{}, false
	}
	path, ok := d.Lookup(pkgsKind, p.SHA256)
	if !ok {
		return Fetched{}, false
	}
	if _, err := c.checkTree(d, p)(path); err != nil {
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
	good := c.checkTrees(d, pkgs)
	for i, p := range pkgs {
		if good[p.SHA256] {
			out[i] = c.fetched(d, p)
		} else if !containsPkg(missing, p) {
			// A damaged tree is logged and replaced by fill, under its lock.
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

// checkTrees checks the packages' trees that exist, in parallel: it is most
// of a no-op rebuild's time (a stat of each of thousands of files), and the
// trees are independent. It returns the hashes of those that passed.
func (c *Cache) checkTrees(d *cache.Dir, pkgs []Pkg) map[string]bool {
	var mu sync.Mutex
	good := map[string]bool{}
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	seen := map[string]bool{}
	for _, p := range pkgs {
		path, ok := d.Lookup(pkgsKind, p.SHA256)
		if !ok || seen[p.SHA256] {
			continue
		}
		seen[p.SHA256] = true
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if _, err := c.checkTree(d, p)(path); err == nil {
				mu.Lock()
				good[p.SHA256] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return good
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
		_, tree, err := d.ClaimChecked(ctx, pkgsKind, p.SHA256, c.checkTree(d, p))
		if err != nil {
			return nil, fmt.Errorf("debpkg: %s: %w", p, err)
		}
		if tree != nil { // else another fwbuild unpacked it while we waited
			todo = append(todo, &missingPkg{Pkg: p, tree: tree})
		}
	}
	var download []*missingPkg
	for _, m := range todo {
		// The .deb is read now: one not matching its pin is deleted and
		// downloaded again, never unpacked.
		_, deb, err := d.ClaimFileChecked(ctx, debsKind, debName(m.Pkg), checkDeb(m.Pkg))
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
		debPath := d.Path(debsKind, debName(m.Pkg))
		if err := Unpack(debPath, m.tree.Temp()); err != nil {
			// Its hash matched the pin a moment ago, so the damage is in
			// the package itself, not in the cache.
			return nil, fmt.Errorf("debpkg: %s (%s): cannot unpack %s: %w; its SHA-256 matches the pin, so the pinned package is "+
				"itself broken: pin another version (or, if you suspect the cache, delete %s and build again to download it afresh)",
				m.Pkg, m.Origin, debPath, err, debPath)
		}
		if _, err := m.tree.Commit(); err != nil {
			return nil, fmt.Errorf("debpkg: %s: %w", m.Pkg, err)
		}
		c.log().Info("unpacked", "package", m.Pkg.String(), "took", time.Since(start).Round(time.Millisecond))
	}
	return downloaded, nil
}

// checkDeb accepts a cached .deb only if it is the pinned one.
func checkDeb(p Pkg) cache.Check {
	return func(path string) (*cache.Manifest, error) {
		sum, _, err := atomicfile.HashFile(path)
		if err != nil {
			return nil, fmt.Errorf("debpkg: %s: %w", p, err)
		}
		if sum != p.SHA256 {
			return nil, fmt.Errorf("debpkg: cached %s for %s (%s) has SHA-256 %s, not the pinned %s: it is deleted and downloaded again",
				path, p, p.Origin, sum, p.SHA256)
		}
		return nil, nil
	}
}

// checkTree checks an unpacked tree against its manifest. A tree an older
// fwbuild unpacked has none: it is checked in full against its .deb (once,
// a few seconds for a big package) and recorded.
func (c *Cache) checkTree(d *cache.Dir, p Pkg) cache.Check {
	return func(path string) (*cache.Manifest, error) {
		m, err := cache.VerifyEntry(path, c.FullVerify)
		if !errors.Is(err, cache.ErrUnrecorded) {
			return m, err
		}
		deb := d.Path(debsKind, debName(p))
		if _, err := os.Stat(deb); err != nil {
			// Nothing to check it against (a cache prune removed the
			// .deb, or a test or a person put this tree here): trusted once.
			if m, err = cache.BuildManifest(path); err != nil {
				return nil, err
			}
			c.log().Warn("recorded an unpacked package that has no .deb to check it against", "package", p.String(), "tree", path)
			return m, m.Write(path)
		}
		if _, err := checkDeb(p)(deb); err != nil {
			return nil, err
		}
		want, err := unpack(deb, "")
		if err != nil {
			return nil, fmt.Errorf("debpkg: %s: %s: %w", p, deb, err)
		}
		// An older fwbuild's modes depended on its umask: check content,
		// record the modes found.
		for rel, f := range want.Files {
			f.Mode = 0
			want.Files[rel] = f
		}
		// Without fingerprints a quick check hashes every file, and records them.
		if _, err := cache.Verify(path, want, cache.Quick); err != nil {
			return nil, err
		}
		for rel, f := range want.Files {
			if f.Type == cache.TypeFile {
				if info, err := os.Lstat(filepath.Join(path, filepath.FromSlash(rel))); err == nil {
					f.Mode = info.Mode().Perm()
					want.Files[rel] = f
				}
			}
		}
		c.log().Info("checked an unpacked package against its .deb and recorded it", "package", p.String(), "tree", path)
		return want, want.Write(path)
	}
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
	plain := make([]Pkg, len(pkgs))
	for i, m := range pkgs {
		plain[i] = m.Pkg
	}
	args, err := downloadArgs(plain)
	if err != nil {
		return err
	}
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

	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, apt, args...)
	cmd.Dir = tmp
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdout = &stderr
	start := time.Now()
	c.log().Info("downloading", "packages", len(pkgs), "cmd", apt+" "+strings.Join(args, " "))
	task := progress.Start(ctx, downloadName(plain), progress.Bytes, downloadSize(ctx, apt, args))
	stop := progress.Poll(task, 250*time.Millisecond, func() int64 { return dirBytes(tmp) })
	err = cmd.Run()
	stop()
	task.Set(dirBytes(tmp))
	task.Done(err == nil)
	if err != nil {
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

func downloadName(pkgs []Pkg) string {
	if len(pkgs) == 1 {
		return "download " + pkgs[0].Name
	}
	return fmt.Sprintf("download %d packages", len(pkgs))
}

// downloadSize asks apt-get what the download will weigh (--print-uris
// lists each file with its size and downloads nothing), so that a progress
// bar can show an ETA. Only when someone watches; 0 when apt cannot say.
func downloadSize(ctx context.Context, apt string, args []string) int64 {
	if !progress.Active(ctx) {
		return 0
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	// args is "download" then its options, "--" and the checked operands.
	out, err := exec.CommandContext(ctx, apt, append([]string{args[0], "--print-uris"}, args[1:]...)...).Output()
	if err != nil {
		return 0
	}
	var total int64
	for _, line := range strings.Split(string(out), "\n") {
		// 'URI' file size SHA256:hash
		if f := strings.Fields(line); len(f) >= 3 {
			if n, err := strconv.ParseInt(f[2], 10, 64); err == nil && n > 0 {
				total += n
			}
		}
	}
	return total
}

// dirBytes is the size of the files under dir (apt-get's downloads so far).
func dirBytes(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// downloadArgs is apt-get's command line for pkgs. apt-get runs as root and
// takes "-oKEY=VALUE" anywhere on its command line, some of which run
// programs, so each operand must be a Debian package name and version (the
// profile loader checks the same rules with file:line), and "--" ends the
// options whatever a caller passes.
func downloadArgs(pkgs []Pkg) ([]string, error) {
	args := []string{"download", "-q", "-o", "APT::Sandbox::User=root", "--"}
	for _, p := range pkgs {
		if err := boardcfg.CheckPackageName(p.Name); err != nil {
			return nil, fmt.Errorf("debpkg: %s: refusing to run apt-get: %w", p.Origin, err)
		}
		if err := boardcfg.CheckVersion(p.Version); err != nil {
			return nil, fmt.Errorf("debpkg: %s: refusing to run apt-get: %w", p.Origin, err)
		}
		args = append(args, p.String())
	}
	return args, nil
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
