package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cavaliergopher/cpio"
	"github.com/ulikunitz/xz"

	"github.com/fwbuild/fwbuild/internal/atomicfile"
	"github.com/fwbuild/fwbuild/internal/testdeps"
)

// TestReproducible builds qemu-q35 twice: once in the shared test cache and
// once in a fresh cache that shares only the downloaded packages (verified by
// their pinned hashes, so they cannot differ) and the kernel source unpacked
// from them. Every artefact must come out byte-identical, the kernel built
// from source included. The second build runs in another working directory:
// nothing may depend on it (an installed fwbuild runs anywhere). This is the
// control domain's reproducibility test too (initramfs builds it in both).
//
// The kernel's second, cold compile is most of this test's time (5-7 min on
// 2 cores, 19 min beside the boot tests in CI), and its cache key covers
// every input that reaches its bytes (source, config, base, compiler and
// linker versions, make variables, timestamp). So a kernel whose cold
// rebuild matched once is recorded (reproducedKernel), and a later run with
// the same key and the same bzImage shares the entry instead of compiling it
// again; any change to the kernel's inputs is a new key, compiled twice
// again. FWBUILD_TEST_REBUILD_KERNEL=1 compiles it regardless.
func TestReproducible(t *testing.T) {
	ctx := context.Background()
	outA := t.TempDir()
	resA, err := Build(ctx, q35Options(t, outA))
	if err != nil {
		t.Fatal(err)
	}
	kernelA := stageEntry(t, resA, "kernel")
	record := reproducedKernel(t, kernelA)
	shareKernel := false
	if want, err := os.ReadFile(record); err == nil && os.Getenv("FWBUILD_TEST_REBUILD_KERNEL") == "" {
		if sum, err := hashFile(filepath.Join(kernelA, "bzImage")); err == nil && sum == strings.TrimSpace(string(want)) {
			shareKernel = true
			t.Logf("kernel %s: its cold rebuild matched in an earlier run (%s): shared, not compiled again", filepath.Base(kernelA), record)
		}
	}

	fresh := t.TempDir()
	comps, err := Fetch(ctx, testdeps.Board(t, "qemu-q35"), testdeps.CacheDir(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(fresh, "pkgs"), 0o755)
	for _, c := range comps {
		if err := os.Symlink(c.Root, filepath.Join(fresh, "pkgs", c.SHA256)); err != nil && !os.IsExist(err) {
			t.Fatal(err)
		}
	}
	// The unpacked kernel source is shared too: an entry checked against its
	// manifest on every use, and unpacking 1.4 GB again proves nothing the
	// packages' hashes do not. The kernel is compiled again from it.
	if err := os.Symlink(filepath.Join(testdeps.CacheDir(t), "src"), filepath.Join(fresh, "src")); err != nil {
		t.Fatal(err)
	}
	if shareKernel {
		if err := os.Symlink(filepath.Dir(kernelA), filepath.Join(fresh, "kernel")); err != nil {
			t.Fatal(err)
		}
	}
	outB := t.TempDir()
	o := q35Options(t, outB)
	o.CacheDir = fresh
	t.Chdir(t.TempDir())
	res, err := Build(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range res.Stages {
		if s.Cached && (s.Name == "kernel" && !shareKernel || s.Name == "initramfs" || s.Name == "payload") {
			t.Errorf("stage %s came from a cache in the fresh build", s.Name)
		}
	}
	sumsA, _ := os.ReadFile(filepath.Join(outA, "SHA256SUMS"))
	sumsB, _ := os.ReadFile(filepath.Join(outB, "SHA256SUMS"))
	if !bytes.Equal(sumsA, sumsB) {
		for _, d := range diffOutputs(outA, outB) {
			t.Error(d)
		}
		t.Fatalf("SHA256SUMS differ:\n%s\nvs\n%s", sumsA, sumsB)
	}
	for _, n := range []string{SBOMFile} {
		a, _ := os.ReadFile(filepath.Join(outA, n))
		b, _ := os.ReadFile(filepath.Join(outB, n))
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("%s differs between the two builds (or is empty)", n)
		}
	}
	if !shareKernel && !t.Failed() {
		kernelB := stageEntry(t, res, "kernel")
		a, errA := hashFile(filepath.Join(kernelA, "bzImage"))
		b, errB := hashFile(filepath.Join(kernelB, "bzImage"))
		if errA != nil || errB != nil || a != b {
			t.Fatalf("the two kernels differ (%s, %s): %v %v", kernelA, kernelB, errA, errB)
		}
		os.MkdirAll(filepath.Dir(record), 0o755)
		if err := os.WriteFile(record, []byte(a+"\n"), 0o644); err != nil {
			t.Logf("record the reproduced kernel: %v", err)
		}
	}
}

// stageEntry is the cache entry a build's stage used.
func stageEntry(t *testing.T, res *Result, stage string) string {
	t.Helper()
	for _, s := range res.Stages {
		if s.Name == stage && s.Entry != "" {
			return s.Entry
		}
	}
	t.Fatalf("the build reports no cache entry for stage %s: %+v", stage, res.Stages)
	return ""
}

// reproducedKernel is where TestReproducible records that the kernel entry's
// cold rebuild gave the same bzImage (its SHA-256): beside the shared cache's
// entries, in a directory that is no cache kind (so never pruned with them).
func reproducedKernel(t *testing.T, entry string) string {
	return filepath.Join(testdeps.CacheDir(t), "test-records", "reproduced-kernel-"+filepath.Base(entry))
}

// hashFile is a file's SHA-256 (hex).
func hashFile(p string) (string, error) {
	sum, _, err := atomicfile.HashFile(p)
	return sum, err
}

// diffOutputs names each differing artefact and its first differing offset,
// and for the control domain archive the first differing member.
func diffOutputs(a, b string) []string {
	var out []string
	entries, _ := os.ReadDir(a)
	for _, e := range entries {
		da, _ := os.ReadFile(filepath.Join(a, e.Name()))
		db, err := os.ReadFile(filepath.Join(b, e.Name()))
		if err != nil {
			out = append(out, fmt.Sprintf("%s: only in the first build", e.Name()))
			continue
		}
		if bytes.Equal(da, db) {
			continue
		}
		off := firstDiff(da, db)
		msg := fmt.Sprintf("%s differs: sizes %d/%d, first difference at offset %#x", e.Name(), len(da), len(db), off)
		if strings.HasPrefix(e.Name(), "initramfs.cpio") {
			msg += "; " + cpioDiff(da, db)
		}
		out = append(out, msg)
	}
	return out
}

func firstDiff(a, b []byte) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

func cpioMembers(data []byte) (map[string][]byte, []string, error) {
	var r io.Reader = bytes.NewReader(data)
	if bytes.HasPrefix(data, []byte{0xfd, '7', 'z', 'X', 'Z'}) {
		xr, err := xz.NewReader(r)
		if err != nil {
			return nil, nil, err
		}
		r = xr
	} else if cmd := exec.Command("zstd", "-dc"); bytes.HasPrefix(data, []byte{0x28, 0xb5, 0x2f, 0xfd}) {
		cmd.Stdin = bytes.NewReader(data)
		raw, err := cmd.Output()
		if err != nil {
			return nil, nil, err
		}
		r = bytes.NewReader(raw)
	}
	cr := cpio.NewReader(r)
	m := map[string][]byte{}
	var order []string
	for {
		h, err := cr.Next()
		if err == io.EOF {
			return m, order, nil
		}
		if err != nil {
			return m, order, err
		}
		body, _ := io.ReadAll(cr)
		m[h.Name] = append([]byte(fmt.Sprintf("%o %d %d %v|", h.Mode, h.Uid, h.Guid, h.ModTime.Unix())), body...)
		order = append(order, h.Name)
	}
}

func cpioDiff(a, b []byte) string {
	ma, order, errA := cpioMembers(a)
	mb, _, errB := cpioMembers(b)
	if errA != nil || errB != nil {
		return fmt.Sprintf("cannot read the archives: %v / %v", errA, errB)
	}
	for _, n := range order {
		if !bytes.Equal(ma[n], mb[n]) {
			return fmt.Sprintf("first differing member %s", n)
		}
	}
	if len(ma) != len(mb) {
		return fmt.Sprintf("member count %d vs %d", len(ma), len(mb))
	}
	return "members equal: the difference is in the archive framing"
}

// The difference report must point at the artefact, the offset and the member.
func TestDiffOutputs(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(a, "spi.bin"), []byte("abcdef"), 0o644)
	os.WriteFile(filepath.Join(b, "spi.bin"), []byte("abcXef"), 0o644)
	os.WriteFile(filepath.Join(a, "same"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(b, "same"), []byte("x"), 0o644)
	mk := func(second string) []byte {
		var raw bytes.Buffer
		w := cpio.NewWriter(&raw)
		for _, f := range []struct{ name, body string }{{"bin/a", "same"}, {"bin/b", second}} {
			w.WriteHeader(&cpio.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body))})
			w.Write([]byte(f.body))
		}
		w.Close()
		var buf bytes.Buffer
		xw, _ := xz.NewWriter(&buf)
		xw.Write(raw.Bytes())
		xw.Close()
		return buf.Bytes()
	}
	os.WriteFile(filepath.Join(a, "initramfs.cpio.xz"), mk("one"), 0o644)
	os.WriteFile(filepath.Join(b, "initramfs.cpio.xz"), mk("two"), 0o644)
	d := strings.Join(diffOutputs(a, b), "\n")
	for _, want := range []string{"spi.bin differs: sizes 6/6, first difference at offset 0x3", "initramfs.cpio.xz differs", "first differing member bin/b"} {
		if !strings.Contains(d, want) {
			t.Errorf("report lacks %q:\n%s", want, d)
		}
	}
	if strings.Contains(d, "same") {
		t.Errorf("report names an identical file:\n%s", d)
	}
}
