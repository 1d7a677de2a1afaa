package closure

import (
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fwbuild/fwbuild/initramfs/internal/q35test"
	"github.com/fwbuild/fwbuild/internal/testdeps"
)

// copyInto copies in-image paths from the q35 roots into a fresh root,
// keeping symlinks, so tests can build package trees with parts missing.
func copyInto(t *testing.T, dst string, paths ...string) {
	t.Helper()
	for _, p := range paths {
		src := q35test.Find(t, p)
		d := filepath.Join(dst, p)
		if err := os.MkdirAll(filepath.Dir(d), 0o755); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Lstat(src)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			l, _ := os.Readlink(src)
			if err := os.Symlink(l, d); err != nil {
				t.Fatal(err)
			}
			continue
		}
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(d, b, fi.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
}

func TestToolstackClosure(t *testing.T) {
	tr, err := New(q35test.Roots(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range q35test.Toolstack(t) {
		if err := tr.Add(p, "test"); err != nil {
			t.Fatal(err)
		}
	}
	// What xl, xenstored, xenconsoled and xen-init-dom0 load, as ld.so
	// would find it; checked independently in TestBuild on the archive.
	for _, want := range []string{
		"/lib64/ld-linux-x86-64.so.2",
		"/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
		"/lib/x86_64-linux-gnu/libc.so.6",
		"/usr/lib/x86_64-linux-gnu/libxenlight.so.4.17",
		"/usr/lib/x86_64-linux-gnu/libxenlight.so.4.17.0",
		"/usr/lib/x86_64-linux-gnu/libxenctrl.so.4.17",
		"/usr/lib/x86_64-linux-gnu/libxenguest.so.4.17",
		"/usr/lib/x86_64-linux-gnu/libxenstore.so.4",
		"/usr/lib/x86_64-linux-gnu/libyajl.so.2",
		"/usr/lib/x86_64-linux-gnu/libzstd.so.1",
		"/lib/x86_64-linux-gnu/liblzma.so.5",
		"/lib/x86_64-linux-gnu/libz.so.1",
	} {
		if _, ok := tr.Nodes[want]; !ok {
			t.Errorf("%s missing from the closure", want)
		}
	}
	// SONAME links stay symlinks; the interpreter link keeps its absolute
	// target, which resolves inside the image at run time.
	if n := tr.Nodes["/usr/lib/x86_64-linux-gnu/libxenlight.so.4.17"]; n == nil || n.Kind != Symlink || n.Link != "libxenlight.so.4.17.0" {
		t.Errorf("libxenlight SONAME link = %+v", n)
	}
	if n := tr.Nodes["/lib64/ld-linux-x86-64.so.2"]; n == nil || n.Kind != Symlink || n.Link != "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" {
		t.Errorf("interpreter link = %+v", n)
	}
	// dpkg hard-links the xenstore-* tools; they become one copy.
	if n := tr.Nodes["/usr/bin/xenstore-read"]; n == nil || n.Kind != Symlink || n.Link != "xenstore" {
		t.Errorf("xenstore-read = %+v, want symlink to xenstore", n)
	}
	// Nothing the toolstack does not load (ldd-style over-inclusion).
	for _, unwanted := range []string{"/lib/x86_64-linux-gnu/libext2fs.so.2", "/lib/x86_64-linux-gnu/libbz2.so.1.0"} {
		if _, ok := tr.Nodes[unwanted]; ok {
			t.Errorf("%s included but nothing needs it", unwanted)
		}
	}
}

func TestToolstackErrors(t *testing.T) {
	xl := "usr/lib/xen-4.17/bin/xl"
	for _, tc := range []struct {
		name  string
		files []string // copied into a fresh root
		add   string
		want  []string
	}{
		{"missing file", nil, "usr/lib/xen-4.17/bin/nope",
			[]string{"/usr/lib/xen-4.17/bin/nope", "wanted toolstack file", "none of the package roots"}},
		{"missing library", []string{xl, "lib64/ld-linux-x86-64.so.2", "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"}, xl,
			[]string{"library libxlutil.so.4.17 needed by /usr/lib/xen-4.17/bin/xl", "none of the package roots", "/usr/lib/x86_64-linux-gnu"}},
		{"missing interpreter", []string{"usr/bin/xenstore"}, "usr/bin/xenstore",
			[]string{"/lib64/ld-linux-x86-64.so.2", "interpreter of /usr/bin/xenstore", "none of the package roots"}},
		{"dangling symlink", []string{"lib64/ld-linux-x86-64.so.2"}, "lib64/ld-linux-x86-64.so.2",
			[]string{"/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", "target of symlink /lib64/ld-linux-x86-64.so.2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			copyInto(t, root, tc.files...)
			tr, err := New([]string{root})
			if err != nil {
				t.Fatal(err)
			}
			err = tr.Add(tc.add, "wanted toolstack file")
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestSymlinkedDirectories(t *testing.T) {
	// A merged-/usr root: /lib is a symlink to usr/lib. The link must be in
	// the image so that paths through it work at run time, and a symlink
	// loop must be an error, not a hang.
	root := t.TempDir()
	copyInto(t, root, "usr/bin/xenstore")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "usr/lib/x86_64-linux-gnu"), 0o755))
	must(os.Symlink("usr/lib", filepath.Join(root, "lib")))
	must(os.Symlink("loop", filepath.Join(root, "loop")))
	for _, f := range []string{"libc.so.6", "ld-linux-x86-64.so.2"} {
		b, err := os.ReadFile(filepath.Join(testdeps.Root(t, "libc6"), "lib/x86_64-linux-gnu", f))
		must(err)
		must(os.WriteFile(filepath.Join(root, "usr/lib/x86_64-linux-gnu", f), b, 0o755))
	}
	must(os.MkdirAll(filepath.Join(root, "lib64"), 0o755))
	must(os.Symlink("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", filepath.Join(root, "lib64/ld-linux-x86-64.so.2")))
	tr, err := New([]string{root})
	must(err)
	must(tr.Add("lib/x86_64-linux-gnu/libc.so.6", "test"))
	if n := tr.Nodes["/lib"]; n == nil || n.Kind != Symlink || n.Link != "usr/lib" {
		t.Errorf("/lib = %+v, want symlink to usr/lib", n)
	}
	for _, f := range []string{"libc.so.6", "ld-linux-x86-64.so.2"} {
		if n := tr.Nodes["/usr/lib/x86_64-linux-gnu/"+f]; n == nil || n.Kind != File {
			t.Errorf("%s not at its real path: %+v", f, n)
		}
	}
	if err := tr.Add("loop/x", "test"); err == nil || !strings.Contains(err.Error(), "too many levels of symbolic links") {
		t.Errorf("symlink loop: %v", err)
	}
}

func TestModules(t *testing.T) {
	tr, err := New(q35test.Roots(t))
	if err != nil {
		t.Fatal(err)
	}
	order, err := tr.AddModules(q35test.Modules)
	if err != nil {
		t.Fatal(err)
	}
	idx := map[string]int{}
	for i, p := range order {
		idx[path.Base(p)] = i
		if _, ok := tr.Nodes[p]; !ok {
			t.Errorf("%s listed but not in the image", p)
		}
	}
	// xenfs needs xen-privcmd (from .modinfo), which nobody asked for.
	p, ok1 := idx["xen-privcmd.ko"]
	x, ok2 := idx["xenfs.ko"]
	if !ok1 || !ok2 || p > x {
		t.Errorf("order %v: want xen-privcmd.ko before xenfs.ko", order)
	}
	if len(order) != len(q35test.Modules)+1 {
		t.Errorf("order %v: want the %d wanted modules and xen-privcmd", order, len(q35test.Modules))
	}

	// Without the dependency in the roots: a clear error.
	root := t.TempDir()
	copyInto(t, root, "lib/modules/6.1.0-47-amd64/kernel/drivers/xen/xenfs/xenfs.ko")
	tr, err = New([]string{root})
	if err != nil {
		t.Fatal(err)
	}
	_, err = tr.AddModules([]string{"lib/modules/6.1.0-47-amd64/kernel/drivers/xen/xenfs/xenfs.ko"})
	if err == nil || !strings.Contains(err.Error(), "depends on xen-privcmd") {
		t.Errorf("missing dependency: %v", err)
	}
	if _, err := tr.AddModules([]string{"usr/lib/xen-4.17/bin/xl"}); err == nil {
		t.Error("a program accepted as a kernel module")
	}
}
