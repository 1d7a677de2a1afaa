package main

// The bad-input suite: fwbuild build/flash/test on broken inputs must exit
// non-zero with an error that names the culprit, and must neither create nor
// modify any output file.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/internal/pipeline"
	"github.com/fwbuild/fwbuild/internal/testdeps"
)

// seededCache is a cache whose packages, kernels and stages are the shared
// test cache's (so nothing is downloaded or rebuilt twice), plus fake
// packages the test writes into its own pkgs/.
func seededCache(t *testing.T, shareStages bool) string {
	t.Helper()
	real := testdeps.CacheDir(t)
	b := testdeps.Board(t, "qemu-q35")
	comps, err := pipeline.Fetch(context.Background(), b, real, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "pkgs"), 0o755)
	for _, c := range comps {
		os.Symlink(c.Root, filepath.Join(dir, "pkgs", c.SHA256))
	}
	// The dom0 kernel is built (or found) once in the shared cache: the
	// failures under test come after it, and a fresh CI cache has none yet.
	root := testdeps.RepoRoot(t)
	if _, err := pipeline.Build(context.Background(), pipeline.Options{Board: b, BoardsDir: filepath.Join(root, "boards"),
		CacheDir: real, OutDir: t.TempDir(), Only: "kernel"}); err != nil {
		t.Fatalf("build the dom0 kernel: %v", err)
	}
	for _, d := range []string{"kernel", "src"} {
		os.MkdirAll(filepath.Join(real, d), 0o755)
		os.Symlink(filepath.Join(real, d), filepath.Join(dir, d))
	}
	if shareStages {
		os.MkdirAll(filepath.Join(real, "stages"), 0o755)
		os.Symlink(filepath.Join(real, "stages"), filepath.Join(dir, "stages"))
	}
	return dir
}

// seedControlDomain copies the shared cache's qemu-q35 control domain (the
// initramfs stage entry) into a test's own stages: a test that needs stages
// of its own to damage or cancel need not spend minutes on a u-root build
// whose result is the shared one, byte for byte.
func seedControlDomain(t *testing.T, dir string) {
	t.Helper()
	real := testdeps.CacheDir(t)
	root := testdeps.RepoRoot(t)
	if _, err := pipeline.Build(context.Background(), pipeline.Options{Board: testdeps.Board(t, "qemu-q35"), BoardsDir: filepath.Join(root, "boards"),
		CacheDir: real, OutDir: t.TempDir(), Only: "initramfs"}); err != nil {
		t.Fatalf("build the control domain: %v", err)
	}
	// The entry that build used is the one whose lock it touched last.
	locks, _ := filepath.Glob(filepath.Join(real, "stages", "initramfs", "*.lock"))
	var newest string
	var at time.Time
	for _, l := range locks {
		if st, err := os.Stat(l); err == nil && st.ModTime().After(at) {
			newest, at = l, st.ModTime()
		}
	}
	if newest == "" {
		t.Fatal("no initramfs entry in the shared cache after building it")
	}
	entry := strings.TrimSuffix(newest, ".lock")
	dst := filepath.Join(dir, "stages", "initramfs")
	os.MkdirAll(dst, 0o755)
	if out, err := exec.Command("cp", "-a", entry, dst).CombinedOutput(); err != nil {
		t.Fatalf("seed the control domain: %v\n%s", err, out)
	}
}

// fakePackage puts files into the cache as if a package with hash sha had been fetched.
func fakePackage(t *testing.T, cacheDir, sha string, files map[string][]byte) {
	t.Helper()
	for rel, data := range files {
		p := filepath.Join(cacheDir, "pkgs", sha, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func variant(t *testing.T, name, extra string) string {
	t.Helper()
	root := testdeps.RepoRoot(t)
	p := filepath.Join(t.TempDir(), name+".yaml")
	text := "extends: " + filepath.Join(root, "boards", "qemu-q35.yaml") + "\nname: " + name + "\n" + extra
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// outState is every file under dir with its content hash and mtime.
func outState(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return nil
		}
		data, _ := os.ReadFile(p)
		m[p] = fmt.Sprintf("%x %v", sha256.Sum256(data), info.ModTime().UnixNano())
		return nil
	})
	return m
}

// prevOut is an output directory holding a previous build's files.
func prevOut(t *testing.T) string {
	out := filepath.Join(t.TempDir(), "out")
	os.MkdirAll(out, 0o755)
	for _, n := range []string{"usb.img", "spi.bin", "manifest.json"} {
		os.WriteFile(filepath.Join(out, n), []byte("previous "+n), 0o644)
	}
	return out
}

func runIn(t *testing.T, ctx context.Context, cacheDir string, args ...string) (int, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(ctx, append([]string{"--boards", "../../boards", "--cache", cacheDir}, args...), &out, &errb)
	return code, out.String() + errb.String()
}

func TestBadInputs(t *testing.T) {
	cache := seededCache(t, true)
	code, err := os.ReadFile(testdeps.File(t, "ovmf", "code"))
	if err != nil {
		t.Fatal(err)
	}
	truncSHA := strings.Repeat("ab", 32)
	fakePackage(t, cache, truncSHA, map[string][]byte{"fw/OVMF_CODE.fd": code[:len(code)/3]})
	notKernel := bytes.Repeat([]byte("not a kernel "), 1000)

	cases := []struct {
		name    string
		profile string // YAML added to a qemu-q35 variant; empty: qemu-q35
		args    []string
		want    []string          // all must appear in the output
		files   map[string][]byte // written next to the variant (a kernel path: must be in its tree)
	}{
		{
			name: "truncated firmware",
			profile: "components:\n  - {name: truncfw, package: fake-ovmf, version: \"1\", sha256: " + truncSHA + ", files: {code: fw/OVMF_CODE.fd}}\n" +
				"outputs:\n  spi:\n    firmware: truncfw:code\n",
			want: []string{"spi: ", "truncfw"},
		},
		{
			name: "legacy placement: firmware without the payload slot",
			profile: "outputs:\n  spi:\n    payload: \"\"\n    descriptor: \"\"\n    chip_size: 16MiB\n    mapped: 16MiB\n" +
				"    payload_file: 11111111-2222-3333-4444-555555555555\n    regions:\n" +
				"      - {name: vpd, start: 0, size: 64KiB, preserve: true}\n      - {name: bios, start: 0x10000, size: 0xFF0000, firmware: true}\n",
			want: []string{"11111111-2222-3333-4444-555555555555"},
		},
		{
			// OVMF.fd's compressed volume cannot take the launcher without a removal.
			name: "firmware with no room for the launcher",
			profile: "outputs:\n  spi:\n    firmware: ovmf:fd-2m\n    descriptor: \"\"\n    chip_size: 16MiB\n    mapped: 16MiB\n    regions:\n" +
				"      - {name: bios, firmware: true, start: 0x0, size: 16MiB}\n      - {name: guests, guests: true, start: 0x0, size: 0x3C0000}\n" +
				"      - {name: payload, payload: true, start: 0x3C0000, size: 0xA40000}\ncontrol_domain:\n  compression: xz-x86\n",
			want: []string{"no room: volume 48DB5E17-707C-472D-91CD-1613E7EF51B0", "outputs.spi.remove", "nothing was written"},
		},
		{
			name:    "kernel that is not a bzImage",
			profile: "hypervisor:\n  dom0:\n    kernel:\n      path: vmlinuz\n",
			files:   map[string][]byte{"vmlinuz": notKernel},
			want:    []string{"vmlinuz", "bzImage"},
		},
		{
			name:    "profile mistake",
			profile: "outputs:\n  usb:\n    size: 64 MB\n",
			want:    []string{"bad-input.yaml:5:11", "outputs.usb.size"},
		},
		{
			name:    "guest memory too large",
			profile: "guests:\n  - {name: huge, memory: 2GiB, kernel: dom0, autostart: true}\n",
			want:    []string{"qemu-q35.yaml:", "guests: guests need ", "and dom0 512MiB", "more than the board's 2GiB RAM"},
		},
		{
			name:    "duplicate guest names",
			profile: "guests:\n  - {name: twin, memory: 64MiB, kernel: dom0}\n  - {name: twin, memory: 64MiB, kernel: dom0}\n",
			want:    []string{"bad-input.yaml:", `guest "twin" is declared twice`},
		},
		{
			name:    "guest without a kernel",
			profile: "guests:\n  - {name: nokernel, memory: 64MiB}\n",
			want:    []string{"bad-input.yaml:", ".kernel: required field is missing"},
		},
		{
			name:    "component file missing from its package",
			profile: "components:\n  - name: xen\n    files: {efi: boot/xen-4.17-amd64.efi, gz: boot/no-such-xen.gz}\n",
			want:    []string{"boot/no-such-xen.gz", "component \"xen\""},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := prevOut(t)
			before := outState(t, out)
			board := "qemu-q35"
			if c.profile != "" {
				board = variant(t, "bad-input", c.profile)
			}
			for name, data := range c.files {
				os.WriteFile(filepath.Join(filepath.Dir(board), name), data, 0o644)
			}
			args := c.args
			if args == nil {
				args = []string{"build", "--board", board, "--out", out}
			}
			code, output := runIn(t, context.Background(), cache, args...)
			if code != 1 {
				t.Fatalf("exit %d, want 1:\n%s", code, output)
			}
			for _, w := range c.want {
				if !strings.Contains(output, w) {
					t.Errorf("output does not name %q:\n%s", w, output)
				}
			}
			if after := outState(t, out); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Errorf("outputs changed by a failed build:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

// A full output file system fails the build cleanly: no partial artefact
// stays behind and the previous ones are intact.
func TestBuildFullOutputDir(t *testing.T) {
	cache := seededCache(t, true)
	out := filepath.Join(t.TempDir(), "out")
	os.MkdirAll(out, 0o755)
	if b, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "fwbuild-test", out).CombinedOutput(); err != nil {
		t.Fatalf("mount a small tmpfs (the test runs as root, as CI does): %v\n%s", err, b)
	}
	defer exec.Command("umount", out).Run()
	os.WriteFile(filepath.Join(out, "spi.bin"), []byte("previous"), 0o644)
	before := outState(t, out)
	code, output := runIn(t, context.Background(), cache, "build", "--board", "qemu-q35", "--out", out)
	if code != 1 || !strings.Contains(output, "output") || !strings.Contains(output, "no space left") {
		t.Fatalf("exit %d, want 1 with an output error naming the cause:\n%s", code, output)
	}
	after := outState(t, out)
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("full output dir: files changed or left behind:\nbefore %v\nafter  %v", before, after)
	}
}

// An interrupted build (Ctrl-C) leaves no output, no temp directory in the
// cache and no child process behind.
func TestInterruptedBuild(t *testing.T) {
	cache := seededCache(t, false) // stages cold: the build is busy in the initramfs stage
	out := filepath.Join(t.TempDir(), "out")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	var output string
	go func() {
		var code int
		code, output = runIn(t, ctx, cache, "build", "--board", "qemu-q35", "--out", out)
		done <- code
	}()
	// Wait until the initramfs stage runs (its temp dir exists), then interrupt.
	deadline := time.Now().Add(5 * time.Minute)
	for {
		if m, _ := filepath.Glob(filepath.Join(cache, "stages", "initramfs", ".*.tmp-*")); len(m) > 0 {
			time.Sleep(3 * time.Second)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the initramfs stage never started")
		}
		time.Sleep(200 * time.Millisecond)
	}
	cancel()
	var code int
	select {
	case code = <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("build did not stop within 2 minutes of cancellation")
	}
	if code != 1 || !strings.Contains(output, "context canceled") {
		t.Errorf("exit %d, want 1 with a cancellation error:\n%s", code, output)
	}
	if _, err := os.Stat(out); err == nil {
		entries, _ := os.ReadDir(out)
		if len(entries) > 0 {
			t.Errorf("interrupted build left outputs: %v", entries)
		}
	}
	var left []string
	filepath.Walk(cache, func(p string, info os.FileInfo, err error) error {
		if err == nil && strings.Contains(filepath.Base(p), ".tmp-") {
			left = append(left, p)
		}
		return nil
	})
	if len(left) > 0 {
		t.Errorf("temp files left in the cache: %v", left)
	}
	// The go toolchain started for u-root must be gone too.
	time.Sleep(time.Second)
	if _, err := exec.LookPath("pgrep"); err != nil {
		t.Fatal("pgrep not found: apt-get install procps (or run fwbuild doctor --fix)")
	}
	if b, _ := exec.Command("pgrep", "-f", cache).Output(); len(bytes.TrimSpace(b)) > 0 {
		ps, _ := exec.Command("ps", "-o", "pid,args", "-p", strings.Join(strings.Fields(string(b)), ",")).Output()
		t.Errorf("child processes survived the interrupt:\n%s", ps)
	}
}

// flash with a wrong-size image or an unknown region fails before touching the chip.
func TestFlashBadInputs(t *testing.T) {
	dir := t.TempDir()
	chip := filepath.Join(dir, "chip.bin")
	data := bytes.Repeat([]byte{0x5a, 0xa5, 0x3c}, (32<<20)/3+1)[:32<<20]
	os.WriteFile(chip, data, 0o644)
	small := filepath.Join(dir, "small.bin")
	os.WriteFile(small, make([]byte, 8<<20), 0o644)
	full := filepath.Join(dir, "full.bin")
	os.WriteFile(full, make([]byte, 32<<20), 0o644)
	prog := flashDummy(chip)
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"flash", "spi", "--board", "qemu-q35", "--programmer", prog, "--image", small, "--backup-dir", dir}, 1, "8388608-byte"},
		{[]string{"flash", "spi", "--board", "qemu-q35", "--programmer", prog, "--image", full, "--region", "nope", "--backup-dir", dir}, 1, "nope"},
		{[]string{"flash", "spi", "--board", "qemu-q35", "--image", full}, 2, "--programmer is required"},
		{[]string{"flash", "usb", "--device", filepath.Join(dir, "t.img"), "--image", filepath.Join(dir, "missing.img")}, 1, "missing.img"},
		{[]string{"test", "--board", "qemu-q35", "--path", "floppy"}, 2, `--path "floppy"`},
	}
	for _, c := range cases {
		code, output := runIn(t, context.Background(), t.TempDir(), c.args...)
		if code != c.code || !strings.Contains(output, c.want) {
			t.Errorf("fwbuild %v: exit %d (want %d), output lacks %q:\n%s", c.args, code, c.code, c.want, output)
		}
		if now, _ := os.ReadFile(chip); !bytes.Equal(now, data) {
			t.Fatalf("fwbuild %v modified the chip", c.args)
		}
	}
}
