package kbuild

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/hvcore/kconfig"
)

// miniTarball packs testdata/minikernel (a Makefile with the targets kbuild runs) as a
// kernel source .tar.xz.
func miniTarball(t *testing.T) string {
	t.Helper()
	needTool(t, "tar", "tar")
	needTool(t, "xz", "xz-utils")
	needTool(t, "make", "make")
	out := filepath.Join(t.TempDir(), "minikernel.tar.xz")
	if b, err := exec.Command("tar", "-cJf", out, "-C", "testdata", "minikernel").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, b)
	}
	return out
}

func needTool(t testing.TB, name, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s not found: apt-get install -y %s", name, pkg)
	}
}

// countingMake puts a `make` first on PATH that records each run in a file and then runs
// the real make (or fails, if fail is set). It returns a func reporting the run count.
func countingMake(t *testing.T, fail bool) func() int {
	t.Helper()
	real, err := exec.LookPath("make")
	if err != nil {
		t.Fatal("make not found: apt-get install -y make")
	}
	dir := t.TempDir()
	count := filepath.Join(dir, "runs")
	then := "exec " + real + ` "$@"`
	if fail {
		then = "echo 'make must not run' >&2; exit 1"
	}
	script := fmt.Sprintf("#!/bin/sh\necho \"$*\" >> %s\n%s\n", count, then)
	if err := os.WriteFile(filepath.Join(dir, "make"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return func() int {
		data, err := os.ReadFile(count)
		if errors.Is(err, os.ErrNotExist) {
			return 0
		}
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(string(data), "\n")
	}
}

func miniSpec(t *testing.T, fragment string) Spec {
	return Spec{
		SourceTarball: miniTarball(t),
		Fragment:      writeFile(t, filepath.Join(t.TempDir(), "board.config"), fragment),
		Epoch:         time.Unix(1700000000, 0),
		Jobs:          2,
	}
}

func TestBuildCacheHitRunsNoMake(t *testing.T) {
	s := miniSpec(t, "CONFIG_64BIT=y\nCONFIG_DEP=y\nCONFIG_NEEDS_DEP=y\n")
	s.MakeVars = map[string]string{"EXTRA": "x y"}
	cache := t.TempDir()
	runs := countingMake(t, false)
	var msgs []string
	r1, err := Build(context.Background(), cache, s, func(m string) { msgs = append(msgs, m) })
	if err != nil {
		t.Fatal(err)
	}
	if r1.Cached {
		t.Error("first build reported Cached")
	}
	if n := runs(); n != 3 {
		t.Errorf("make ran %d times, want 3 (tinyconfig, olddefconfig, bzImage)", n)
	}
	img, err := os.ReadFile(r1.BzImage)
	if err != nil {
		t.Fatal(err)
	}
	// The fixture writes the build identity and the .config it built with.
	wantHead := "built Tue Nov 14 22:13:20 UTC 2023 by fwbuild@fwbuild #1 vars=x y\n# tinyconfig\n"
	if !strings.HasPrefix(string(img), wantHead) || !strings.Contains(string(img), "\nCONFIG_NEEDS_DEP=y\n") {
		t.Errorf("bzImage = %q, want it to start with %q and hold the merged config", img, wantHead)
	}
	for _, p := range []string{r1.Config, r1.Log, filepath.Join(filepath.Dir(r1.BzImage), "inputs.json")} {
		if _, err := os.Stat(p); err != nil {
			t.Error(err)
		}
	}
	if filepath.Base(filepath.Dir(r1.BzImage)) != r1.Key {
		t.Errorf("result dir %s is not named by key %s", r1.BzImage, r1.Key)
	}
	if len(msgs) == 0 {
		t.Error("no progress messages")
	}
	var stages []string
	for _, st := range r1.Stages {
		stages = append(stages, st.Name)
	}
	if strings.Join(stages, ",") != "source,config,bzImage,install" {
		t.Errorf("stages = %v", stages)
	}
	// Nothing but the source tree, the result and lock files stays in the cache.
	left, _ := filepath.Glob(filepath.Join(cache, "*", "*.tmp"))
	entryTmps, _ := filepath.Glob(filepath.Join(cache, "*", ".*.tmp-*"))
	if left = append(left, entryTmps...); len(left) > 0 {
		t.Errorf("temporary dirs left: %v", left)
	}

	// A hit must not run make at all: a make that fails would break it.
	runs = countingMake(t, true)
	r2, err := Build(context.Background(), cache, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !r2.Cached || runs() != 0 {
		t.Errorf("second build: Cached=%v, make ran %d times; want a hit without make", r2.Cached, runs())
	}
	if r2.Key != r1.Key || r2.BzImage != r1.BzImage {
		t.Errorf("second build: %+v, first %+v", r2, r1)
	}

	// Another input is another key; with a failing make it cannot be built.
	s.Epoch = s.Epoch.Add(time.Second)
	if r3, err := Build(context.Background(), cache, s, func(string) {}); err == nil || r3.Key == r1.Key {
		t.Errorf("changed epoch: err=%v key=%s: want a miss (make fails)", err, r3.Key)
	}
}

func TestBuildConcurrentSameKey(t *testing.T) {
	s := miniSpec(t, "CONFIG_64BIT=y\n")
	cache := t.TempDir()
	runs := countingMake(t, false)
	const n = 4
	var wg sync.WaitGroup
	res := make([]Result, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { res[i], errs[i] = Build(context.Background(), cache, s, func(string) {}) })
	}
	wg.Wait()
	built := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if !res[i].Cached {
			built++
		}
		if res[i].Key != res[0].Key {
			t.Errorf("keys differ: %s %s", res[i].Key, res[0].Key)
		}
	}
	if built != 1 || runs() != 3 {
		t.Errorf("%d builders ran make (%d make runs); want exactly one build of 3 make runs", built, runs())
	}
}

func TestBuildDroppedOption(t *testing.T) {
	s := miniSpec(t, "CONFIG_64BIT=y\n\n# needs CONFIG_DEP, which is missing\nCONFIG_NEEDS_DEP=y\n")
	runs := countingMake(t, false)
	_, err := Build(context.Background(), t.TempDir(), s, func(string) {})
	var de *kconfig.DroppedError
	if !errors.As(err, &de) || len(de.Dropped) != 1 || de.Dropped[0].Name != "CONFIG_NEEDS_DEP" {
		t.Fatalf("err = %v, want CONFIG_NEEDS_DEP dropped", err)
	}
	if !strings.Contains(err.Error(), s.Fragment+":4: CONFIG_NEEDS_DEP=y requested") {
		t.Errorf("error %q does not name %s:4", err, s.Fragment)
	}
	if n := runs(); n != 2 {
		t.Errorf("make ran %d times, want 2: the check must stop before bzImage", n)
	}
}

func TestBuildFailureShowsLogTail(t *testing.T) {
	s := miniSpec(t, "CONFIG_FAIL=y\n")
	cache := t.TempDir()
	_, err := Build(context.Background(), cache, s, func(string) {})
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	if !strings.Contains(msg, "kbuild: make bzImage") || !strings.Contains(msg, "fixture: error: CONFIG_FAIL is set") {
		t.Errorf("error lacks the failing target or the log tail:\n%s", msg)
	}
	// The tail is the last 30 lines of the log (early noise lines scrolled out of it).
	_, tailText, _ := strings.Cut(msg, " ---\n")
	if n := len(strings.Split(tailText, "\n")); n != tailLines || strings.Contains(msg, "noise line 1\n") {
		t.Errorf("tail has %d lines, want the last %d:\n%s", n, tailLines, msg)
	}
	logs, _ := filepath.Glob(filepath.Join(cache, "kernel", "*.tmp", "build.log"))
	if len(logs) != 1 || !strings.Contains(msg, logs[0]) {
		t.Errorf("error does not name the log %v:\n%s", logs, msg)
	}
	if ents, _ := filepath.Glob(filepath.Join(cache, "kernel", "*", "bzImage")); len(ents) != 0 {
		t.Errorf("a failed build left a result: %v", ents)
	}
}

func TestBuildCancel(t *testing.T) {
	s := miniSpec(t, "CONFIG_SLOW=y\n")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	_, err := Build(ctx, t.TempDir(), s, func(string) {})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
	// The fixture sleeps 60 s in a child of make: killing only make would wait for it.
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("cancel took %s", d)
	}
}

// A second build of a key that is being built waits, says so, and stops waiting when its
// context ends (Ctrl-C), leaving the first build alone.
func TestBuildLockWaitEndsOnCancel(t *testing.T) {
	s := miniSpec(t, "CONFIG_SLOW=y\n")
	cache := t.TempDir()
	first, stopFirst := context.WithCancel(context.Background())
	defer stopFirst()
	firstErr := make(chan error, 1)
	go func() {
		_, err := Build(first, cache, s, func(string) {})
		firstErr <- err
	}()
	// The first build holds the lock once its object tree exists.
	deadline := time.Now().Add(time.Minute)
	for {
		if m, _ := filepath.Glob(filepath.Join(cache, "kernel", "*.tmp", "obj")); len(m) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first build never started")
		}
		time.Sleep(20 * time.Millisecond)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	var mu sync.Mutex
	var msgs []string
	start := time.Now()
	_, err := Build(ctx, cache, s, func(m string) {
		mu.Lock()
		msgs = append(msgs, m)
		mu.Unlock()
	})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.HasPrefix(err.Error(), "kbuild: ") {
		t.Errorf("err = %v, want a kbuild error wrapping context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the wait ended %s after start, its deadline was 500ms", d)
	}
	mu.Lock()
	waited := strings.Join(msgs, "\n")
	mu.Unlock()
	if !strings.Contains(waited, ": waiting for another build of the same kernel") {
		t.Errorf("no waiting message in %q", waited)
	}
	select {
	case err := <-firstErr:
		t.Fatalf("the first build ended when the second gave up: %v", err)
	default:
	}
	stopFirst()
	if err := <-firstErr; !errors.Is(err, context.Canceled) {
		t.Errorf("first build: %v, want context.Canceled", err)
	}
}

func TestBuildMissingTools(t *testing.T) {
	s := miniSpec(t, "CONFIG_64BIT=y\n")
	// A PATH with the compiler and linker (needed for the key) but no make, bison, flex...
	dir := t.TempDir()
	for _, tool := range []string{"gcc", "ld"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Fatalf("%s not found: apt-get install -y build-essential", tool)
		}
		if err := os.Symlink(p, filepath.Join(dir, tool)); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", dir)
	_, err := Build(context.Background(), t.TempDir(), s, func(string) {})
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range []string{"missing kernel build tools: make, bc, bison, flex", "apt-get install -y make bc bison flex"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
}

func TestBuildSourceChecksum(t *testing.T) {
	s := miniSpec(t, "CONFIG_64BIT=y\n")
	s.SourceSHA256 = strings.Repeat("ab", 32)
	cache := t.TempDir()
	_, err := Build(context.Background(), cache, s, func(string) {})
	if err == nil || !strings.Contains(err.Error(), "want "+s.SourceSHA256) {
		t.Fatalf("err = %v, want a checksum mismatch", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(cache, "src")); len(ents) != 1 || ents[0].Name() != s.SourceSHA256+".lock" {
		t.Errorf("source cache after a bad checksum holds %v, want only the lock file", ents)
	}
}

func TestSpecErrors(t *testing.T) {
	good := Spec{SourceTarball: "x.tar.xz", Fragment: "f.config"}
	for _, tc := range []struct {
		name string
		edit func(*Spec)
		want string
	}{
		{"no tarball", func(s *Spec) { s.SourceTarball = "" }, "SourceTarball"},
		{"no fragment", func(s *Spec) { s.Fragment = "" }, "Fragment"},
		{"base", func(s *Spec) { s.Base = "defconfig" }, "want tinyconfig or allnoconfig"},
		{"sha", func(s *Spec) { s.SourceSHA256 = "ABC" }, "SourceSHA256"},
		{"reserved var", func(s *Spec) { s.MakeVars = map[string]string{"KBUILD_BUILD_TIMESTAMP": "x"} }, "cannot be overridden"},
		{"bad var", func(s *Spec) { s.MakeVars = map[string]string{"A B": "x"} }, "not a variable name"},
	} {
		s := good
		tc.edit(&s)
		if err := s.validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
	if err := good.validate(); err != nil {
		t.Errorf("good spec: %v", err)
	}
}

func TestKeyStableAndSensitive(t *testing.T) {
	base := keyInput{
		Version: keyVersion, SourceSHA256: strings.Repeat("0", 64), Base: "tinyconfig",
		Fragment: "CONFIG_64BIT=y\n", Compiler: "gcc (Debian 12.2.0-14) 12.2.0",
		Linker: "GNU ld (GNU Binutils for Debian) 2.40", Epoch: 1700000000,
		MakeVars: map[string]string{"A": "1", "B": "2", "C": "3", "D": "4", "E": "5"},
	}
	k0, _ := base.hash()
	for range 50 { // map iteration order must not matter
		cp := base
		cp.MakeVars = map[string]string{"E": "5", "D": "4", "C": "3", "B": "2", "A": "1"}
		if k, _ := cp.hash(); k != k0 {
			t.Fatalf("same inputs, different keys: %s %s", k, k0)
		}
	}
	for name, edit := range map[string]func(*keyInput){
		"version":  func(k *keyInput) { k.Version++ },
		"source":   func(k *keyInput) { k.SourceSHA256 = strings.Repeat("1", 64) },
		"base":     func(k *keyInput) { k.Base = "allnoconfig" },
		"fragment": func(k *keyInput) { k.Fragment += "CONFIG_SMP=y\n" },
		"compiler": func(k *keyInput) { k.Compiler = "gcc (Debian 12.2.0-15) 12.2.0" },
		"linker":   func(k *keyInput) { k.Linker += "." },
		"epoch":    func(k *keyInput) { k.Epoch++ },
		"var":      func(k *keyInput) { k.MakeVars = map[string]string{"A": "1", "B": "2", "C": "3", "D": "4", "E": "6"} },
		"var name": func(k *keyInput) { k.MakeVars = map[string]string{"A": "1", "B": "2", "C": "3", "D": "4", "F": "5"} },
	} {
		cp := base
		edit(&cp)
		if k, _ := cp.hash(); k == k0 {
			t.Errorf("changing %s does not change the key", name)
		}
	}
}

// The key depends on what the fragment asks for, not on comments, layout or file names.
func TestKeyIgnoresFragmentLayout(t *testing.T) {
	dir := t.TempDir()
	a := writeFile(t, filepath.Join(dir, "a.config"), "# one\nCONFIG_A=y\n\n# CONFIG_B is not set\n")
	writeFile(t, filepath.Join(dir, "sub", "inc.config"), "CONFIG_A=y\n")
	b := writeFile(t, filepath.Join(dir, "b.config"), "#include \"sub/inc.config\"\n# two\nCONFIG_B=n\n")
	fa, err := kconfig.ParseFragment(a)
	if err != nil {
		t.Fatal(err)
	}
	fb, err := kconfig.ParseFragment(b)
	if err != nil {
		t.Fatal(err)
	}
	if string(fa.Text()) != string(fb.Text()) {
		t.Errorf("%q != %q", fa.Text(), fb.Text())
	}
}

// KBUILD_BUILD_TIMESTAMP goes through `date -d` in usr/gen_initramfs.sh: it must parse
// back to the epoch, or the built-in initramfs gets the build machine's clock.
func TestTimestampParsesWithDate(t *testing.T) {
	needTool(t, "date", "coreutils")
	for _, sec := range []int64{0, 1700000000, 1704067205} {
		ts := kbuildTimestamp(time.Unix(sec, 0))
		out, err := exec.Command("date", "-d", ts, "+%s").Output()
		if err != nil {
			t.Fatalf("date -d %q: %v", ts, err)
		}
		if got, _ := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); got != sec {
			t.Errorf("date -d %q = %d, want %d", ts, got, sec)
		}
	}
}

func TestLogWriterCountsObjects(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := &logWriter{f: f}
	// Lines split across writes must count once.
	for _, chunk := range []string{"  CC      init/main.o\n  C", "C      kernel/fork.o\n  HOSTCC  scripts/x\n", "  AS      arch/x86/entry/entry_64.o\n  LD      vmlinux\n  CC  "} {
		w.Write([]byte(chunk))
	}
	if n := w.objects(); n != 3 {
		t.Errorf("objects = %d, want 3", n)
	}
}

func TestSourceSumMemo(t *testing.T) {
	cache := t.TempDir()
	tb := writeFile(t, filepath.Join(t.TempDir(), "src.tar.xz"), "one")
	want1, _ := hashFile(tb)
	for range 2 {
		if got, err := sourceSum(cache, tb); err != nil || got != want1 {
			t.Fatalf("sourceSum = %s, %v; want %s", got, err, want1)
		}
	}
	if memos, _ := filepath.Glob(filepath.Join(cache, "src", "sums", "*")); len(memos) != 1 {
		t.Fatalf("memo files: %v", memos)
	}
	// A rewritten file (new size and mtime) is hashed again.
	writeFile(t, tb, "two, longer")
	os.Chtimes(tb, time.Now(), time.Now().Add(time.Hour))
	want2, _ := hashFile(tb)
	if got, err := sourceSum(cache, tb); err != nil || got != want2 {
		t.Fatalf("after rewrite sourceSum = %s, %v; want %s", got, err, want2)
	}
}

func TestBuildRelativeCacheDir(t *testing.T) {
	s := miniSpec(t, "CONFIG_64BIT=y\n")
	s.Fragment, _ = filepath.Abs(s.Fragment)
	dir := t.TempDir()
	t.Chdir(dir)
	r, err := Build(context.Background(), "cache", s, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "cache", "kernel", r.Key, "bzImage"); r.BzImage != want {
		t.Errorf("BzImage = %s, want %s", r.BzImage, want)
	}
}

func writeFile(t *testing.T, path, text string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
