package pipeline

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/fwbuild/fwbuild/boards"
)

// materializeBuiltin writes the embedded boards into the cache under their
// content hash: profiles reference fragment files by path, so they need a
// real directory, and a hash-named one never needs updating in place.
func materializeBuiltin(cacheDir string) (string, error) {
	h := sha256.New()
	var files []string
	err := fs.WalkDir(boards.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(boards.FS, p)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", p, len(data))
		h.Write(data)
		files = append(files, p)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("built-in boards: %w", err)
	}
	dir := filepath.Join(cacheDir, "boards", hex.EncodeToString(h.Sum(nil))[:16])
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", fmt.Errorf("built-in boards: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".boards-")
	if err != nil {
		return "", fmt.Errorf("built-in boards: %w", err)
	}
	for _, p := range files {
		data, _ := fs.ReadFile(boards.FS, p)
		dst := filepath.Join(tmp, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			return "", fmt.Errorf("built-in boards: %w", err)
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		os.RemoveAll(tmp)
		if _, statErr := os.Stat(dir); statErr == nil { // another process won the race
			return dir, nil
		}
		return "", fmt.Errorf("built-in boards: %w", err)
	}
	return dir, nil
}
