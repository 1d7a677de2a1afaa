// Package kbuild builds a Linux bzImage (the Xen dom0 kernel) from a kernel source tarball
// and a Kconfig fragment, cached by content hash.
//
// A build is: `make <Base>` (tinyconfig or allnoconfig) in an out-of-tree directory, the
// fragment merged in with merge_config.sh semantics, `make olddefconfig`, a check that every
// requested option survived, then `make -jN bzImage`. Results live in
// <cache>/kernel/<key>/ where key is the SHA-256 of every input that reaches the output
// bytes (source hash, merged fragment, base target, compiler and linker versions, make
// variables, timestamp). The extracted source tree is cached once per tarball hash in
// <cache>/src/<sha256>/ and never written to (builds use make O=).
//
// Builds are reproducible: the timestamp, user, host and build number embedded in the
// kernel are fixed, and make runs with a clean environment.
package kbuild

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/fwbuild/fwbuild/hvcore/kconfig"
	"github.com/fwbuild/fwbuild/internal/progress"

	"github.com/fwbuild/fwbuild/internal/atomicfile"
	"github.com/fwbuild/fwbuild/internal/cache"
)

// Fixed identity embedded in the kernel's version string (uname -v, /proc/version).
const (
	BuildUser = "fwbuild"
	BuildHost = "fwbuild"
)

// keyVersion changes whenever the build procedure changes what ends up in the output.
const keyVersion = 1

// progressEvery is how often a running `make bzImage` reports progress.
const progressEvery = 15 * time.Second

// Spec describes one kernel build.
type Spec struct {
	// SourceTarball is the kernel source, e.g. usr/src/linux-source-6.1.tar.xz from Debian's
	// linux-source-6.1 package; it must hold one top-level directory.
	SourceTarball string
	// SourceSHA256 is the tarball's SHA-256 (hex). If empty it is computed once (~0.5 s) and
	// remembered in the cache by the file's path, size, mtime and inode; if set it is trusted
	// for the cache key. Either way it is verified whenever the tarball is extracted.
	SourceSHA256 string
	// Base is the make target the fragment applies to: "tinyconfig" (default) or "allnoconfig".
	Base string
	// Fragment is the path of the top Kconfig fragment (see kconfig.ParseFragment).
	Fragment string
	// Patches are unified diffs (-p1) applied to a copy of the source, in
	// order, before it is configured.
	Patches []string
	// MakeVars are extra make variables (CC, KCFLAGS, ...), passed on every make command line.
	MakeVars map[string]string
	// Epoch is the build timestamp embedded in the kernel (SOURCE_DATE_EPOCH); zero means
	// 1970-01-01 00:00:00 UTC.
	Epoch time.Time
	// Jobs is make's -j; 0 means the number of usable CPUs. It is not part of the key.
	Jobs int
}

// Result describes a built (or cached) kernel. All paths are inside the cache.
type Result struct {
	BzImage  string
	Config   string // the final .config
	Key      string // cache key (hex SHA-256); the directory name under <cache>/kernel
	Cached   bool   // true if no make ran
	Duration time.Duration
	Log      string  // full build log (of the build that produced the cached kernel)
	Stages   []Stage // per-stage timings of a cold build
}

// Stage is the duration of one step of a cold build.
type Stage struct {
	Name     string // "source", "config", "bzImage", "install"
	Duration time.Duration
}

// keyInput is everything that reaches the output bytes. It is hashed as JSON (map keys
// sorted by encoding/json) and stored next to the result as inputs.json.
type keyInput struct {
	Version      int               `json:"version"`
	SourceSHA256 string            `json:"source_sha256"`
	Base         string            `json:"base"`
	Fragment     string            `json:"fragment"`
	Patches      []string          `json:"patches,omitempty"` // name and SHA-256 of each
	Compiler     string            `json:"compiler"`
	Linker       string            `json:"linker"`
	Compressors  map[string]string `json:"compressors"`
	MakeVars     map[string]string `json:"make_vars"`
	Epoch        int64             `json:"epoch"`
}

func (k keyInput) hash() (string, []byte) {
	data, err := json.MarshalIndent(k, "", "  ")
	if err != nil {
		panic(err) // strings and ints only: cannot fail
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), append(data, '\n')
}

var (
	reVarName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	reSHA256  = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// reservedVars are set by Build itself; letting a caller override them would break
// reproducibility or the cache layout.
var reservedVars = map[string]bool{
	"O": true, "KBUILD_OUTPUT": true, "KCONFIG_CONFIG": true, "KCONFIG_ALLCONFIG": true,
	"KBUILD_BUILD_TIMESTAMP": true, "KBUILD_BUILD_USER": true, "KBUILD_BUILD_HOST": true,
	"KBUILD_BUILD_VERSION": true,
}

func (s Spec) validate() error {
	if s.SourceTarball == "" {
		return errors.New("kbuild: Spec.SourceTarball is empty: give the path of the kernel source .tar.xz")
	}
	if s.Fragment == "" {
		return errors.New("kbuild: Spec.Fragment is empty: give the path of the board's kernel config fragment")
	}
	switch s.Base {
	case "", "tinyconfig", "allnoconfig":
	default:
		return fmt.Errorf("kbuild: Spec.Base %q: want tinyconfig or allnoconfig", s.Base)
	}
	if s.SourceSHA256 != "" && !reSHA256.MatchString(s.SourceSHA256) {
		return fmt.Errorf("kbuild: Spec.SourceSHA256 %q: want 64 lowercase hex digits", s.SourceSHA256)
	}
	for k := range s.MakeVars {
		if !reVarName.MatchString(k) {
			return fmt.Errorf("kbuild: make variable %q: not a variable name", k)
		}
		if reservedVars[k] {
			return fmt.Errorf("kbuild: make variable %s is set by kbuild itself and cannot be overridden", k)
		}
	}
	return nil
}

func (s Spec) base() string {
	if s.Base == "" {
		return "tinyconfig"
	}
	return s.Base
}

func (s Spec) epoch() time.Time {
	if s.Epoch.IsZero() {
		return time.Unix(0, 0).UTC()
	}
	return s.Epoch.UTC()
}

// Build returns the kernel for s from cacheDir, building it on a miss. progress receives
// human-readable status lines during a cold build (nil: log them with slog). Builds of the
// same key, in this or another process, serialise on a lock file; the second one finds the
// first one's result.
func Build(ctx context.Context, cacheDir string, s Spec, progress func(string)) (Result, error) {
	start := time.Now()
	if progress == nil {
		progress = func(msg string) { slog.Info(msg) }
	}
	if err := s.validate(); err != nil {
		return Result{}, err
	}
	// make runs in the source tree: O= must not be relative to the caller's directory.
	cacheDir, err := filepath.Abs(cacheDir)
	if err != nil {
		return Result{}, fmt.Errorf("kbuild: cache dir: %w", err)
	}
	frag, err := kconfig.ParseFragment(s.Fragment)
	if err != nil {
		return Result{}, err
	}
	for _, o := range frag.Overrides {
		progress("kbuild: fragment override: " + o)
	}
	srcSum := s.SourceSHA256
	if srcSum == "" {
		if srcSum, err = sourceSum(cacheDir, s.SourceTarball); err != nil {
			return Result{}, fmt.Errorf("kbuild: hash kernel source: %w", err)
		}
	}
	tc, err := toolchain(ctx, s.MakeVars)
	if err != nil {
		return Result{}, err
	}
	patches, err := patchKeys(s.Patches)
	if err != nil {
		return Result{}, err
	}
	in := keyInput{
		Patches:      patches,
		Version:      keyVersion,
		SourceSHA256: srcSum,
		Base:         s.base(),
		Fragment:     string(frag.Text()),
		Compiler:     tc.compiler,
		Linker:       tc.linker,
		Compressors:  tc.compressors,
		MakeVars:     s.MakeVars,
		Epoch:        s.epoch().Unix(),
	}
	if in.MakeVars == nil {
		in.MakeVars = map[string]string{}
	}
	key, inputs := in.hash()

	d, err := cache.Open(cacheDir)
	if err != nil {
		return Result{}, fmt.Errorf("kbuild: %w", err)
	}
	// A hit is checked in full against its manifest (a few MB) and rebuilt
	// if damaged; one an older fwbuild built has none and is recorded as it
	// is, rather than costing minutes of rebuild.
	d = d.WithLog(slog.New(progressHandler{progress})).WithAdoptUnrecorded()
	// The source tree (1.5 GB) is read only by a cold build: checked
	// quickly, its manifest beside it so that its top level stays one
	// directory, as older fwbuilds sharing the cache require.
	srcDir := d.WithQuickVerify().WithManifestBeside()
	outDir := d.Path("kernel", key)
	res := Result{
		BzImage: filepath.Join(outDir, "bzImage"),
		Config:  filepath.Join(outDir, "config"),
		Log:     filepath.Join(outDir, "build.log"),
		Key:     key,
	}
	b := &builder{
		spec: s, frag: frag, key: key, progress: progress, tc: tc,
		work: filepath.Join(filepath.Dir(outDir), key+".tmp"),
	}
	var buildErr error
	e, err := d.WithWaiting(func(string, string) {
		progress(fmt.Sprintf("kbuild: %s: waiting for another build of the same kernel", short(key)))
	}).Entry(ctx, "kernel", key, func(tmp string) error {
		buildErr = b.build(ctx, srcDir, srcSum, inputs, tmp, &res)
		return buildErr
	})
	if err != nil {
		if err != buildErr {
			err = fmt.Errorf("kbuild: cache entry %s: %w", short(key), err)
		}
		return Result{}, err
	}
	if e.Hit {
		reportCached(ctx, res.Log)
		res.Cached = true
		res.Duration = time.Since(start)
		return res, nil
	}
	// The object tree (hundreds of MB) is not reused: any input change is a new key.
	if err := os.RemoveAll(b.work); err != nil {
		return Result{}, fmt.Errorf("kbuild: remove build dir: %w", err)
	}
	res.Duration = time.Since(start)
	progress(fmt.Sprintf("kbuild: %s: built %s in %s", short(key), res.BzImage, res.Duration.Round(time.Second)))
	return res, nil
}

// reportCached shows a hit as a full bar: what the cached build compiled.
func reportCached(ctx context.Context, log string) {
	if n, err := countObjects(log); err == nil && n > 0 {
		task := progress.Start(ctx, "kernel (cached)", progress.Items, int64(n))
		task.Set(int64(n))
		task.Done(true)
	}
}

// progressHandler passes the cache's log records (a damaged entry rebuilt)
// to progress.
type progressHandler struct{ progress func(string) }

func (h progressHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h progressHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h progressHandler) WithGroup(string) slog.Handler            { return h }
func (h progressHandler) Handle(_ context.Context, r slog.Record) error {
	msg := "kbuild: " + r.Message
	r.Attrs(func(a slog.Attr) bool {
		msg += " " + a.String()
		return true
	})
	h.progress(msg)
	return nil
}

type builder struct {
	spec     Spec
	frag     kconfig.Fragment
	key      string
	progress func(string)
	tc       toolchainInfo
	src      string // pristine source tree
	work     string // kernel/<key>.tmp: obj/ and build.log while building
	log      *logWriter
}

func (b *builder) obj() string { return filepath.Join(b.work, "obj") }

// build runs a cold build and installs its results into dst, the cache
// entry's temporary directory. It runs under the entry's lock.
func (b *builder) build(ctx context.Context, d *cache.Dir, srcSum string, inputs []byte, dst string, res *Result) error {
	if err := checkTools(ctx, b.tc.cc); err != nil {
		return err
	}
	t := time.Now()
	b.progress(fmt.Sprintf("kbuild: %s: preparing kernel source %s", short(b.key), filepath.Base(b.spec.SourceTarball)))
	var err error
	if b.src, err = ensureSource(ctx, d, b.spec.SourceTarball, srcSum); err != nil {
		return err
	}
	res.Stages = append(res.Stages, Stage{"source", time.Since(t)})
	err = b.run(ctx, res)
	if b.log != nil {
		defer b.log.f.Close()
	}
	if err != nil {
		return err
	}
	t = time.Now()
	if err := b.install(inputs, dst); err != nil {
		return err
	}
	res.Stages = append(res.Stages, Stage{"install", time.Since(t)})
	return nil
}

// run configures and builds in b.work; on failure b.work stays for inspection (the next
// build of the key removes it), and the error names its build.log.
func (b *builder) run(ctx context.Context, res *Result) error {
	if err := os.RemoveAll(b.work); err != nil {
		return fmt.Errorf("kbuild: remove stale build dir: %w", err)
	}
	if err := os.MkdirAll(b.obj(), 0o755); err != nil {
		return fmt.Errorf("kbuild: %w", err)
	}
	lf, err := os.Create(filepath.Join(b.work, "build.log"))
	if err != nil {
		return fmt.Errorf("kbuild: %w", err)
	}
	b.log = &logWriter{f: lf} // closed by build

	t := time.Now()
	if len(b.spec.Patches) > 0 {
		b.progress(fmt.Sprintf("kbuild: %s: applying %d patch(es) to a copy of the source", short(b.key), len(b.spec.Patches)))
		patched := filepath.Join(b.work, "src")
		if err := patchedTree(ctx, b.src, patched, b.spec.Patches); err != nil {
			return err
		}
		b.src = patched
		res.Stages = append(res.Stages, Stage{"patch", time.Since(t)})
		t = time.Now()
	}
	base := b.spec.base()
	b.progress(fmt.Sprintf("kbuild: %s: make %s + fragment %s + olddefconfig", short(b.key), base, b.spec.Fragment))
	if err := b.make(ctx, base); err != nil {
		return err
	}
	cfgPath := filepath.Join(b.obj(), ".config")
	baseCfg, err := os.ReadFile(cfgPath)
	if err != nil {
		return fmt.Errorf("kbuild: read %s output: %w", base, err)
	}
	if err := os.WriteFile(cfgPath, b.frag.Merge(baseCfg), 0o644); err != nil {
		return fmt.Errorf("kbuild: write merged .config: %w", err)
	}
	if err := b.make(ctx, "olddefconfig"); err != nil {
		return err
	}
	// Check before the long build: a dropped option fails in seconds, not minutes.
	if err := b.checkConfig(); err != nil {
		return err
	}
	res.Stages = append(res.Stages, Stage{"config", time.Since(t)})

	t = time.Now()
	b.progress(fmt.Sprintf("kbuild: %s: make -j%d bzImage (a cold build takes minutes; log %s)", short(b.key), b.jobs(), b.log.f.Name()))
	stop := b.reportProgress(t)
	// Progress a person can watch: objects compiled against the count of
	// the last build in this cache.
	task := progress.Start(ctx, "kernel: make bzImage", progress.Items, int64(expectedObjects(filepath.Dir(b.work))))
	b.log.setTask(task)
	err = b.make(ctx, fmt.Sprintf("-j%d", b.jobs()), "bzImage")
	b.log.setTask(nil)
	task.Done(err == nil)
	stop()
	if err != nil {
		return err
	}
	// make re-runs syncconfig; the final .config is what the kernel was built with.
	if err := b.checkConfig(); err != nil {
		return err
	}
	res.Stages = append(res.Stages, Stage{"bzImage", time.Since(t)})
	return nil
}

func (b *builder) checkConfig() error {
	cfg, err := os.ReadFile(filepath.Join(b.obj(), ".config"))
	if err != nil {
		return fmt.Errorf("kbuild: read final .config: %w", err)
	}
	return b.frag.Check(cfg)
}

func (b *builder) jobs() int {
	if b.spec.Jobs > 0 {
		return b.spec.Jobs
	}
	return runtime.NumCPU()
}

func (b *builder) reportProgress(start time.Time) (stop func()) {
	return progress.Every(progressEvery, func() {
		b.progress(fmt.Sprintf("kbuild: %s: %d objects compiled, %s", short(b.key), b.log.objects(), time.Since(start).Round(time.Second)))
	})
}

// install copies the results out of the object tree into dst, which the cache renames
// into place.
func (b *builder) install(inputs []byte, dst string) error {
	for _, f := range []struct{ from, to string }{
		{"arch/x86/boot/bzImage", "bzImage"},
		{".config", "config"},
		{"System.map", "System.map"},
	} {
		if err := copyFile(filepath.Join(b.obj(), f.from), filepath.Join(dst, f.to)); err != nil {
			return fmt.Errorf("kbuild: install %s: %w", f.to, err)
		}
	}
	if err := os.WriteFile(filepath.Join(dst, "inputs.json"), inputs, 0o644); err != nil {
		return fmt.Errorf("kbuild: %w", err)
	}
	if err := b.log.f.Sync(); err != nil {
		return fmt.Errorf("kbuild: %w", err)
	}
	if err := copyFile(b.log.f.Name(), filepath.Join(dst, "build.log")); err != nil {
		return fmt.Errorf("kbuild: install build.log: %w", err)
	}
	return nil
}

// make runs one make command in the source tree with O= pointing at the object tree,
// appending its output to the build log.
func (b *builder) make(ctx context.Context, args ...string) error {
	full := []string{"O=" + b.obj()}
	full = append(full, makeVarArgs(b.spec.MakeVars)...)
	full = append(full, args...)
	cmd := exec.CommandContext(ctx, "make", full...)
	cmd.Dir = b.src
	cmd.Env = buildEnv(b.spec.epoch())
	cmd.Stdout = b.log
	cmd.Stderr = b.log
	// make forks gcc and sub-makes: cancel the whole process group, not just make. (Callers
	// should cancel ctx on SIGINT: make is not in the terminal's process group.) If this
	// process dies without cancelling, the kernel kills the top make.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	fmt.Fprintf(b.log, "+ make %s\n", strings.Join(full, " "))
	err := cmd.Run()
	if err == nil {
		return nil
	}
	target := args[len(args)-1]
	if ctx.Err() != nil {
		return fmt.Errorf("kbuild: make %s: %w", target, ctx.Err())
	}
	return fmt.Errorf("kbuild: make %s: %w\n--- last %d lines of %s ---\n%s", target, err, tailLines, b.log.f.Name(), tail(b.log.f.Name(), tailLines))
}

const tailLines = 30

func makeVarArgs(vars map[string]string) []string {
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	args := make([]string, 0, len(keys))
	for _, k := range keys {
		args = append(args, k+"="+vars[k])
	}
	return args
}

// kbuildTimestamp formats t for KBUILD_BUILD_TIMESTAMP: the kernel's usr/gen_initramfs.sh
// feeds it to `date -d`, which reads this (date(1)'s default) format.
func kbuildTimestamp(t time.Time) string {
	return t.UTC().Format("Mon Jan _2 15:04:05 UTC 2006")
}

// buildEnv is make's whole environment: only PATH survives from the caller, so host
// settings (ARCH, CROSS_COMPILE, KCFLAGS, LANG, TZ...) cannot change the output unseen.
func buildEnv(epoch time.Time) []string {
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"LC_ALL=C",
		"TZ=UTC",
		fmt.Sprintf("SOURCE_DATE_EPOCH=%d", epoch.Unix()),
		"KBUILD_BUILD_TIMESTAMP=" + kbuildTimestamp(epoch),
		"KBUILD_BUILD_USER=" + BuildUser,
		"KBUILD_BUILD_HOST=" + BuildHost,
		"KBUILD_BUILD_VERSION=1",
	}
	for _, k := range []string{"HOME", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

func short(key string) string { return key[:12] }

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func hashFile(path string) (string, error) {
	sum, _, err := atomicfile.HashFile(path)
	return sum, err
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
