// Package cache holds the pieces every stage uses to keep work it has done:
// where the cache lives and a cross-process lock.
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
