// Package cache holds the pieces every stage uses to keep work it has done:
// where the cache lives, a cross-process lock, and writes that never leave a
// half-written file under the final name.
package cache

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
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

// Lock takes an exclusive advisory lock on path (created if needed), waiting
// for other processes that hold it; the returned func releases it.
func Lock(path string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("cache: lock %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cache: lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("cache: lock %s: %w", path, err)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// WriteFile writes data to a temporary file next to path, syncs it and
// renames it into place, so readers see the old file or the new one, never a part.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
