package cache

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// build fills an entry with a few files, counting its runs.
func countingBuild(runs *int) func(string) error {
	return func(tmp string) error {
		*runs++
		os.MkdirAll(filepath.Join(tmp, "sub"), 0o755)
		os.Symlink("../a", filepath.Join(tmp, "sub", "link"))
		os.WriteFile(filepath.Join(tmp, "sub", "b"), []byte("bee"), 0o644)
		return os.WriteFile(filepath.Join(tmp, "a"), []byte("the artefact"), 0o644)
	}
}

// Every way of damaging a hit makes Entry build it again, with a warning
// naming the entry, and hand out the rebuilt bytes: never the damaged ones.
func TestEntryRebuildsDamagedEntry(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(entry string)
		quick  bool
	}{
		{"bit flip", func(e string) { flipBit(t, filepath.Join(e, "a")) }, false},
		{"bit flip, quick", func(e string) { flipBit(t, filepath.Join(e, "a")) }, true},
		{"truncated", func(e string) { os.Truncate(filepath.Join(e, "a"), 3) }, true},
		{"file replaced", func(e string) {
			os.WriteFile(filepath.Join(e, "x"), []byte("the artefacT"), 0o644)
			os.Rename(filepath.Join(e, "x"), filepath.Join(e, "a"))
		}, true},
		{"file removed", func(e string) { os.Remove(filepath.Join(e, "sub", "b")) }, true},
		{"file added", func(e string) { os.WriteFile(filepath.Join(e, "sub", "c"), nil, 0o644) }, true},
		{"symlink retargeted", func(e string) {
			os.Remove(filepath.Join(e, "sub", "link"))
			os.Symlink("/etc/passwd", filepath.Join(e, "sub", "link"))
		}, true},
		{"file became symlink", func(e string) {
			os.Remove(filepath.Join(e, "a"))
			os.Symlink("sub/b", filepath.Join(e, "a"))
		}, true},
		{"mode changed", func(e string) { os.Chmod(filepath.Join(e, "a"), 0o755) }, true},
		{"manifest garbled", func(e string) { os.WriteFile(filepath.Join(e, ManifestName), []byte("{"), 0o644) }, true},
		{"manifest removed", func(e string) { os.Remove(filepath.Join(e, ManifestName)) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			d, _ := Open(t.TempDir())
			d = d.WithLog(slog.New(slog.NewTextHandler(&logs, nil)))
			if tc.quick {
				d = d.WithQuickVerify()
			}
			ctx := context.Background()
			runs := 0
			e, err := d.Entry(ctx, "stages/x", "k", countingBuild(&runs))
			if err != nil {
				t.Fatal(err)
			}
			if sum, n, ok := e.Files.File("a"); !ok || n != 12 || len(sum) != 64 {
				t.Fatalf("manifest of a miss: %v %v %v", sum, n, ok)
			}
			tc.damage(e.Path)
			again, err := d.Entry(ctx, "stages/x", "k", countingBuild(&runs))
			if err != nil {
				t.Fatal(err)
			}
			if runs != 2 || again.Hit {
				t.Errorf("damaged entry reused: %d runs, hit %v", runs, again.Hit)
			}
			if b, _ := os.ReadFile(filepath.Join(again.Path, "a")); string(b) != "the artefact" {
				t.Errorf("rebuilt content %q", b)
			}
			if !strings.Contains(logs.String(), e.Path) || !strings.Contains(logs.String(), "damaged") {
				t.Errorf("no warning naming %s:\n%s", e.Path, logs.String())
			}
			if _, err := VerifyEntry(again.Path, Full); err != nil {
				t.Errorf("rebuilt entry: %v", err)
			}
			// Nothing of the damaged entry is left beside the new one.
			ents, _ := os.ReadDir(filepath.Dir(e.Path))
			if len(ents) != 2 { // k and k.lock
				t.Errorf("left over: %v", ents)
			}
			// And the rebuilt entry is a plain hit.
			third, err := d.Entry(ctx, "stages/x", "k", countingBuild(&runs))
			if err != nil || !third.Hit || runs != 2 {
				t.Errorf("third: %+v, %v, %d runs", third, err, runs)
			}
		})
	}
}

func flipBit(t *testing.T, p string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x10
	// Write in place, keeping the inode, as a disk or an editor would.
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(b)
	f.Close()
}

// A quick check hashes nothing that was not touched, catches what was, and
// a copied entry (new inodes, same bytes) is accepted and re-recorded.
func TestQuickVerify(t *testing.T) {
	d, _ := Open(t.TempDir())
	runs := 0
	e, err := d.Entry(context.Background(), "pkgs", "k", countingBuild(&runs))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyEntry(e.Path, Quick); err != nil {
		t.Fatal(err)
	}
	copyDir := filepath.Join(t.TempDir(), "copy")
	copyTree(t, e.Path, copyDir)
	before, _ := os.ReadFile(filepath.Join(copyDir, ManifestName))
	if _, err := VerifyEntry(copyDir, Quick); err != nil {
		t.Fatalf("copied entry: %v", err)
	}
	after, _ := os.ReadFile(filepath.Join(copyDir, ManifestName))
	if bytes.Equal(before, after) {
		t.Error("the copy's fingerprints were not refreshed")
	}
	// A symlink to an entry (tests share packages so) is checked through.
	link := filepath.Join(t.TempDir(), "link")
	os.Symlink(e.Path, link)
	if _, err := VerifyEntry(link, Full); err != nil {
		t.Errorf("symlinked entry: %v", err)
	}
	flipBit(t, filepath.Join(link, "sub", "b"))
	var ce *CorruptError
	if _, err := VerifyEntry(link, Quick); !errors.As(err, &ce) || ce.File != "sub/b" || !strings.Contains(err.Error(), link) {
		t.Errorf("err = %v, want a CorruptError naming sub/b", err)
	}
}

func copyTree(t *testing.T, from, to string) {
	t.Helper()
	filepath.WalkDir(from, func(p string, de os.DirEntry, err error) error {
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		switch {
		case de.IsDir():
			os.MkdirAll(dst, 0o755)
		case de.Type()&os.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			os.Symlink(l, dst)
		default:
			b, _ := os.ReadFile(p)
			info, _ := de.Info()
			os.WriteFile(dst, b, info.Mode().Perm())
		}
		return nil
	})
}

// An entry an older fwbuild built has no manifest: rebuilt by default,
// recorded as it is with WithAdoptUnrecorded (for kernels).
func TestUnrecordedEntry(t *testing.T) {
	root := t.TempDir()
	old := filepath.Join(root, "kernel", "k")
	os.MkdirAll(old, 0o755)
	os.WriteFile(filepath.Join(old, "bzImage"), []byte("old"), 0o644)
	d, _ := Open(root)
	runs := 0
	e, err := d.WithAdoptUnrecorded().Entry(context.Background(), "kernel", "k", countingBuild(&runs))
	if err != nil || !e.Hit || runs != 0 {
		t.Fatalf("adopt: %+v, %v, %d runs", e, err, runs)
	}
	if _, _, ok := e.Files.File("bzImage"); !ok {
		t.Error("adopted entry has no manifest")
	}
	os.Remove(filepath.Join(old, ManifestName))
	e, err = d.Entry(context.Background(), "kernel", "k", countingBuild(&runs))
	if err != nil || e.Hit || runs != 1 {
		t.Fatalf("rebuild: %+v, %v, %d runs", e, err, runs)
	}
}

// ClaimFileChecked removes a file entry its check rejects and claims it.
func TestClaimFileChecked(t *testing.T) {
	d, _ := Open(t.TempDir())
	ctx := context.Background()
	_, c, err := d.ClaimFile(ctx, "debs", "p.deb")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(c.Temp(), []byte("bad"), 0o644)
	if _, err := c.Commit(); err != nil {
		t.Fatal(err)
	}
	check := func(p string) (*Manifest, error) {
		if b, _ := os.ReadFile(p); string(b) != "good" {
			return nil, errors.New("not good")
		}
		return nil, nil
	}
	e, c, err := d.ClaimFileChecked(ctx, "debs", "p.deb", check)
	if err != nil || e.Hit || c == nil {
		t.Fatalf("bad file entry: %+v, %v, %v", e, c, err)
	}
	if _, err := os.Stat(e.Path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("bad file entry still there: %v", err)
	}
	os.WriteFile(c.Temp(), []byte("good"), 0o644)
	if _, err := c.Commit(); err != nil {
		t.Fatal(err)
	}
	if e, c, err := d.ClaimFileChecked(ctx, "debs", "p.deb", check); err != nil || !e.Hit || c != nil {
		t.Errorf("good file entry: %+v, %v, %v", e, c, err)
	}
}

// WithManifestBeside leaves the entry's top level as built (a kernel source
// entry must hold one directory for older fwbuilds) and still checks it.
func TestManifestBeside(t *testing.T) {
	d, _ := Open(t.TempDir())
	d = d.WithManifestBeside().WithQuickVerify()
	runs := 0
	e, err := d.Entry(context.Background(), "src", "k", countingBuild(&runs))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(e.Path, ManifestName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("manifest inside the entry: %v", err)
	}
	if _, err := os.Stat(e.Path + ManifestName); err != nil {
		t.Errorf("no manifest beside the entry: %v", err)
	}
	flipBit(t, filepath.Join(e.Path, "sub", "b"))
	if e, err := d.Entry(context.Background(), "src", "k", countingBuild(&runs)); err != nil || e.Hit || runs != 2 {
		t.Errorf("damaged entry: %+v, %v, %d runs", e, err, runs)
	}
	if e, err := d.Entry(context.Background(), "src", "k", countingBuild(&runs)); err != nil || !e.Hit || runs != 2 {
		t.Errorf("rebuilt entry: %+v, %v, %d runs", e, err, runs)
	}
}

// The manifest survives any path a package may hold, and a damaged
// manifest is reported, not half read.
func TestManifestRoundTrip(t *testing.T) {
	m := NewManifest(map[string]FileRecord{
		"usr/a b\nc\"d": {Type: TypeFile, Mode: 0o755, Size: 3, SHA256: strings.Repeat("ab", 32), Stat: &Fingerprint{Ino: 7, Mtime: -1, Ctime: 1 << 62}},
		"usr":           {Type: TypeDir},
		"usr/l":         {Type: TypeSymlink, Target: "/etc/x y\""},
		"usr/unstat":    {Type: TypeFile, Mode: 0o644, SHA256: strings.Repeat("cd", 32)},
	})
	got, err := unmarshal(m.marshal())
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range m.Files {
		f := got.Files[p]
		if (f.Stat == nil) != (want.Stat == nil) || f.Stat != nil && *f.Stat != *want.Stat {
			t.Errorf("%q: fingerprint %v, want %v", p, f.Stat, want.Stat)
		}
		f.Stat, want.Stat = nil, nil
		if f != want {
			t.Errorf("%q: %+v, want %+v", p, f, want)
		}
	}
	if len(got.Files) != len(m.Files) {
		t.Errorf("%d records, want %d", len(got.Files), len(m.Files))
	}
	b := m.marshal()
	for _, bad := range [][]byte{b[:len(b)-3], b[:bytes.LastIndex(b[:len(b)-1], []byte("\n"))+1], b[:bytes.Index(b, []byte("\n"))+1], append(bytes.Clone(b), "x\n"...), bytes.Replace(b, []byte("f 755 3"), []byte("f 755 x"), 1), []byte("{}")} {
		if _, err := unmarshal(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

// A manifest of another format version is no evidence of damage: the entry
// counts as unrecorded (adopted or rebuilt by the caller's policy).
func TestManifestOtherVersionIsUnrecorded(t *testing.T) {
	d, _ := Open(t.TempDir())
	runs := 0
	e, err := d.Entry(context.Background(), "kernel", "k", countingBuild(&runs))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(e.Path, ManifestName), []byte("fwbuild-manifest 1\nd \"sub\"\nend 1\n"), 0o644)
	if _, err := VerifyEntry(e.Path, Quick); !errors.Is(err, ErrUnrecorded) {
		t.Errorf("err = %v, want ErrUnrecorded", err)
	}
	if e, err := d.WithAdoptUnrecorded().Entry(context.Background(), "kernel", "k", countingBuild(&runs)); err != nil || !e.Hit || runs != 1 {
		t.Errorf("adopt: %+v, %v, %d runs", e, err, runs)
	}
	if _, err := VerifyEntry(e.Path, Full); err != nil {
		t.Errorf("re-recorded entry: %v", err)
	}
}
