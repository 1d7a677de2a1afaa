package kbuild

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/fwbuild/fwbuild/internal/atomicfile"
	"github.com/fwbuild/fwbuild/internal/cache"
)

// ensureSource returns the kernel tree extracted from tarball, extracting it into
// <cache>/src/<sum>/ on first use. The tree is shared by all builds of that source and is
// never written to: builds use make O=.
func ensureSource(ctx context.Context, d *cache.Dir, tarball, sum string) (string, error) {
	var buildErr error
	e, err := d.Entry(ctx, "src", sum, func(tmp string) error {
		buildErr = extract(ctx, tarball, sum, tmp)
		if buildErr == nil {
			if _, err := topDir(tmp); err != nil {
				buildErr = fmt.Errorf("kbuild: %s: %w", tarball, err)
			}
		}
		return buildErr
	})
	if err != nil {
		if err != buildErr {
			err = fmt.Errorf("kbuild: source cache: %w", err)
		}
		return "", err
	}
	return topDir(e.Path)
}

// extract unpacks tarball into dir with tar(1) (xz decompression in Go is several times
// slower) while hashing the bytes tar reads, and checks them against sum. tar keeps the
// archive's mtimes, so the tree is the same on every machine.
func extract(ctx context.Context, tarball, sum, dir string) error {
	f, err := os.Open(tarball)
	if err != nil {
		return fmt.Errorf("kbuild: kernel source: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	cmd := exec.CommandContext(ctx, "tar", "-xJf", "-", "--no-same-owner", "-C", dir)
	cmd.Stdin = io.TeeReader(f, h)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "LC_ALL=C"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("kbuild: extract %s: %w", tarball, ctx.Err())
		}
		return fmt.Errorf("kbuild: extract %s: %w: %s", tarball, err, out)
	}
	// tar may stop before trailing padding: hash what it did not read too.
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("kbuild: kernel source: %w", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sum {
		return fmt.Errorf("kbuild: kernel source %s has sha256 %s, want %s (Spec.SourceSHA256): wrong or corrupt file", tarball, got, sum)
	}
	return nil
}

// topDir returns the single directory a kernel tarball unpacks to.
func topDir(dir string) (string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	if len(ents) != 1 || !ents[0].IsDir() {
		return "", fmt.Errorf("want exactly one top-level directory in the kernel source archive, found %d entries", len(ents))
	}
	top := filepath.Join(dir, ents[0].Name())
	if !exists(filepath.Join(top, "Makefile")) {
		return "", fmt.Errorf("%s has no Makefile: not a kernel source tree", top)
	}
	return top, nil
}

// sourceSum returns the tarball's SHA-256, remembering it in the cache under the file's
// identity (path, size, mtime, inode) so that a cache hit does not re-read 140 MB.
func sourceSum(cacheDir, tarball string) (string, error) {
	abs, err := filepath.Abs(tarball)
	if err != nil {
		return "", err
	}
	st, err := os.Stat(abs)
	if err != nil {
		return "", err
	}
	var ino uint64
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		ino = sys.Ino
	}
	id := sha256.Sum256([]byte(fmt.Sprintf("%s\x00%d\x00%d\x00%d", abs, st.Size(), st.ModTime().UnixNano(), ino)))
	memo := filepath.Join(cacheDir, "src", "sums", hex.EncodeToString(id[:]))
	if b, err := os.ReadFile(memo); err == nil && reSHA256.Match(b) {
		return string(b), nil
	}
	sum, err := hashFile(abs)
	if err != nil {
		return "", err
	}
	// The memo is an optimisation: failing to write it is not an error.
	if os.MkdirAll(filepath.Dir(memo), 0o755) == nil {
		atomicfile.WriteFile(memo, []byte(sum), 0o644)
	}
	return sum, nil
}
