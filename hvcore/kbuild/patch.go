package kbuild

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/fwbuild/fwbuild/internal/atomicfile"
)

// patchKeys names each patch by its file name and content hash, in order:
// what the key holds of them.
func patchKeys(patches []string) ([]string, error) {
	var keys []string
	for _, p := range patches {
		sum, _, err := atomicfile.HashFile(p)
		if err != nil {
			return nil, fmt.Errorf("kbuild: patch: %w", err)
		}
		keys = append(keys, filepath.Base(p)+" "+sum)
	}
	return keys, nil
}

// patchedTree makes dst a copy of the pristine source tree src with patches
// applied in order (patch -p1). The copy is hard links (seconds for the
// kernel's 80,000 files, almost no disk); every file a patch touches is
// copied first, so the cached pristine tree other builds share never
// changes.
func patchedTree(ctx context.Context, src, dst string, patches []string) error {
	if _, err := exec.LookPath("patch"); err != nil {
		return fmt.Errorf("kbuild: kernel patches need the patch tool (apt-get install patch): %w", err)
	}
	if out, err := exec.CommandContext(ctx, "cp", "-al", src, dst).CombinedOutput(); err != nil {
		return fmt.Errorf("kbuild: link a copy of the kernel source: %w: %s", err, bytes.TrimSpace(out))
	}
	for _, p := range patches {
		files, err := patchTargets(p)
		if err != nil {
			return err
		}
		for _, f := range files {
			if err := unlinkCopy(filepath.Join(dst, f)); err != nil {
				return fmt.Errorf("kbuild: patch %s: %w", filepath.Base(p), err)
			}
		}
		// No fuzz: a patch applies exactly where its context says, or fails.
		cmd := exec.CommandContext(ctx, "patch", "-p1", "--forward", "--batch", "--fuzz=0", "--no-backup-if-mismatch", "-d", dst, "-i", p)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("kbuild: patch %s does not apply to the kernel source (%s): %w\n%s", p, filepath.Base(src), err, bytes.TrimSpace(out))
		}
	}
	return nil
}

// patchTargets lists the files a unified diff changes, as -p1 names them
// (its "+++ b/path" lines).
func patchTargets(p string) ([]string, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("kbuild: patch: %w", err)
	}
	defer f.Close()
	var files []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "+++ ")
		if !ok {
			continue
		}
		name, _, _ := strings.Cut(line, "\t")
		_, rel, ok := strings.Cut(name, "/")
		if !ok || name == "/dev/null" || !filepath.IsLocal(rel) {
			return nil, fmt.Errorf("kbuild: patch %s: %q is not a path inside the source tree (want a -p1 diff: +++ b/<path>)", p, name)
		}
		files = append(files, rel)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("kbuild: patch %s: %w", p, err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("kbuild: patch %s changes no file (want a unified diff)", p)
	}
	return files, nil
}

// unlinkCopy replaces a hard link with a copy of its own (written beside it
// and renamed over the link); a file that does not exist yet (a patch
// creating it) is left to patch.
func unlinkCopy(p string) error {
	in, err := os.Open(p)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	return atomicfile.Write(p, st.Mode().Perm(), func(f *os.File) error {
		_, err := io.Copy(f, in)
		return err
	})
}
