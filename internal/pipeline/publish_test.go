package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/internal/buildrecord"
)

// artSet writes files (plus SHA256SUMS listing them, and a manifest.json)
// into a fresh source directory standing in for the stage cache.
func artSet(t *testing.T, files map[string][]byte) []Artefact {
	t.Helper()
	src := t.TempDir()
	var arts []Artefact
	add := func(name string, data []byte) {
		p := filepath.Join(src, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		arts = append(arts, Artefact{Output: buildrecord.Output{Name: name, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}, src: p})
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		add(n, files[n])
	}
	add("manifest.json", []byte(`{"files":"`+strings.Join(names, ",")+`"}`))
	add("SHA256SUMS", []byte(sha256sums(arts)))
	return arts
}

func randBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// dirState is every entry of dir with its content hash, mode and mtime.
func dirState(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		st, _ := os.Lstat(p)
		data, _ := os.ReadFile(p)
		sum := sha256.Sum256(data)
		m[e.Name()] = hex.EncodeToString(sum[:8]) + " " + st.Mode().String() + " " + st.ModTime().String()
	}
	return m
}

func sameState(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	if len(before) != len(after) {
		t.Errorf("%s: entries changed:\nbefore %v\nafter  %v", what, keys(before), keys(after))
		return
	}
	for n, s := range before {
		if after[n] != s {
			t.Errorf("%s: %s changed", what, n)
		}
	}
}

func keys(m map[string]string) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	sort.Strings(k)
	return k
}

func sha256sumCheck(t *testing.T, dir string) {
	t.Helper()
	cmd := exec.Command("sha256sum", "--strict", "-c", "SHA256SUMS")
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("sha256sum -c SHA256SUMS in %s: %v\n%s", dir, err, b)
	}
}

func noStaged(t *testing.T, dir string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), stagePrefix) || e.Name() == journalFile || strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("publish left %s behind", e.Name())
		}
	}
}

// mountTmpfs mounts a size-limited tmpfs (the tests run as root, as CI does).
func mountTmpfs(t *testing.T, opts string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "mnt")
	os.MkdirAll(dir, 0o755)
	if b, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "fwbuild-test", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount -o %s a tmpfs (needs root): %v\n%s", opts, err, b)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	return dir
}

// The file system fills after the first new artefact: the directory keeps
// the previous build, whole. (Renaming each file as it is copied left
// a.bin new and b.bin old, and sha256sum -c failed.)
func TestPublishFullFileSystemKeepsPreviousBuild(t *testing.T) {
	out := mountTmpfs(t, "size=8m")
	prev := artSet(t, map[string][]byte{"a.bin": randBytes(1<<20, 1), "b.bin": randBytes(1<<20, 2)})
	if _, err := publish(context.Background(), out, prev, nil); err != nil {
		t.Fatal(err)
	}
	sha256sumCheck(t, out)
	before := dirState(t, out)
	// 1 MiB fits, the 7 MiB after it does not (6 MiB are free).
	next := artSet(t, map[string][]byte{"a.bin": randBytes(1<<20, 3), "b.bin": randBytes(7<<20, 4)})
	_, err := publish(context.Background(), out, next, nil)
	if err == nil || !strings.Contains(err.Error(), "no space left") || !strings.Contains(err.Error(), "b.bin") {
		t.Fatalf("err = %v, want no space left naming b.bin", err)
	}
	sameState(t, "full file system", before, dirState(t, out))
	sha256sumCheck(t, out)
	noStaged(t, out)
}

// A crash while the renames run (after the commit point) leaves a journal;
// the next run completes it, so the directory is the new build, whole.
func TestPublishCrashMidRenameCompletes(t *testing.T) {
	out := t.TempDir()
	prev := artSet(t, map[string][]byte{"a.bin": []byte("a1"), "b.bin": []byte("b1"), "c.bin": []byte("c1")})
	if _, err := publish(context.Background(), out, prev, nil); err != nil {
		t.Fatal(err)
	}
	next := artSet(t, map[string][]byte{"a.bin": []byte("a2"), "b.bin": []byte("b2")}) // c.bin goes
	func() {
		defer func() {
			if r := recover(); r != "crash" {
				t.Fatalf("recovered %v", r)
			}
		}()
		publish(context.Background(), out, next, func(p string) {
			if p == "publish: rename b.bin" {
				panic("crash")
			}
		})
	}()
	if _, err := os.Stat(filepath.Join(out, journalFile)); err != nil {
		t.Fatalf("no journal after a crash mid-rename: %v", err)
	}
	// Any later build (even one that fails in a stage) starts with checkOutDir.
	if err := checkOutDir(out, ""); err != nil {
		t.Fatal(err)
	}
	sha256sumCheck(t, out)
	noStaged(t, out)
	for n, want := range map[string]string{"a.bin": "a2", "b.bin": "b2"} {
		if b, _ := os.ReadFile(filepath.Join(out, n)); string(b) != want {
			t.Errorf("%s = %q, want %q", n, b, want)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "c.bin")); err == nil {
		t.Error("c.bin of the previous build stayed")
	}
	// A crash before the commit point leaves staged files only: they go.
	os.WriteFile(filepath.Join(out, stagePrefix+"a.bin-123"), []byte("half"), 0o644)
	os.WriteFile(filepath.Join(out, "."+journalFile+".tmp-456"), []byte("{"), 0o644)
	if err := checkOutDir(out, ""); err != nil {
		t.Fatal(err)
	}
	noStaged(t, out)
}

// Cancellation before the commit point changes nothing; a cancelled
// publish never publishes.
func TestPublishCancelled(t *testing.T) {
	for _, point := range []string{"publish: stage a.bin", "publish: stage b.bin", "publish: stage SHA256SUMS", "publish: commit"} {
		t.Run(point, func(t *testing.T) {
			out := t.TempDir()
			prev := artSet(t, map[string][]byte{"a.bin": []byte("a1"), "b.bin": []byte("b1")})
			if _, err := publish(context.Background(), out, prev, nil); err != nil {
				t.Fatal(err)
			}
			before := dirState(t, out)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			next := artSet(t, map[string][]byte{"a.bin": []byte("a2"), "b.bin": []byte("b2")})
			_, err := publish(ctx, out, next, func(p string) {
				if p == point {
					cancel()
				}
			})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled", err)
			}
			sameState(t, "cancelled publish", before, dirState(t, out))
			noStaged(t, out)
		})
	}
}

// An artefact damaged in place keeps its size and mtime: the next build
// must still see it and rewrite it, and leave the intact ones alone.
func TestPublishRepairsCorruptedArtefacts(t *testing.T) {
	cases := map[string]func(t *testing.T, p string){
		"byte flipped, mtime kept": func(t *testing.T, p string) {
			st, _ := os.Stat(p)
			b, _ := os.ReadFile(p)
			b[len(b)/2] ^= 1
			os.WriteFile(p, b, 0o644)
			os.Chtimes(p, st.ModTime(), st.ModTime())
		},
		"deleted": func(t *testing.T, p string) { os.Remove(p) },
		"truncated": func(t *testing.T, p string) {
			os.Truncate(p, 10)
		},
		"replaced by a symlink": func(t *testing.T, p string) {
			target := filepath.Join(t.TempDir(), "elsewhere")
			os.WriteFile(target, []byte("not ours"), 0o644)
			os.Remove(p)
			os.Symlink(target, p)
			t.Cleanup(func() {
				if b, _ := os.ReadFile(target); string(b) != "not ours" {
					t.Error("publish wrote through a symlink")
				}
			})
		},
	}
	for name, damage := range cases {
		t.Run(name, func(t *testing.T) {
			out := t.TempDir()
			arts := artSet(t, map[string][]byte{"a.bin": randBytes(64<<10, 5), "b.bin": randBytes(64<<10, 6)})
			if _, err := publish(context.Background(), out, arts, nil); err != nil {
				t.Fatal(err)
			}
			intact := dirState(t, out)
			damage(t, filepath.Join(out, "a.bin"))
			written, err := publish(context.Background(), out, arts, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(written) != 1 || written[0] != "a.bin" {
				t.Errorf("rewrote %v, want [a.bin]", written)
			}
			sha256sumCheck(t, out)
			after := dirState(t, out)
			delete(intact, "a.bin")
			delete(after, "a.bin")
			sameState(t, "intact artefacts", intact, after)
		})
	}
	t.Run("damaged state file", func(t *testing.T) {
		out := t.TempDir()
		arts := artSet(t, map[string][]byte{"a.bin": []byte("a")})
		publish(context.Background(), out, arts, nil)
		os.WriteFile(filepath.Join(out, stateFile), []byte("{garbage"), 0o644)
		written, err := publish(context.Background(), out, arts, nil)
		if err != nil || len(written) != 0 {
			t.Errorf("written %v, err %v: want nothing rewritten but the state file", written, err)
		}
		if s := readState(out); s["a.bin"].SHA256 != arts[0].SHA256 {
			t.Errorf("state file not repaired: %v", s)
		}
	})
}

// A no-op publish touches nothing, not even the state file.
func TestPublishNoop(t *testing.T) {
	out := t.TempDir()
	arts := artSet(t, map[string][]byte{"a.bin": []byte("a"), "b.bin": []byte("b")})
	if _, err := publish(context.Background(), out, arts, nil); err != nil {
		t.Fatal(err)
	}
	before := dirState(t, out)
	time.Sleep(10 * time.Millisecond)
	written, err := publish(context.Background(), out, arts, nil)
	if err != nil || len(written) != 0 {
		t.Fatalf("no-op publish: written %v, err %v", written, err)
	}
	sameState(t, "no-op publish", before, dirState(t, out))
}

// Artefacts of an earlier build that this one lacks go; the user's own
// files, and artefacts the user replaced, stay.
func TestPublishRemovesStaleArtefactsOnly(t *testing.T) {
	out := t.TempDir()
	os.WriteFile(filepath.Join(out, "notes.txt"), []byte("mine"), 0o644)
	prev := artSet(t, map[string][]byte{"a.bin": []byte("a"), "bzImage": []byte("k"), "old.bin": []byte("o")})
	if _, err := publish(context.Background(), out, prev, nil); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(out, "old.bin"), []byte("edited by the user"), 0o644)
	next := artSet(t, map[string][]byte{"a.bin": []byte("a")})
	if _, err := publish(context.Background(), out, next, nil); err != nil {
		t.Fatal(err)
	}
	sha256sumCheck(t, out)
	if _, err := os.Stat(filepath.Join(out, "bzImage")); err == nil {
		t.Error("the stale bzImage stayed")
	}
	for n, want := range map[string]string{"notes.txt": "mine", "old.bin": "edited by the user"} {
		if b, _ := os.ReadFile(filepath.Join(out, n)); string(b) != want {
			t.Errorf("%s = %q, want %q", n, b, want)
		}
	}
	// A directory in an artefact's place fails before anything changes.
	before := dirState(t, out)
	os.Mkdir(filepath.Join(out, "c.bin"), 0o755)
	before["c.bin"] = dirState(t, out)["c.bin"]
	_, err := publish(context.Background(), out, artSet(t, map[string][]byte{"a.bin": []byte("A"), "c.bin": []byte("c")}), nil)
	if err == nil || !strings.Contains(err.Error(), "c.bin is a directory") {
		t.Errorf("err = %v, want c.bin is a directory", err)
	}
	sameState(t, "directory in the way", before, dirState(t, out))
}

func allocated(t *testing.T, p string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// A large image with little data stays sparse when published, whether its
// zeros are holes or written blocks.
func TestPublishKeepsSparse(t *testing.T) {
	src := t.TempDir()
	p := filepath.Join(src, "usb.img")
	f, _ := os.Create(p)
	size := int64(512 << 20)
	f.Truncate(size)
	data := randBytes(3<<20, 7)
	f.WriteAt(data, 1<<20)
	f.WriteAt(make([]byte, 8<<20), 64<<20) // dense zeros, as a naive writer leaves them
	f.WriteAt([]byte("end"), size-3)
	f.Close()
	if a := allocated(t, p); a < 8<<20 {
		t.Logf("source allocates %d bytes (the file system dropped the zeros itself)", a)
	}
	sum, n, err := hashFileForTest(p)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	start := time.Now()
	if _, err := publish(context.Background(), out, []Artefact{{Output: buildrecord.Output{Name: "usb.img", Size: n, SHA256: sum}, src: p}}, nil); err != nil {
		t.Fatal(err)
	}
	t.Logf("published 512 MiB sparse in %v", time.Since(start))
	dst := filepath.Join(out, "usb.img")
	if a := allocated(t, dst); a > 8<<20 {
		t.Errorf("published usb.img allocates %d bytes for %d bytes of data", a, len(data)+3)
	}
	if got, n2, _ := hashFileForTest(dst); got != sum || n2 != size {
		t.Errorf("published copy differs: %s %d, want %s %d", got, n2, sum, size)
	}
	// The no-op check hashes it without reading the holes.
	start = time.Now()
	if w, err := publish(context.Background(), out, []Artefact{{Output: buildrecord.Output{Name: "usb.img", Size: n, SHA256: sum}, src: p}}, nil); err != nil || len(w) != 0 {
		t.Errorf("no-op: %v %v", w, err)
	}
	t.Logf("no-op check of a 512 MiB sparse image: %v", time.Since(start))
}

func hashFileForTest(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	st, _ := f.Stat()
	h := sha256.New()
	buf := make([]byte, 1<<20)
	var n int64
	for {
		k, err := f.Read(buf)
		h.Write(buf[:k])
		n += int64(k)
		if err != nil {
			break
		}
	}
	if n != st.Size() {
		return "", n, errors.New("short read")
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// A bad output directory is refused before any stage runs, with what to do.
func TestCheckOutDir(t *testing.T) {
	tmp := t.TempDir()
	file := filepath.Join(tmp, "file")
	os.WriteFile(file, []byte("x"), 0o644)
	dangling := filepath.Join(tmp, "dangling")
	os.Symlink(filepath.Join(tmp, "no", "such", "dir"), dangling)
	linkToFile := filepath.Join(tmp, "link-to-file")
	os.Symlink(file, linkToFile)
	cache := filepath.Join(tmp, "cache")
	os.MkdirAll(filepath.Join(cache, "stages"), 0o755)
	cacheLink := filepath.Join(tmp, "cache-link")
	os.Symlink(cache, cacheLink)
	ro := mountTmpfs(t, "ro,size=1m")
	cases := []struct {
		out  string
		want []string
	}{
		{dangling, []string{"dangling symlink to " + filepath.Join(tmp, "no", "such", "dir"), "create"}},
		{file, []string{file, "exists and is not a directory"}},
		{linkToFile, []string{"symlink to " + file, "not a directory"}},
		{filepath.Join(file, "out"), []string{"cannot create output directory", file + " is not a directory"}},
		{filepath.Join(cache, "out"), []string{"inside the cache " + cache}},
		{filepath.Join(cacheLink, "stages", "x"), []string{"inside the cache " + cache}},
		{cache, []string{"inside the cache"}},
		{ro, []string{ro + " is not writable", "read-only file system"}},
		{filepath.Join(ro, "a", "b"), []string{"cannot create output directory", "read-only file system"}},
	}
	for _, c := range cases {
		err := checkOutDir(c.out, cache)
		for _, w := range c.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("checkOutDir(%s) = %v, want it to say %q", c.out, err, w)
			}
		}
	}
	// A directory yet to be created is fine, and is not created yet.
	fresh := filepath.Join(tmp, "new", "out")
	if err := checkOutDir(fresh, cache); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(filepath.Join(tmp, "new")); err == nil {
		t.Error("checkOutDir created the directory")
	}
	if entries, _ := os.ReadDir(tmp); len(entries) != 5 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("probe left behind: %v", names)
	}
}
