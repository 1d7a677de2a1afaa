package cache

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Entries are never changed, but they pile up: every edit of a profile or of
// fwbuild itself makes new keys for the stages it touches, and a stage entry
// holds whole disk images. So the cache keeps a size limit, least recently
// used first, as ccache and Go's build cache do. An entry's last use is the
// mtime of its lock file, which a claim touches on every hit (the entry's
// own times belong to its manifest's fingerprints).

// Usage is one entry's size and last use.
type Usage struct {
	Kind, Key string
	Path      string
	Bytes     int64
	LastUsed  time.Time
}

// PruneOptions says what Prune may remove.
type PruneOptions struct {
	// MaxBytes is the size the cache is brought down to.
	MaxBytes int64
	// MinAge protects entries used more recently than this: a build that
	// runs now may be reading them (a hit takes no lock).
	MinAge time.Duration
	// DryRun lists what would go without removing it.
	DryRun bool
}

// PruneResult says what Prune did.
type PruneResult struct {
	Before, After int64   // bytes in entries
	Removed       []Usage // oldest first
	// Kept is set when MaxBytes could not be reached without removing
	// entries that are in use or newer than MinAge.
	Kept bool
}

// touch records a hit's use (see Prune); a failure only makes the entry
// look older than it is.
func touch(entry string) {
	now := time.Now()
	if err := os.Chtimes(entry+".lock", now, now); errors.Is(err, fs.ErrNotExist) {
		if f, err := os.OpenFile(entry+".lock", os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			f.Close()
		}
	}
}

// Usage lists the cache's entries, least recently used first. A kind is a
// directory with lock files in it (every claim creates one beside its
// entry); its entries are its other names but for temporaries and beside
// manifests. An entry without a lock (packages fetched in one batch under
// the kind's lock) counts its own mtime as its last use.
func (d *Dir) Usage(ctx context.Context) ([]Usage, error) {
	var out []Usage
	err := filepath.WalkDir(d.root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !de.IsDir() || p == d.root {
			return nil
		}
		if strings.HasPrefix(de.Name(), ".") {
			return fs.SkipDir // a temporary: its builder holds the lock
		}
		names, err := os.ReadDir(p)
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(names, func(n fs.DirEntry) bool { return strings.HasSuffix(n.Name(), ".lock") }) {
			return nil // not a kind: walk on into it
		}
		kind, _ := filepath.Rel(d.root, p)
		for _, n := range names {
			name := n.Name()
			if strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".lock") || strings.HasSuffix(name, ManifestName) {
				continue
			}
			entry := filepath.Join(p, name)
			u := Usage{Kind: filepath.ToSlash(kind), Key: name, Path: entry}
			info, err := os.Stat(entry + ".lock")
			if err != nil {
				info, err = n.Info()
			}
			if err != nil {
				continue // gone meanwhile
			}
			u.LastUsed = info.ModTime()
			if u.Bytes, err = diskUsage(entry); err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				return err
			}
			if b, err := diskUsage(manifestFile(entry, true)); err == nil {
				u.Bytes += b
			}
			out = append(out, u)
		}
		return fs.SkipDir // entries are not walked into
	})
	if err != nil {
		return nil, fmt.Errorf("cache: usage of %s: %w", d.root, err)
	}
	slices.SortFunc(out, func(a, b Usage) int {
		if c := a.LastUsed.Compare(b.LastUsed); c != 0 {
			return c
		}
		return strings.Compare(a.Path, b.Path)
	})
	return out, nil
}

// diskUsage is the space p's files take (allocated blocks: disk images are
// sparse).
func diskUsage(p string) (int64, error) {
	var n int64
	err := filepath.WalkDir(p, func(q string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := de.Info()
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			n += st.Blocks * 512
		} else {
			n += info.Size()
		}
		return nil
	})
	return n, err
}

// Prune removes the least recently used entries until the cache's entries
// take at most o.MaxBytes. An entry is removed only under its lock (so never
// while it is being built) and renamed aside first (so no reader finds half
// of it); one used within o.MinAge is kept.
func (d *Dir) Prune(ctx context.Context, o PruneOptions) (PruneResult, error) {
	us, err := d.Usage(ctx)
	if err != nil {
		return PruneResult{}, err
	}
	var res PruneResult
	for _, u := range us {
		res.Before += u.Bytes
	}
	res.After = res.Before
	cutoff := time.Now().Add(-o.MinAge)
	for _, u := range us {
		if res.After <= o.MaxBytes {
			break
		}
		if ctx.Err() != nil {
			return res, fmt.Errorf("cache: prune: %w", ctx.Err())
		}
		if u.LastUsed.After(cutoff) {
			res.Kept = true
			break // the rest are newer still
		}
		if !o.DryRun {
			removed, err := d.remove(u)
			if err != nil {
				return res, err
			}
			if !removed {
				res.Kept = true
				continue
			}
		}
		res.After -= u.Bytes
		res.Removed = append(res.Removed, u)
	}
	return res, nil
}

// remove deletes one entry if its lock is free; false means it was busy or
// used after Usage read it.
func (d *Dir) remove(u Usage) (bool, error) {
	_, err := os.Stat(u.Path + ".lock")
	hadLock := err == nil
	f, err := os.OpenFile(u.Path+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return false, fmt.Errorf("cache: prune: %w", err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return false, nil
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	if info, err := f.Stat(); err != nil || (hadLock && info.ModTime().After(u.LastUsed)) {
		return false, nil
	}
	if err := discard(u.Path, u.Key, manifestFile(u.Path, true)); err != nil {
		return false, fmt.Errorf("cache: prune %s: %w; delete it by hand: rm -rf %s", u.Path, err, u.Path)
	}
	return true, nil
}
