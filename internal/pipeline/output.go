package pipeline

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/fwbuild/fwbuild/internal/buildrecord"

	"golang.org/x/sys/unix"

	"github.com/fwbuild/fwbuild/internal/atomicfile"
	"github.com/fwbuild/fwbuild/internal/progress"
)

// Publishing: what "atomic" means for a set of files in a directory the user
// owns (it may be a mount point, hold the user's own files, be someone's cwd,
// so it is never replaced as a whole).
//
//  1. Every artefact whose bytes differ from what the directory holds is
//     copied next to its final name (".fwbuild-stage-*"), synced and its
//     hash checked. A full file system, an I/O error or Ctrl-C fails here,
//     the staged files are removed, and nothing visible has changed.
//  2. The commit point is writing the journal (.fwbuild-publish.json, itself
//     atomic): the list of renames and removals that turn the directory into
//     the new build. Cancellation is honoured up to here and not after it,
//     because stopping half way would leave a mixed directory.
//  3. The renames run (SHA256SUMS last, so a reader racing them sees its
//     check fail rather than pass on a mix), old fwbuild artefacts the new
//     build lacks are removed, the journal goes. Renames in one directory
//     allocate nothing, so a full disk cannot stop them; after a crash the
//     next fwbuild run replays the journal before anything else.
//
// Only names fwbuild published (the state file lists them) are ever
// replaced or removed; the user's other files stay.

// Artefact is one file of the build's output directory.
type Artefact struct {
	buildrecord.Output
	src string // where the build left it (a stage's cache directory)
}

// outRecord is what fwbuild published under a name.
type outRecord struct {
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// Data fingerprints the file as published: SHA-256 over its data
	// extents (SEEK_DATA/SEEK_HOLE), each with its offset and length. Holes
	// read as zeros, so an equal fingerprint proves equal content while
	// reading only the data: 40 MB of a 4 GiB sparse usb.img, not 4 GiB.
	Data string `json:"data,omitempty"`
}

// outState lists the files fwbuild published into a directory and says
// which are fwbuild's to replace or remove. Size and mtime never prove a
// file unchanged (corruption in place keeps both): every build checks the
// content of what the directory holds, by the data fingerprint or, when
// the file system laid it out anew, by its full SHA-256.
type outState map[string]outRecord

const (
	stateFile   = ".fwbuild-state.json"
	journalFile = ".fwbuild-publish.json"
	stagePrefix = ".fwbuild-stage-"
)

// journal is a committed publish: the renames (staged name -> final name,
// in order) and removals that complete it.
type journal struct {
	Renames []journalRename `json:"renames"`
	Remove  []string        `json:"remove,omitempty"`
}

type journalRename struct {
	From string `json:"from"` // a staged file in the directory
	To   string `json:"to"`
}

func readState(outDir string) outState {
	s := outState{}
	if b, err := os.ReadFile(filepath.Join(outDir, stateFile)); err == nil {
		json.Unmarshal(b, &s) // a damaged state file only means fewer names are known to be ours
	}
	return s
}

// checkOutDir refuses an output directory the build could not publish into,
// before the first stage runs: a bad --out must not cost a full build. It
// creates nothing (a failed build leaves no empty directory behind), and
// completes a publish a crash interrupted, so the directory is one whole build
// again.
func checkOutDir(outDir, cacheDir string) error {
	if outDir == "" {
		return errors.New("output: no output directory given")
	}
	abs, err := filepath.Abs(outDir)
	if err != nil {
		return fmt.Errorf("output directory %s: %w", outDir, err)
	}
	// The nearest existing directory at or above abs: where the probe goes.
	probeDir := abs
	st, err := os.Lstat(abs)
	switch {
	case err == nil && st.Mode()&fs.ModeSymlink != 0:
		target, _ := os.Readlink(abs)
		resolved := target
		if !filepath.IsAbs(resolved) {
			resolved = filepath.Join(filepath.Dir(abs), resolved)
		}
		tst, err := os.Stat(abs)
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("output directory %s is a dangling symlink to %s: create %s or point --out elsewhere", outDir, target, resolved)
		}
		if err != nil {
			return fmt.Errorf("output directory %s (a symlink to %s): %w", outDir, target, err)
		}
		if !tst.IsDir() {
			return fmt.Errorf("output directory %s is a symlink to %s, which is not a directory: point --out at a directory", outDir, target)
		}
	case err == nil && !st.IsDir():
		return fmt.Errorf("output directory %s exists and is not a directory (%s): remove it or choose another --out", outDir, st.Mode().Type())
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, unix.ENOTDIR):
		for {
			parent := filepath.Dir(probeDir)
			if parent == probeDir {
				break
			}
			probeDir = parent
			pst, err := os.Stat(probeDir)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return fmt.Errorf("cannot create output directory %s: %w", outDir, err)
			}
			if !pst.IsDir() {
				return fmt.Errorf("cannot create output directory %s: %s is not a directory", outDir, probeDir)
			}
			break
		}
	case err != nil:
		return fmt.Errorf("output directory %s: %w", outDir, err)
	}
	if cacheDir != "" {
		if inside, cache := within(abs, cacheDir); inside {
			return fmt.Errorf("output directory %s is inside the cache %s, which fwbuild prunes and rewrites: choose an --out outside it", outDir, cache)
		}
	}
	probe, err := os.MkdirTemp(probeDir, ".fwbuild-probe-*")
	if err != nil {
		if probeDir == abs {
			return fmt.Errorf("output directory %s is not writable: %w: fix its permissions or choose another --out", outDir, err)
		}
		return fmt.Errorf("cannot create output directory %s: %s is not writable: %w: choose another --out", outDir, probeDir, err)
	}
	os.Remove(probe)
	if probeDir == abs {
		if err := recoverPublish(abs); err != nil {
			return err
		}
	}
	return nil
}

// within says whether p is dir or below it, comparing real paths (symlinks
// resolved as far as the paths exist); it returns dir's real path.
func within(p, dir string) (bool, string) {
	rp, rd := realPath(p), realPath(dir)
	return rp == rd || strings.HasPrefix(rp, rd+string(filepath.Separator)), rd
}

// realPath resolves symlinks in the longest existing prefix of p.
func realPath(p string) string {
	p, _ = filepath.Abs(p)
	var rest []string
	for {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Join(append([]string{r}, rest...)...)
		}
		parent := filepath.Dir(p)
		if parent == p {
			return filepath.Join(append([]string{p}, rest...)...)
		}
		rest = append([]string{filepath.Base(p)}, rest...)
		p = parent
	}
}

// recoverPublish finishes a publish whose journal a crash left behind, and
// removes files staged by one that never reached its commit point.
func recoverPublish(outDir string) error {
	b, err := os.ReadFile(filepath.Join(outDir, journalFile))
	switch {
	case err == nil:
		var j journal
		if err := json.Unmarshal(b, &j); err != nil {
			return fmt.Errorf("output: %s: %v: an interrupted publish cannot be completed; remove the directory's fwbuild files and rebuild", filepath.Join(outDir, journalFile), err)
		}
		if err := j.apply(outDir, nil); err != nil {
			return fmt.Errorf("output: completing an interrupted publish in %s: %w", outDir, err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("output: %w", err)
	}
	// Staged files, and a journal or state file half written by atomicfile.
	staged, _ := filepath.Glob(filepath.Join(outDir, stagePrefix+"*"))
	for _, pat := range []string{journalFile, stateFile} {
		m, _ := filepath.Glob(filepath.Join(outDir, "."+pat+".tmp-*")) // atomicfile's temp name
		staged = append(staged, m...)
	}
	for _, p := range staged {
		os.Remove(p)
	}
	return nil
}

// apply performs a committed journal. It is idempotent: a rename whose
// staged file is gone was done by an earlier, interrupted run.
func (j journal) apply(outDir string, hook func(string)) error {
	for _, r := range j.Renames {
		if hook != nil {
			hook("publish: rename " + r.To)
		}
		err := os.Rename(filepath.Join(outDir, r.From), filepath.Join(outDir, r.To))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	for _, n := range j.Remove {
		if err := os.Remove(filepath.Join(outDir, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if err := syncDir(outDir); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(outDir, journalFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return syncDir(outDir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// publish makes outDir hold exactly arts (see the top of this file for
// what is atomic about it) and returns the names it wrote. Files already
// holding the right bytes are not rewritten; a no-op touches nothing.
func publish(ctx context.Context, outDir string, arts []Artefact, hook func(string)) (written []string, err error) {
	if hook == nil {
		hook = func(string) {}
	}
	_, statErr := os.Stat(outDir)
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, fmt.Errorf("output: %w", err)
	}
	if errors.Is(statErr, fs.ErrNotExist) {
		// A build that fails from here on leaves no empty directory either.
		defer func() {
			if err != nil {
				os.Remove(outDir)
			}
		}()
	}
	if err := recoverPublish(outDir); err != nil {
		return nil, err
	}

	old := readState(outDir)
	state := outState{}
	var changed []Artefact
	for _, a := range arts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		rec, known := old[a.Name]
		same, fp, err := holds(ctx, filepath.Join(outDir, a.Name), a, rec, known)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("output: %w", err)
		}
		state[a.Name] = outRecord{Size: a.Size, SHA256: a.SHA256, Data: fp}
		if !same {
			changed = append(changed, a)
		}
	}
	// Artefacts of an earlier build this one lacks (say a full build after
	// --only kernel's bzImage) go, unless the user has since replaced them.
	var stale []string
	for name, rec := range old {
		if _, ok := state[name]; ok || name != filepath.Base(name) || strings.HasPrefix(name, ".") {
			continue
		}
		if same, _, err := holds(ctx, filepath.Join(outDir, name), Artefact{Output: buildrecord.Output{Name: name, Size: rec.Size, SHA256: rec.SHA256}}, rec, true); err == nil && same {
			stale = append(stale, name)
		}
	}
	sort.Strings(stale)
	oldJSON, _ := os.ReadFile(filepath.Join(outDir, stateFile))
	if stateJSON, _ := json.MarshalIndent(state, "", "  "); len(changed) == 0 && len(stale) == 0 && bytes.Equal(oldJSON, stateJSON) {
		return nil, nil // a no-op rebuild touches nothing, not even the state file
	}

	// 1. Stage.
	var j journal
	defer func() {
		if err != nil {
			for _, r := range j.Renames {
				os.Remove(filepath.Join(outDir, r.From))
			}
		}
	}()
	// SHA256SUMS goes last, manifest.json just before it.
	sort.SliceStable(changed, func(i, k int) bool { return publishRank(changed[i].Name) < publishRank(changed[k].Name) })
	for _, a := range changed {
		hook("publish: stage " + a.Name)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		tmp, fp, err := stageArtefact(ctx, outDir, a)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("output: %s: %w", filepath.Join(outDir, a.Name), err)
		}
		rec := state[a.Name]
		rec.Data = fp
		state[a.Name] = rec
		j.Renames = append(j.Renames, journalRename{From: tmp, To: a.Name})
		written = append(written, a.Name)
	}
	if stateJSON, _ := json.MarshalIndent(state, "", "  "); !bytes.Equal(oldJSON, stateJSON) {
		tmp, err := stageBytes(outDir, stateFile, stateJSON)
		if err != nil {
			return nil, fmt.Errorf("output: %w", err)
		}
		j.Renames = append(j.Renames, journalRename{From: tmp, To: stateFile})
	}
	j.Remove = stale

	// 2. Commit.
	hook("publish: commit")
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	jb, _ := json.MarshalIndent(j, "", "  ")
	if err := atomicfile.WriteFile(filepath.Join(outDir, journalFile), jb, 0o644); err != nil {
		return nil, fmt.Errorf("output: %w", err)
	}
	if err := syncDir(outDir); err != nil {
		os.Remove(filepath.Join(outDir, journalFile))
		return nil, fmt.Errorf("output: %w", err)
	}

	// 3. Apply. The staged files now belong to the journal: a failure here
	// leaves them for the next run to complete, so they are not removed.
	committed := j
	j = journal{}
	if err := committed.apply(outDir, hook); err != nil {
		return nil, fmt.Errorf("output: completing the publish in %s failed (the next fwbuild run finishes it): %w", outDir, err)
	}
	return written, nil
}

func publishRank(name string) int {
	switch name {
	case "SHA256SUMS":
		return 2
	case "manifest.json":
		return 1
	}
	return 0
}

// holds says whether p is a regular file with a's content, and returns its
// data fingerprint. rec (if known) is what was published under the name:
// when its fingerprint still matches, only the data extents are read; else
// the whole file is hashed.
func holds(ctx context.Context, p string, a Artefact, rec outRecord, known bool) (bool, string, error) {
	st, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, "", nil
	}
	if err != nil {
		return false, "", err
	}
	if st.IsDir() {
		return false, "", fmt.Errorf("%s is a directory where fwbuild puts an artefact: move it away", p)
	}
	if !st.Mode().IsRegular() || st.Size() != a.Size {
		return false, "", nil // a symlink or device is replaced, never written through
	}
	f, err := os.Open(p)
	if err != nil {
		return false, "", err
	}
	defer f.Close()
	if known && rec.Data != "" && rec.SHA256 == a.SHA256 && rec.Size == a.Size {
		fp := sha256.New()
		if err := sparseCopy(ctx, nil, f, st.Size(), nil, fp); err != nil {
			return false, "", err
		}
		if sum := hex.EncodeToString(fp.Sum(nil)); sum == rec.Data {
			return true, sum, nil
		}
	}
	full, fp := sha256.New(), sha256.New()
	if err := sparseCopy(ctx, nil, f, st.Size(), full, fp); err != nil {
		return false, "", err
	}
	return hex.EncodeToString(full.Sum(nil)) == a.SHA256, hex.EncodeToString(fp.Sum(nil)), nil
}

// progressMin is the artefact size from which publishing it is reported.
const progressMin = 16 << 20

// countingHash reports the bytes hashed (every byte of the artefact, holes
// as zeros) as the progress of its copy.
type countingHash struct {
	hash.Hash
	task progress.Task
}

func (c countingHash) Write(p []byte) (int, error) {
	c.task.Add(int64(len(p)))
	return c.Hash.Write(p)
}

// stageArtefact copies an artefact into a new staged file in outDir, keeping it
// sparse, syncs it and checks its hash; it returns the staged file's name
// and data fingerprint.
func stageArtefact(ctx context.Context, outDir string, a Artefact) (string, string, error) {
	in, err := os.Open(a.src)
	if err != nil {
		return "", "", err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return "", "", err
	}
	f, err := os.CreateTemp(outDir, stagePrefix+a.Name+"-*")
	if err != nil {
		return "", "", err
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	h := sha256.New()
	var full hash.Hash = h
	if st.Size() >= progressMin {
		// The images are the large artefacts: writing them is shown.
		task := progress.Start(ctx, "write "+a.Name, progress.Bytes, st.Size())
		full = countingHash{h, task}
		defer func() { task.Done(ok) }()
	}
	if err := sparseCopy(ctx, f, in, st.Size(), full, nil); err != nil {
		return "", "", err
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != a.SHA256 || st.Size() != a.Size {
		return "", "", fmt.Errorf("the build's copy %s changed while it was published (sha256 %s, %d bytes; want %s, %d): rebuild", a.src, sum, st.Size(), a.SHA256, a.Size)
	}
	if err := f.Chmod(0o644); err != nil {
		return "", "", err
	}
	// Synced before it is fingerprinted: the layout is final then.
	if err := f.Sync(); err != nil {
		return "", "", err
	}
	fp := sha256.New()
	if err := sparseCopy(ctx, nil, f, a.Size, nil, fp); err != nil {
		return "", "", err
	}
	if err := f.Close(); err != nil {
		return "", "", err
	}
	ok = true
	return filepath.Base(f.Name()), hex.EncodeToString(fp.Sum(nil)), nil
}

func stageBytes(outDir, name string, data []byte) (string, error) {
	f, err := os.CreateTemp(outDir, stagePrefix+name+"-*")
	if err != nil {
		return "", err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return filepath.Base(f.Name()), nil
}

const (
	copyChunk = 1 << 20
	zeroBlock = 4096 // the smallest hole a file system keeps
)

var zeros = make([]byte, copyChunk) // read-only

// sparseCopy reads size bytes of in, skipping its holes without reading
// them (SEEK_DATA/SEEK_HOLE). It feeds all of them (holes as zeros) to full,
// each data extent with its offset and length to fp (the data
// fingerprint), and writes them to out, a new empty file, without its
// all-zero blocks: a 4 GiB image with 40 MB of data stays 40 MB on disk,
// however the source was written. Any of out, full and fp may be nil. It
// checks ctx between chunks.
func sparseCopy(ctx context.Context, out, in *os.File, size int64, full, fp hash.Hash) error {
	buf := make([]byte, copyChunk)
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return err
		}
		data, err := in.Seek(off, unix.SEEK_DATA)
		if err != nil {
			if errors.Is(err, unix.ENXIO) {
				data = size // only a hole is left
			} else {
				data = off // no SEEK_DATA here: treat everything as data
			}
		}
		if full != nil {
			for o := off; o < data; o += int64(min(copyChunk, data-o)) { // a hole: zeros, not read
				if err := ctx.Err(); err != nil {
					return err
				}
				full.Write(zeros[:min(copyChunk, data-o)])
			}
		}
		off = data
		if off >= size {
			break
		}
		end, err := in.Seek(off, unix.SEEK_HOLE)
		if err != nil || end > size || end <= off {
			end = size
		}
		if fp != nil {
			fmt.Fprintf(fp, "%d+%d\n", off, end-off)
		}
		for off < end {
			if err := ctx.Err(); err != nil {
				return err
			}
			n := int(min(copyChunk, end-off))
			if _, err := io.ReadFull(io.NewSectionReader(in, off, int64(n)), buf[:n]); err != nil {
				return err
			}
			if full != nil {
				full.Write(buf[:n])
			}
			if fp != nil {
				fp.Write(buf[:n])
			}
			if out != nil {
				if err := writeNonZero(out, buf[:n], off); err != nil {
					return err
				}
			}
			off += int64(n)
		}
	}
	if out != nil {
		return out.Truncate(size) // the trailing hole, if any
	}
	return nil
}

// writeNonZero writes b at off, skipping its all-zero blocks.
func writeNonZero(out *os.File, b []byte, off int64) error {
	for i := 0; i < len(b); {
		if j := min(i+zeroBlock, len(b)); bytes.Equal(b[i:j], zeros[:j-i]) {
			i = j
			continue
		}
		k := i
		for k < len(b) {
			j := min(k+zeroBlock, len(b))
			if bytes.Equal(b[k:j], zeros[:j-k]) {
				break
			}
			k = j
		}
		if _, err := out.WriteAt(b[i:k], off+int64(i)); err != nil {
			return err
		}
		i = k
	}
	return nil
}

// sha256sums is SHA256SUMS for the artefacts.
func sha256sums(arts []Artefact) []byte {
	outs := make([]buildrecord.Output, len(arts))
	for i, a := range arts {
		outs[i] = a.Output
	}
	return buildrecord.SHA256SUMS(outs)
}
