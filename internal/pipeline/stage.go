package pipeline

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/fwbuild/fwbuild/internal/cache"
)

// key hashes a stage's inputs. Parts are length-prefixed so that ("ab","c")
// and ("a","bc") differ.
func key(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:", len(p))
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))
}

func jsonKey(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("pipeline: key of %T: %v", v, err)) // only plain structs are hashed
	}
	return string(b)
}

// stageResult is a stage's cached output directory.
type stageResult struct {
	Dir    string
	Key    string
	Cached bool
	Took   time.Duration
}

func (r stageResult) fromCache() bool { return r.Cached }

func (r stageResult) path(name string) string { return filepath.Join(r.Dir, name) }

func (r stageResult) read(name string) ([]byte, error) {
	b, err := os.ReadFile(r.path(name))
	if err != nil {
		return nil, fmt.Errorf("cached stage output: %w", err)
	}
	return b, nil
}

// stage returns <cache>/stages/<name>/<key>, running produce into a fresh
// directory and renaming it into place when the key has no result yet. A
// crashed or cancelled produce leaves only a temp directory that the next
// run ignores (and cleans).
func stage(cacheDir, name, k string, produce func(dir string) error) (stageResult, error) {
	start := time.Now()
	dir := filepath.Join(cacheDir, "stages", name, k)
	if _, err := os.Stat(filepath.Join(dir, ".done")); err == nil {
		return stageResult{Dir: dir, Key: k, Cached: true, Took: time.Since(start)}, nil
	}
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return stageResult{}, fmt.Errorf("%s: %w", name, err)
	}
	unlock, err := cache.Lock(filepath.Join(parent, k+".lock"))
	if err != nil {
		return stageResult{}, fmt.Errorf("%s: %w", name, err)
	}
	defer unlock()
	if _, err := os.Stat(filepath.Join(dir, ".done")); err == nil { // built while we waited
		return stageResult{Dir: dir, Key: k, Cached: true, Took: time.Since(start)}, nil
	}
	os.RemoveAll(dir)
	tmp, err := os.MkdirTemp(parent, "."+k[:12]+".tmp-")
	if err != nil {
		return stageResult{}, fmt.Errorf("%s: %w", name, err)
	}
	if err := produce(tmp); err != nil {
		os.RemoveAll(tmp)
		return stageResult{}, err
	}
	if err := os.WriteFile(filepath.Join(tmp, ".done"), nil, 0o644); err != nil {
		os.RemoveAll(tmp)
		return stageResult{}, fmt.Errorf("%s: %w", name, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		os.RemoveAll(tmp)
		return stageResult{}, fmt.Errorf("%s: %w", name, err)
	}
	return stageResult{Dir: dir, Key: k, Took: time.Since(start)}, nil
}
