package debpkg

import (
	"archive/tar"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fwbuild/fwbuild/internal/cache"
)

// hostile is a data archive, what Unpack must say ("" = succeed), and a
// check of the tree it leaves.
type hostile struct {
	name    string
	entries func(elsewhere string) []*tar.Header
	bodies  []string
	wantErr string
	check   func(t *testing.T, root string)
}

func reg(name, body string, mode int64) *tar.Header {
	return &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: mode, Size: int64(len(body))}
}

func hostileDebs() []hostile {
	return []hostile{
		{name: "file through an absolute symlink to a directory",
			entries: func(e string) []*tar.Header {
				return []*tar.Header{{Name: "./x", Typeflag: tar.TypeSymlink, Linkname: e}, reg("./x/file", "pwned", 0o644)}
			},
			bodies: []string{"", "pwned"}, wantErr: "refusing to write through it"},
		{name: "file through a climbing symlink",
			entries: func(e string) []*tar.Header {
				return []*tar.Header{{Name: "./x", Typeflag: tar.TypeSymlink, Linkname: "../elsewhere"}, reg("./x/file", "pwned", 0o644)}
			},
			bodies: []string{"", "pwned"}, wantErr: "refusing to write through it"},
		{name: "file through a symlink inside the root",
			entries: func(e string) []*tar.Header {
				return []*tar.Header{{Name: "./usr/", Typeflag: tar.TypeDir, Mode: 0o755}, {Name: "./x", Typeflag: tar.TypeSymlink, Linkname: "usr"}, reg("./x/file", "data", 0o644)}
			},
			bodies: []string{"", "", "data"}, wantErr: "refusing to write through it"},
		{name: "directory through a symlink",
			entries: func(e string) []*tar.Header {
				return []*tar.Header{{Name: "./x", Typeflag: tar.TypeSymlink, Linkname: e}, {Name: "./x/sub/", Typeflag: tar.TypeDir, Mode: 0o755}}
			},
			bodies: []string{"", ""}, wantErr: "refusing to write through it"},
		{name: "file over a symlink to an absolute file",
			entries: func(e string) []*tar.Header {
				return []*tar.Header{{Name: "./x", Typeflag: tar.TypeSymlink, Linkname: filepath.Join(e, "victim")}, reg("./x", "mine", 0o644)}
			},
			bodies: []string{"", "mine"},
			check: func(t *testing.T, root string) {
				if info, err := os.Lstat(filepath.Join(root, "x")); err != nil || !info.Mode().IsRegular() {
					t.Errorf("x is not a regular file: %v, %v", info, err)
				}
				if b, _ := os.ReadFile(filepath.Join(root, "x")); string(b) != "mine" {
					t.Errorf("x = %q", b)
				}
			}},
		{name: "symlink over a symlink",
			entries: func(e string) []*tar.Header {
				return []*tar.Header{{Name: "./x", Typeflag: tar.TypeSymlink, Linkname: e}, {Name: "./x", Typeflag: tar.TypeSymlink, Linkname: "y"}}
			},
			bodies: []string{"", ""},
			check: func(t *testing.T, root string) {
				if l, _ := os.Readlink(filepath.Join(root, "x")); l != "y" {
					t.Errorf("x -> %q, want y", l)
				}
			}},
		{name: "hard link to an absolute path",
			entries: func(e string) []*tar.Header {
				return []*tar.Header{{Name: "./h", Typeflag: tar.TypeLink, Linkname: filepath.Join(e, "victim")}}
			},
			bodies: []string{""}, wantErr: "escapes the package root"},
		{name: "hard link climbing out",
			entries: func(e string) []*tar.Header {
				return []*tar.Header{{Name: "./h", Typeflag: tar.TypeLink, Linkname: "../elsewhere/victim"}}
			},
			bodies: []string{""}, wantErr: "escapes the package root"},
		{name: "hard link through a symlink",
			entries: func(e string) []*tar.Header {
				return []*tar.Header{{Name: "./s", Typeflag: tar.TypeSymlink, Linkname: e}, {Name: "./h", Typeflag: tar.TypeLink, Linkname: "./s/victim"}}
			},
			bodies: []string{"", ""}, wantErr: "not a regular file earlier in the package"},
		{name: "hard link to a symlink",
			entries: func(e string) []*tar.Header {
				return []*tar.Header{{Name: "./s", Typeflag: tar.TypeSymlink, Linkname: filepath.Join(e, "victim")}, {Name: "./h", Typeflag: tar.TypeLink, Linkname: "./s"}}
			},
			bodies: []string{"", ""}, wantErr: "not a regular file earlier in the package"},
		{name: "dot-dot name", entries: func(string) []*tar.Header { return []*tar.Header{reg("../elsewhere/victim", "x", 0o644)} },
			bodies: []string{"x"}, wantErr: "escapes the package root"},
		{name: "dot-dot inside a name", entries: func(string) []*tar.Header { return []*tar.Header{reg("./a/../../elsewhere/victim", "x", 0o644)} },
			bodies: []string{"x"}, wantErr: "escapes the package root"},
		{name: "absolute name", entries: func(e string) []*tar.Header { return []*tar.Header{reg(filepath.Join(e, "victim"), "x", 0o644)} },
			bodies: []string{"x"}, wantErr: "escapes the package root"},
		{name: "file replacing a directory",
			entries: func(string) []*tar.Header {
				return []*tar.Header{{Name: "./d/", Typeflag: tar.TypeDir, Mode: 0o755}, reg("./d/f", "x", 0o644), reg("./d", "y", 0o644)}
			},
			bodies: []string{"", "x", "y"}, wantErr: "would replace the directory"},
		{name: "symlink replacing a directory",
			entries: func(e string) []*tar.Header {
				return []*tar.Header{{Name: "./d/", Typeflag: tar.TypeDir, Mode: 0o755}, {Name: "./d", Typeflag: tar.TypeSymlink, Linkname: e}, reg("./d/f", "x", 0o644)}
			},
			bodies: []string{"", "", "x"}, wantErr: "would replace the directory"},
		{name: "directory replacing a file",
			entries: func(string) []*tar.Header {
				return []*tar.Header{reg("./f", "x", 0o644), {Name: "./f/", Typeflag: tar.TypeDir, Mode: 0o755}}
			},
			bodies: []string{"x", ""}, wantErr: "not a directory"},
		{name: "device nodes and fifos are skipped",
			entries: func(string) []*tar.Header {
				return []*tar.Header{
					{Name: "./dev/", Typeflag: tar.TypeDir, Mode: 0o755},
					{Name: "./dev/sda", Typeflag: tar.TypeBlock, Mode: 0o666, Devmajor: 8},
					{Name: "./dev/mem", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 1},
					{Name: "./dev/fifo", Typeflag: tar.TypeFifo, Mode: 0o666},
					reg("./ok", "ok", 0o644),
				}
			},
			bodies: []string{"", "", "", "", "ok"},
			check: func(t *testing.T, root string) {
				ents, _ := os.ReadDir(filepath.Join(root, "dev"))
				if len(ents) != 0 {
					t.Errorf("special files created: %v", ents)
				}
				if b, _ := os.ReadFile(filepath.Join(root, "ok")); string(b) != "ok" {
					t.Errorf("ok = %q", b)
				}
			}},
		{name: "setuid, setgid and sticky bits are stripped",
			entries: func(string) []*tar.Header {
				return []*tar.Header{reg("./suid", "x", 0o4755), reg("./sgid", "x", 0o2755), reg("./sticky", "x", 0o1777)}
			},
			bodies: []string{"x", "x", "x"},
			check: func(t *testing.T, root string) {
				for n, want := range map[string]os.FileMode{"suid": 0o755, "sgid": 0o755, "sticky": 0o777} {
					info, err := os.Stat(filepath.Join(root, n))
					if err != nil || info.Mode() != want {
						t.Errorf("%s: mode %v, want %v (%v)", n, info.Mode(), want, err)
					}
				}
			}},
	}
}

// Hostile packages write nothing outside the package root, whatever their
// links say; "/elsewhere" is a directory beside the root.
func TestUnpackHostile(t *testing.T) {
	for _, tc := range hostileDebs() {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			root := filepath.Join(parent, "root")
			elsewhere := filepath.Join(parent, "elsewhere")
			os.Mkdir(root, 0o755)
			os.Mkdir(elsewhere, 0o755)
			os.WriteFile(filepath.Join(elsewhere, "victim"), []byte("original"), 0o644)
			p := filepath.Join(parent, "t.deb")
			os.WriteFile(p, makeDeb(t, tc.entries(elsewhere), tc.bodies), 0o644)
			err := Unpack(p, root)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("err = %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("err = %v, want %q", err, tc.wantErr)
			}
			ents, _ := os.ReadDir(elsewhere)
			if b, _ := os.ReadFile(filepath.Join(elsewhere, "victim")); len(ents) != 1 || string(b) != "original" {
				t.Errorf("wrote outside the root: %v, victim %q", ents, b)
			}
			if ents, _ := os.ReadDir(parent); len(ents) != 3 {
				t.Errorf("wrote beside the root: %v", ents)
			}
			if tc.check != nil {
				tc.check(t, root)
			}
			// What unpack says it wrote is what it wrote.
			if err == nil {
				m, err := unpack(p, "")
				if err != nil {
					t.Fatal(err)
				}
				if _, err := cache.Verify(root, m, cache.Full); err != nil {
					t.Errorf("dry run disagrees with the tree: %v", err)
				}
			}
		})
	}
}
