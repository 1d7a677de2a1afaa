// Package cache is fwbuild's content-addressed cache. Every result lives at
// <root>/<kind>/<key>, where the key hashes everything that went into it, so
// an entry is built once and never changes.
//
// An entry appears only when a complete temporary directory (or file) is
// renamed into place: its existence is the hit test, and a build that fails,
// is cancelled or crashes leaves at most a temporary ".<key>.tmp-*" that the
// next builder of that key removes. Builders of one key, in this process or
// another, serialise on <root>/<kind>/<key>.lock and recheck after the wait,
// so the second finds the first one's entry instead of building it again.
//
// A key names an entry's inputs, not the bytes on disk, and disks and people
// change files. So every directory entry records its files' SHA-256 in
// ManifestName before the rename, and Dir.Entry checks an entry against it
// before reusing it: a damaged entry is removed under the lock and built
// again, with a warning naming it, and is never handed out.
package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// DefaultDir is $FWBUILD_CACHE, else $XDG_CACHE_HOME/fwbuild, else ~/.cache/fwbuild.
func DefaultDir() (string, error) {
	if d := os.Getenv("FWBUILD_CACHE"); d != "" {
		return d, nil
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "fwbuild"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("cache: no cache directory: set FWBUILD_CACHE or HOME: %w", err)
	}
	return filepath.Join(home, ".cache", "fwbuild"), nil
}

// Dir is a cache rooted at one directory. It holds no open files or locks,
// so any number of Dirs (in any number of processes) may share a root.
type Dir struct {
	root    string
	waiting func(kind, key string)
	log     *slog.Logger
	quick   bool // verify entries with Quick rather than Full
	adopt   bool // record, rather than rebuild, entries without a manifest
	beside  bool // keep manifests beside directory entries, not inside
}

// Open returns the cache rooted at root, which is created on first use.
// Entry paths are under root as given: a caller that hands them to a tool
// running elsewhere (make O=) opens an absolute root.
func Open(root string) (*Dir, error) {
	if root == "" {
		return nil, errors.New("cache: no cache directory given")
	}
	return &Dir{root: root}, nil
}

// Root is the cache's root directory.
func (d *Dir) Root() string { return d.root }

// WithWaiting returns a copy of d that calls waiting once per claim that has
// to wait for another builder of the same key, so that a caller can say why
// nothing seems to happen.
func (d *Dir) WithWaiting(waiting func(kind, key string)) *Dir {
	c := *d
	c.waiting = waiting
	return &c
}

// WithLog returns a copy of d that warns on log about damaged entries it
// rebuilds; without one they are rebuilt silently.
func (d *Dir) WithLog(log *slog.Logger) *Dir {
	c := *d
	c.log = log
	return &c
}

// WithQuickVerify returns a copy of d whose Entry checks hits with Quick
// rather than Full: for entries too big to hash on every use.
func (d *Dir) WithQuickVerify() *Dir {
	c := *d
	c.quick = true
	return &c
}

// WithAdoptUnrecorded returns a copy of d whose Entry records the manifest of
// a hit that has none (built by an older fwbuild) instead of rebuilding it:
// for entries too costly to rebuild (a kernel), which are trusted once.
func (d *Dir) WithAdoptUnrecorded() *Dir {
	c := *d
	c.adopt = true
	return &c
}

// WithManifestBeside returns a copy of d that keeps each directory entry's
// manifest beside it, as <key>.files.json, rather than inside: for trees
// whose top level must stay exactly as built (older fwbuilds require a
// kernel source entry to hold one directory).
func (d *Dir) WithManifestBeside() *Dir {
	c := *d
	c.beside = true
	return &c
}

// Path is where the entry (kind, key) lives, whether or not it exists yet.
func (d *Dir) Path(kind, key string) string {
	return filepath.Join(d.root, filepath.FromSlash(kind), key)
}

// Lookup returns the entry's path if it exists. It takes no lock (entries
// appear complete or not at all) and does not verify the entry.
func (d *Dir) Lookup(kind, key string) (string, bool) {
	if checkName(kind, key) != nil {
		return "", false
	}
	p := d.Path(kind, key)
	if !exists(p) {
		return p, false
	}
	touch(p)
	return p, true
}

// Entry is an entry of the cache.
type Entry struct {
	Path string // <root>/<kind>/<key>
	Hit  bool   // it was already there: nothing was built
	// Files is a directory entry's manifest, checked against the entry (a
	// hit) or just recorded (a miss); nil for a file entry.
	Files *Manifest
}

// Entry returns the directory entry (kind, key), building it on a miss:
// build fills tmpDir, a fresh empty directory on the same file system, which
// is renamed to the entry's path if build succeeds and removed if it fails.
// A hit is checked against its manifest first (see WithQuickVerify and
// WithAdoptUnrecorded); a damaged one is built again. Errors from build are
// returned as they are; waiting for the lock ends with ctx.
func (d *Dir) Entry(ctx context.Context, kind, key string, build func(tmpDir string) error) (Entry, error) {
	e, c, err := d.ClaimChecked(ctx, kind, key, d.checkDir)
	if err != nil || c == nil {
		return e, err
	}
	defer c.Release()
	if err := build(c.Temp()); err != nil {
		return Entry{}, err
	}
	return c.Commit()
}

// Claim is a locked miss: its holder alone may create the entry. It fills
// Temp and then calls Commit, or Release to give up; Release is also safe
// after Commit, so it can be deferred. Claim exists for callers that fill
// several entries with one piece of work (one apt-get for many packages);
// others use Dir.Entry.
type Claim struct {
	path   string // the entry
	tmpDir string // the temporary directory, removed on Release
	tmp    string // what the holder fills: tmpDir, or a file in it
	unlock func()
	// manifest is where Commit records a directory's files: in tmp (so
	// inside the entry once renamed), or beside the entry.
	manifest string
}

// Claim returns the directory entry (kind, key) as a hit, or, on a miss, a
// Claim on it whose Temp is an empty directory. The wait for another
// builder's lock ends with ctx. A hit is not verified: see ClaimChecked.
func (d *Dir) Claim(ctx context.Context, kind, key string) (Entry, *Claim, error) {
	return d.claim(ctx, kind, key, false, nil)
}

// ClaimFile is Claim for an entry that is a single file (a downloaded
// package): Temp is the path of a file, not yet created, that Commit renames
// to the entry.
func (d *Dir) ClaimFile(ctx context.Context, kind, name string) (Entry, *Claim, error) {
	return d.claim(ctx, kind, name, true, nil)
}

// Check says whether an existing entry may be reused: an error means it is
// damaged. It returns the entry's manifest, if it has one.
type Check func(path string) (*Manifest, error)

// ClaimChecked is Claim, but a hit is first passed to check; a damaged entry
// is logged, removed under the lock (after checking again: another builder
// may have replaced it meanwhile) and claimed as a miss.
func (d *Dir) ClaimChecked(ctx context.Context, kind, key string, check Check) (Entry, *Claim, error) {
	return d.claim(ctx, kind, key, false, check)
}

// ClaimFileChecked is ClaimFile with a check of a hit, as ClaimChecked.
func (d *Dir) ClaimFileChecked(ctx context.Context, kind, name string, check Check) (Entry, *Claim, error) {
	return d.claim(ctx, kind, name, true, check)
}

// checkDir is Entry's check: the manifest, with d's depth and policy.
func (d *Dir) checkDir(path string) (*Manifest, error) {
	file := manifestFile(path, d.beside)
	m, err := verifyEntry(path, file, !d.quick)
	if errors.Is(err, ErrUnrecorded) {
		if !d.adopt {
			return nil, &CorruptError{Entry: path, Reason: "it has no " + ManifestName + " (an older fwbuild built it)"}
		}
		if m, err = BuildManifest(path); err == nil {
			err = m.writeFile(file)
		}
		if err == nil && d.log != nil {
			d.log.Info("cache: recorded the manifest of an entry an older fwbuild built", "entry", path)
		}
	}
	return m, err
}

func (d *Dir) claim(ctx context.Context, kind, key string, file bool, check Check) (Entry, *Claim, error) {
	if err := checkName(kind, key); err != nil {
		return Entry{}, nil, err
	}
	path := d.Path(kind, key)
	var damaged error
	if exists(path) {
		m, err := runCheck(check, path)
		if err == nil {
			touch(path)
			return Entry{Path: path, Hit: true, Files: m}, nil, nil
		}
		damaged = err
	}
	parent := filepath.Dir(path)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return Entry{}, nil, fmt.Errorf("cache: %w", err)
	}
	var waiting func()
	if d.waiting != nil {
		waiting = func() { d.waiting(kind, key) }
	}
	unlock, err := Lock(ctx, path+".lock", waiting)
	if err != nil {
		return Entry{}, nil, err
	}
	if exists(path) {
		// Built by the holder we waited for, or damaged: then check again,
		// as that holder may have rebuilt it.
		m, why := runCheck(check, path)
		if why == nil {
			touch(path)
			unlock()
			return Entry{Path: path, Hit: true, Files: m}, nil, nil
		}
		if d.log != nil {
			d.log.Warn("cache: a damaged entry is removed, to be made again", "entry", path, "why", why)
		}
		if err := discard(path, key, manifestFile(path, d.beside)); err != nil {
			unlock()
			return Entry{}, nil, fmt.Errorf("cache: %v, and removing it failed: %w; delete it by hand: rm -rf %s", why, err, path)
		}
	} else if damaged != nil && d.log != nil {
		d.log.Warn("cache: a damaged entry was rebuilt by another fwbuild", "entry", path, "why", damaged)
	}
	// Only a lock holder creates temporaries of this key, so any left now are
	// a crashed or killed holder's.
	stale, _ := filepath.Glob(filepath.Join(parent, "."+key+".tmp-*"))
	for _, s := range stale {
		if err := os.RemoveAll(s); err != nil {
			unlock()
			return Entry{}, nil, fmt.Errorf("cache: remove a crashed build's %s: %w", s, err)
		}
	}
	tmpDir, err := os.MkdirTemp(parent, "."+key+".tmp-")
	if err != nil {
		unlock()
		return Entry{}, nil, fmt.Errorf("cache: %w", err)
	}
	c := &Claim{path: path, tmpDir: tmpDir, tmp: tmpDir, unlock: unlock, manifest: manifestFile(path, d.beside)}
	if file {
		c.tmp = filepath.Join(tmpDir, key)
	}
	return Entry{Path: path}, c, nil
}

func runCheck(check Check, path string) (*Manifest, error) {
	if check == nil {
		return nil, nil
	}
	return check(path)
}

// discard removes a damaged entry: renamed first, so that no reader finds
// half of it, to a name that a crash leaves for the next claim to remove.
func discard(path, key, manifest string) error {
	aside, err := os.MkdirTemp(filepath.Dir(path), "."+key+".tmp-damaged-")
	if err != nil {
		return err
	}
	if err := os.Rename(path, filepath.Join(aside, key)); err != nil {
		os.Remove(aside)
		return err
	}
	if err := os.Remove(manifest); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return os.RemoveAll(aside)
}

// Temp is what the holder fills: a directory, or for ClaimFile a file path.
func (c *Claim) Temp() string { return c.tmp }

// Path is where the entry will be after Commit.
func (c *Claim) Path() string { return c.path }

// Commit records a directory's manifest (see ManifestName), renames Temp to
// the entry and releases the claim.
func (c *Claim) Commit() (Entry, error) {
	if c.unlock == nil {
		return Entry{}, fmt.Errorf("cache: commit %s: claim already released", c.path)
	}
	defer c.Release()
	var m *Manifest
	if c.tmp == c.tmpDir {
		var err error
		if m, err = BuildManifest(c.tmp); err != nil {
			return Entry{}, err
		}
		file := filepath.Join(c.tmp, ManifestName)
		if c.manifest != filepath.Join(c.path, ManifestName) {
			// Beside: written before the rename, as the entry's existence is
			// the hit test; a crash in between leaves one that the next
			// claim of the key replaces.
			file = c.manifest
		}
		if err := m.writeFile(file); err != nil {
			return Entry{}, err
		}
	}
	if err := os.Rename(c.tmp, c.path); err != nil {
		// A writer that takes no lock (an older fwbuild) may have got there
		// first; keys name content, so its entry is as good as ours.
		if exists(c.path) {
			return Entry{Path: c.path, Files: m}, nil
		}
		return Entry{}, fmt.Errorf("cache: commit: %w", err)
	}
	touch(c.path)
	return Entry{Path: c.path, Files: m}, nil
}

// Release gives up an uncommitted claim, removing its temporary, and unlocks.
// It does nothing on a released claim.
func (c *Claim) Release() {
	if c.unlock == nil {
		return
	}
	os.RemoveAll(c.tmpDir) // after a Commit: gone already, or the empty wrapper of a file
	c.unlock()
	c.unlock = nil
}

// Lock takes an exclusive flock on path (created if needed), polling so that
// ctx can end the wait; waiting (if not nil) is called once if the lock is
// busy. flock locks belong to the open file, so two holders in one process
// exclude each other as two processes do, and the kernel drops the lock of a
// process that dies. The lock file is never removed: removing it would let a
// third builder lock a new inode while the second still holds the old one.
func Lock(ctx context.Context, path string, waiting func()) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cache: lock: %w", err) // names path
	}
	// Short polls first: most waits are for a stage that is nearly done.
	poll := 5 * time.Millisecond
	for told := false; ; {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("cache: lock %s: %w", path, err)
		}
		if !told && waiting != nil {
			waiting()
			told = true
		}
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, fmt.Errorf("cache: lock %s: %w", path, ctx.Err())
		case <-t.C:
		}
		poll = min(2*poll, 200*time.Millisecond)
	}
}

var reName = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9._-]*$`)

// checkName keeps entries inside the root and their names free of glob
// characters (stale temporaries are found by a pattern built from the key).
func checkName(kind, key string) error {
	if !reName.MatchString(key) {
		return fmt.Errorf("cache: key %q: want letters, digits and ._- not starting with a dot", key)
	}
	for _, part := range strings.Split(kind, "/") {
		if !reName.MatchString(part) {
			return fmt.Errorf("cache: kind %q: want /-separated names of letters, digits and ._- not starting with a dot", kind)
		}
	}
	return nil
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}
