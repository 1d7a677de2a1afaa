package debpkg

import (
	"archive/tar"
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fwbuild/fwbuild/internal/cache"
)

// aptServing writes an apt-get that "downloads" deb as fwbuild-fake_1.0_all.deb,
// counting its runs, and returns the package pinned to deb's hash.
func aptServing(t *testing.T, c *Cache, deb []byte) (Pkg, func() int) {
	t.Helper()
	return aptServe(t, c, deb, "1.0", 0)
}

func fakeDeb(t *testing.T, content string) []byte {
	return makeDeb(t, []*tar.Header{
		{Name: "./usr/", Typeflag: tar.TypeDir, Mode: 0o755},
		reg("./usr/share/fake", content, 0o644),
		{Name: "./usr/share/alias", Typeflag: tar.TypeSymlink, Linkname: "fake"},
	}, []string{"", content, ""})
}

// loggedCache is a Cache in a fresh directory whose log the test can read.
func loggedCache(t *testing.T) (*Cache, *bytes.Buffer) {
	var logs bytes.Buffer
	return &Cache{Dir: t.TempDir(), Log: slog.New(slog.NewTextHandler(&logs, nil))}, &logs
}

func fetchOne(t *testing.T, c *Cache, p Pkg) Fetched {
	t.Helper()
	got, err := c.Fetch(context.Background(), []Pkg{p})
	if err != nil {
		t.Fatal(err)
	}
	return got[0]
}

func wantContent(t *testing.T, f Fetched, want string) {
	t.Helper()
	if b, err := os.ReadFile(f.Path("usr/share/fake")); err != nil || string(b) != want {
		t.Errorf("unpacked file: %q, %v; want %q", b, err, want)
	}
	if _, err := cache.VerifyEntry(f.Root, cache.Full); err != nil {
		t.Errorf("unpacked tree: %v", err)
	}
}

// A damaged unpacked tree is never handed out: it is unpacked again from
// the cached .deb (no download), with a warning naming it.
func TestFetchRepairsDamagedTree(t *testing.T) {
	for name, damage := range map[string]func(root string){
		"file edited in place": func(root string) {
			f, _ := os.OpenFile(filepath.Join(root, "usr/share/fake"), os.O_WRONLY, 0)
			f.WriteString("FAKE")
			f.Close()
		},
		"file replaced": func(root string) { os.WriteFile(filepath.Join(root, "usr/share/fake"), []byte("evil content"), 0o644) },
		"file added":    func(root string) { os.WriteFile(filepath.Join(root, "usr/share/extra"), nil, 0o644) },
		"file removed":  func(root string) { os.Remove(filepath.Join(root, "usr/share/fake")) },
		"link redirected": func(root string) {
			os.Remove(filepath.Join(root, "usr/share/alias"))
			os.Symlink("/etc/shadow", filepath.Join(root, "usr/share/alias"))
		},
	} {
		t.Run(name, func(t *testing.T) {
			c, logs := loggedCache(t)
			p, runs := aptServing(t, c, fakeDeb(t, "fake"))
			f := fetchOne(t, c, p)
			damage(f.Root)
			again := fetchOne(t, c, p)
			wantContent(t, again, "fake")
			if runs() != 1 {
				t.Errorf("apt-get ran %d times: the cached .deb should have been unpacked again", runs())
			}
			if !strings.Contains(logs.String(), f.Root) || !strings.Contains(logs.String(), "damaged") {
				t.Errorf("no warning naming %s:\n%s", f.Root, logs)
			}
			if l, _ := os.Readlink(again.Path("usr/share/alias")); l != "fake" {
				t.Errorf("alias -> %q", l)
			}
		})
	}
}

// A cached .deb that is not the pinned one (another valid package, or a
// flipped bit) is deleted and downloaded again when it is next unpacked,
// never unpacked itself.
func TestFetchReplacesDamagedDeb(t *testing.T) {
	for name, damage := range map[string]func(t *testing.T, deb string){
		"another valid package": func(t *testing.T, deb string) { os.WriteFile(deb, fakeDeb(t, "evil"), 0o644) },
		"bit flip": func(t *testing.T, deb string) {
			b, _ := os.ReadFile(deb)
			b[len(b)-20] ^= 1
			os.WriteFile(deb, b, 0o644)
		},
	} {
		t.Run(name, func(t *testing.T) {
			c, logs := loggedCache(t)
			p, runs := aptServing(t, c, fakeDeb(t, "fake"))
			f := fetchOne(t, c, p)
			damage(t, f.Deb)
			os.RemoveAll(f.Root) // so that the .deb is unpacked again
			again := fetchOne(t, c, p)
			wantContent(t, again, "fake")
			if runs() != 2 {
				t.Errorf("apt-get ran %d times, want 2: the damaged .deb must be downloaded again", runs())
			}
			if !strings.Contains(logs.String(), f.Deb) {
				t.Errorf("no warning naming %s:\n%s", f.Deb, logs)
			}
		})
	}
}

// A tree an older fwbuild unpacked has no manifest: it is checked against
// its .deb and recorded (no download), or unpacked again if it differs.
func TestFetchChecksUnrecordedTree(t *testing.T) {
	c, _ := loggedCache(t)
	p, runs := aptServing(t, c, fakeDeb(t, "fake"))
	f := fetchOne(t, c, p)
	os.Remove(filepath.Join(f.Root, cache.ManifestName))
	wantContent(t, fetchOne(t, c, p), "fake")
	if runs() != 1 {
		t.Errorf("apt-get ran %d times for a good unrecorded tree", runs())
	}
	os.Remove(filepath.Join(f.Root, cache.ManifestName))
	os.WriteFile(filepath.Join(f.Root, "usr/share/fake"), []byte("evil"), 0o644)
	wantContent(t, fetchOne(t, c, p), "fake")
	if runs() != 1 {
		t.Errorf("apt-get ran %d times", runs())
	}
}

// A pinned .deb that cannot be unpacked names the package, its origin and
// the cache file, and says what to do, not only "xz: data is corrupt".
func TestFetchCorruptPinnedDebSaysWhatToDo(t *testing.T) {
	deb := fakeDeb(t, strings.Repeat("fake", 1000))
	// Damage the data archive's compressed bytes, keeping the ar framing.
	i := bytes.LastIndex(deb, []byte("data.tar.gz"))
	for j := i + 100; j < i+140 && j < len(deb); j++ {
		deb[j] ^= 0xff
	}
	c, _ := loggedCache(t)
	p, _ := aptServing(t, c, deb)
	_, err := c.Fetch(context.Background(), []Pkg{p})
	debPath := filepath.Join(c.Dir, "debs", p.SHA256+".deb")
	t.Log(err)
	for _, want := range []string{p.String(), p.Origin, debPath, "pin another version", "delete " + debPath} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v; want it to say %q", err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(c.Dir, "pkgs", p.SHA256)); err == nil {
		t.Error("a tree was committed for an unpackable .deb")
	}
}
