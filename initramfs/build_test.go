package initramfs

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/boardcfg"

	"github.com/u-root/mkuimage/cpio"
)

// The u-root build takes minutes on a loaded machine: tests share one.
var (
	buildOnce sync.Once
	built     *Archive
	builtErr  error
)

func q35Archive(t *testing.T) *Archive {
	t.Helper()
	needTool(t, "go", "golang-go")
	needTool(t, "xz", "xz-utils")
	buildOnce.Do(func() {
		s := q35Spec(t)
		s.TempDir = os.TempDir() // t.TempDir() would vanish with the first test
		built, builtErr = Build(context.Background(), s)
	})
	if builtErr != nil {
		t.Fatal(builtErr)
	}
	return built
}

func unxz(t *testing.T, b []byte) []byte {
	t.Helper()
	cmd := exec.Command(needTool(t, "xz", "xz-utils"), "-dc")
	cmd.Stdin = bytes.NewReader(b)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("xz -dc: %v", err)
	}
	return out
}

// TestBuildListing checks the archive with the host's cpio tool.
func TestBuildListing(t *testing.T) {
	a := q35Archive(t)
	cmd := exec.Command(needTool(t, "cpio", "cpio"), "-itv")
	cmd.Stdin = bytes.NewReader(unxz(t, a.Data))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio -itv: %v: %s", err, stderr.String())
	}
	lines := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(l)
		name := f[len(f)-1]
		if i := strings.Index(l, " -> "); i >= 0 {
			g := strings.Fields(l[:i])
			name = g[len(g)-1]
		}
		lines[name] = l
	}
	for name, want := range map[string]string{
		"init":                               `^l.* init -> bbin/init$`,
		"bbin/bb":                            `^-rwxr-xr-x `,
		"bbin/ctld":                          `-> bb$`,
		"bin/uinit":                          `-> \.\./bbin/ctld$`,
		"bin/sh":                             `-> \.\./bbin/gosh$`,
		"dev/console":                        `^crw------- +1 root +root +5, +1 `,
		"dev/null":                           `^crw-rw-rw- +1 root +root +1, +3 `,
		"usr/lib/xen-4.17/bin/xl":            `^-rwxr-xr-x `,
		"usr/lib/xen-4.17/bin/xenstored":     `^-rwxr-xr-x `,
		"usr/lib/xen-4.17/bin/xenconsoled":   `^-rwxr-xr-x `,
		"usr/lib/xen-4.17/bin/xen-init-dom0": `^-rwxr-xr-x `,
		"usr/bin/xenstore-list":              `-> xenstore$`,
		"etc/fwbuild/modules":                `^-rw-r--r-- `,
		"lib64/ld-linux-x86-64.so.2":         `-> /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2$`,
		"usr/sbin/xl":                        `-> /usr/lib/xen-4.17/bin/xl$`,
		"etc/hostname":                       `^-rw-r--r-- `,
		"etc/fwbuild/hello":                  `^-rwxr-xr-x `,
	} {
		l, ok := lines[name]
		if !ok {
			t.Errorf("%s not in the archive", name)
			continue
		}
		if !regexp.MustCompile(want).MatchString(l) {
			t.Errorf("cpio -itv: %q does not match %q", l, want)
		}
	}
	if len(lines) != len(a.Listing) {
		t.Errorf("cpio lists %d entries, Listing has %d", len(lines), len(a.Listing))
	}
}

// archiveFS is the archive as a file system, to check it without fwbuild's
// own resolver.
type archiveFS map[string]cpio.Record

func readArchive(t *testing.T, raw []byte) archiveFS {
	t.Helper()
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	fs := archiveFS{}
	for _, r := range recs {
		fs["/"+r.Name] = r
	}
	return fs
}

func (fs archiveFS) data(t *testing.T, p string) []byte {
	r := fs[p]
	b, err := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// stat follows symlinks (the archive has none in directory components).
func (fs archiveFS) stat(t *testing.T, p string) (string, bool) {
	for range 40 {
		r, ok := fs[p]
		if !ok {
			return "", false
		}
		if r.Mode&cpio.S_IFMT != cpio.S_IFLNK {
			return p, r.Mode&cpio.S_IFMT == cpio.S_IFREG
		}
		target := string(fs.data(t, p))
		if !path.IsAbs(target) {
			target = path.Join(path.Dir(p), target)
		}
		p = target
	}
	return "", false
}

// TestBuildClosure loads every ELF file in the archive and finds its
// interpreter and each DT_NEEDED library in the archive, where glibc's ld.so
// would look (no ldd involved).
func TestBuildClosure(t *testing.T) {
	a := q35Archive(t)
	fs := readArchive(t, unxz(t, a.Data))
	elves := 0
	for p, r := range fs {
		if r.Mode&cpio.S_IFMT != cpio.S_IFREG || r.FileSize < 4 {
			continue
		}
		b := fs.data(t, p)
		if !bytes.HasPrefix(b, []byte("\x7fELF")) {
			continue
		}
		f, err := elf.NewFile(bytes.NewReader(b))
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		elves++
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				ib, _ := io.ReadAll(prog.Open())
				interp := strings.TrimRight(string(ib), "\x00")
				if _, ok := fs.stat(t, interp); !ok {
					t.Errorf("%s: interpreter %s not in the archive", p, interp)
				}
			}
		}
		libs, _ := f.ImportedLibraries()
		runpath, _ := f.DynString(elf.DT_RUNPATH)
		for _, lib := range libs {
			found := false
			dirs := append(strings.Split(strings.Join(runpath, ":"), ":"),
				"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib", "/usr/lib")
			for _, d := range dirs {
				if _, ok := fs.stat(t, path.Join(d, lib)); ok && d != "" {
					found = true
					break
				}
			}
			if !found {
				t.Errorf("%s needs %s, which is not in the archive", p, lib)
			}
		}
	}
	// bb, xl, xenstored, xenconsoled, xen-init-dom0, xenstore, ld.so, libc,
	// the Xen libraries and the kernel modules.
	if elves < 25 {
		t.Errorf("only %d ELF files in the archive", elves)
	}
	if _, ok := fs["/bbin/ctld"]; !ok {
		t.Error("ctld is not in the busybox")
	}
}

func TestBuildMetadata(t *testing.T) {
	a := q35Archive(t)
	fs := readArchive(t, unxz(t, a.Data))
	epoch := uint64(q35Spec(t).Epoch.Unix())
	for p, r := range fs {
		if r.MTime != epoch || r.UID != 0 || r.GID != 0 {
			t.Errorf("%s: mtime %d uid %d gid %d, want %d 0 0", p, r.MTime, r.UID, r.GID, epoch)
		}
	}
	mods := strings.Fields(string(fs.data(t, "/etc/fwbuild/modules")))
	if strings.Join(mods, " ") != strings.Join(a.Modules, " ") || len(mods) != 5 {
		t.Errorf("etc/fwbuild/modules = %q, Archive.Modules = %q", mods, a.Modules)
	}
	for _, m := range mods {
		if _, ok := fs[m]; !ok {
			t.Errorf("module %s listed but not in the archive", m)
		}
	}
	// The listing accounts for every byte of file data.
	var sum int64
	for _, e := range a.Listing {
		if e.Mode.IsRegular() {
			sum += e.Size
		}
	}
	if sum <= 0 || sum > a.RawSize {
		t.Errorf("listing sums to %d bytes, archive is %d", sum, a.RawSize)
	}
	if top := a.Largest(1); len(top) != 1 || top[0].Path != "/bbin/bb" {
		t.Errorf("largest member %v, want the busybox", top)
	}
	// The kernel only accepts CRC32 (or none) as an xz integrity check:
	// stream flags byte 7 is the check type, 1 = CRC32.
	if len(a.Data) < 8 || !bytes.HasPrefix(a.Data, []byte("\xfd7zXZ\x00")) || a.Data[7] != 1 {
		t.Errorf("xz header % x: want check type CRC32", a.Data[:8])
	}
}

// TestBuildReproducible builds a second time, in another temp dir, and wants
// the same bytes.
// Two builds of the same Spec give the same bytes, in any working directory:
// internal/pipeline's TestReproducible checks that on the whole control
// domain, in a fresh cache and another directory (a second u-root build here
// would cost minutes of the suite for the same assertion).

func TestCompression(t *testing.T) {
	needTool(t, "xz", "xz-utils")
	raw := bytes.Repeat([]byte("fwbuild initramfs \x00\x01\x02"), 5000)
	for _, m := range []boardcfg.Compression{"xz", "xz-x86", "zstd", "none"} {
		c, err := compress(context.Background(), m, raw)
		if err != nil {
			t.Fatalf("%s: %v", m, err)
		}
		var back []byte
		switch m {
		case "xz", "xz-x86":
			if c[7] != 1 {
				t.Errorf("%s: check type %d, want 1 (CRC32)", m, c[7])
			}
			back = unxz(t, c)
		case "zstd":
			cmd := exec.Command(needTool(t, "zstd", "zstd"), "-dc")
			cmd.Stdin = bytes.NewReader(c)
			if back, err = cmd.Output(); err != nil {
				t.Fatalf("zstd -dc: %v", err)
			}
		default:
			back = c
		}
		if !bytes.Equal(back, raw) {
			t.Errorf("%s: round trip differs", m)
		}
		again, _ := compress(context.Background(), m, raw)
		if !bytes.Equal(again, c) {
			t.Errorf("%s: not deterministic", m)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := compress(ctx, "xz", raw); err == nil || !errors.Is(ctx.Err(), context.Canceled) {
		t.Errorf("xz with a cancelled context: %v", err)
	}
}

func BenchmarkBuild(b *testing.B) {
	needTool(b, "go", "golang-go")
	for b.Loop() {
		s := q35Spec(b)
		s.Log = slog.New(slog.DiscardHandler)
		start := time.Now()
		a, err := Build(context.Background(), s)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(len(a.Data)), "compressed-bytes")
		b.ReportMetric(float64(a.RawSize), "raw-bytes")
		b.ReportMetric(time.Since(start).Seconds(), "s/build")
	}
}
