package qemutests_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/fwbuild/fwbuild/boardcfg"
	"github.com/fwbuild/fwbuild/internal/pipeline"
	"github.com/fwbuild/fwbuild/internal/testdeps"
)

// flashBuild is a board built for an SPI-path boot test, with the flash
// payload's bytes and the SHA-256 the launcher pins.
type flashBuild struct {
	board   *boardcfg.Board
	out     string
	comps   pipeline.Components
	payload []byte
	pinned  string
}

func buildForFlash(t *testing.T, name string) flashBuild {
	t.Helper()
	root := testdeps.RepoRoot(t)
	b := testdeps.Board(t, name)
	cacheDir := testdeps.CacheDir(t)
	out := t.TempDir()
	ctx := context.Background()
	if _, err := pipeline.Build(ctx, pipeline.Options{Board: b, BoardsDir: filepath.Join(root, "boards"), CacheDir: cacheDir, OutDir: out}); err != nil {
		t.Fatalf("build %s: %v", name, err)
	}
	comps, err := pipeline.Fetch(ctx, b, cacheDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := os.ReadFile(filepath.Join(out, "payload-flash.efi"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(payload)
	return flashBuild{board: b, out: out, comps: comps, payload: payload, pinned: hex.EncodeToString(sum[:])}
}
