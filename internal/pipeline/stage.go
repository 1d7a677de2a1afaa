package pipeline

import (
	"context"
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
func (r stageResult) entry() string   { return r.Dir }

func (r stageResult) path(name string) string { return filepath.Join(r.Dir, name) }

func (r stageResult) read(name string) ([]byte, error) {
	b, err := os.ReadFile(r.path(name))
	if err != nil {
		return nil, fmt.Errorf("cached stage output: %w", err)
	}
	return b, nil
}

// stage returns <cache>/stages/<name>/<k>, running produce into a fresh
// directory that becomes the entry when produce succeeds (cache.Dir.Entry).
// A hit is checked in full against the SHA-256 of every file recorded when
// it was built (tens of MB: tens of ms), and a damaged one is built again
// with a warning, so neither later stages nor the manifest see it. A wait
// for another fwbuild building the same stage ends with ctx.
func (r *run) stage(ctx context.Context, name, k string, produce func(dir string) error) (stageResult, error) {
	start := time.Now()
	d, err := cache.Open(r.CacheDir)
	if err != nil {
		return stageResult{}, fmt.Errorf("%s: %w", name, err)
	}
	d = d.WithLog(r.log()).WithWaiting(func(string, string) {
		r.log().Info("waiting for another fwbuild building the same stage", "stage", name, "key", k[:12])
	})
	var produceErr error
	e, err := d.Entry(ctx, "stages/"+name, k, func(tmp string) error {
		if produceErr = produce(tmp); produceErr != nil {
			return produceErr
		}
		// The entry needs no marker (it appears by rename, complete), but an
		// older fwbuild sharing the cache takes a stage directory without
		// .done for a half-built one and deletes it.
		if err := os.WriteFile(filepath.Join(tmp, ".done"), nil, 0o644); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	})
	if err != nil {
		if err == produceErr {
			return stageResult{}, err // the stage's own error, worded by it
		}
		return stageResult{}, fmt.Errorf("%s: %w", name, err)
	}
	return stageResult{Dir: e.Path, Key: k, Cached: e.Hit, Took: time.Since(start)}, nil
}
