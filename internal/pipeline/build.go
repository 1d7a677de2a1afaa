package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/fwbuild/fwbuild/internal/buildrecord"

	"github.com/fwbuild/fwbuild"
	"github.com/fwbuild/fwbuild/boardcfg"
	"github.com/fwbuild/fwbuild/contract"
	"github.com/fwbuild/fwbuild/internal/atomicfile"
	"github.com/fwbuild/fwbuild/internal/cache"
	"github.com/fwbuild/fwbuild/secboot"
)

// DefaultEpoch is the timestamp written into outputs when SOURCE_DATE_EPOCH
// is not set: a constant, so that builds are reproducible by default.
var DefaultEpoch = time.Unix(1704067200, 0).UTC() // 2024-01-01

// Options select what Build does.
type Options struct {
	Board     *boardcfg.Board
	BoardsDir string // resolves the kernel fragment
	CacheDir  string
	OutDir    string
	// Only stops after a stage and publishes its outputs: "initramfs",
	// "kernel", "payload"; empty runs everything.
	Only string
	// Keys is the owner's key directory (secboot: PK, KEK, db); with it
	// both payloads are signed and a Secure Boot board's variable store is
	// enrolled. Empty: unsigned payloads.
	Keys  string
	Epoch time.Time
	Log   *slog.Logger
	// Progress is told when a stage starts (took < 0) and ends.
	Progress func(stage string, took time.Duration, cached bool)

	// testHook, if set, is called as each stage starts (with its name) and
	// at publish's steps ("publish: stage usb.img", "publish: commit",
	// "publish: rename usb.img"): tests cancel or fail the build there.
	testHook func(point string)
}

// StageTiming is how long a stage took and whether its result came from the cache.
type StageTiming struct {
	Name   string        `json:"name"`
	Took   time.Duration `json:"took_ns"`
	Cached bool          `json:"cached"`
	// Entry is the cache directory holding the stage's output, for a stage
	// that has one: where to look when an artefact needs explaining.
	Entry string `json:"entry,omitempty"`
}

// Result is what a build produced.
type Result struct {
	OutDir    string        `json:"out_dir"`
	Artefacts []Artefact    `json:"artefacts"`
	Written   []string      `json:"written"`
	Stages    []StageTiming `json:"stages"`
	Sizes     *SizeTable    `json:"sizes,omitempty"`
	// Version is the payloads' version (profile version + content hash).
	Version  string    `json:"version,omitempty"`
	Manifest *Manifest `json:"-"`
}

// OnlyStages are the stages a build can stop after (Options.Only).
func OnlyStages() []string { return []string{"kernel", "initramfs", "payload"} }

type run struct {
	Options
	tool  string
	tools map[string]string // host tool versions, see hostTools
	comps Components
	owner *secboot.Owner // the loaded Keys, or nil
	// kernelConfig is the dom0 kernel's .config, when known (for the SBOM).
	kernelConfig string
	result       Result
}

func (r *run) hook(point string) {
	if r.testHook != nil {
		r.testHook(point)
	}
}

func (r *run) log() *slog.Logger {
	if r.Log != nil {
		return r.Log
	}
	return slog.New(slog.DiscardHandler)
}

// outcome is a stage's result; it says whether it came from the cache.
type outcome interface {
	fromCache() bool
	entry() string // the cache entry holding the output, "" for none
}

// timed runs one stage under its timeout (none if zero), records how long it
// took, and tells Progress when it starts and ends. A cancelled build stops
// here even when the stage itself finished (or never looked at ctx): a
// cancelled build must never go on to publish.
func timed[T outcome](ctx context.Context, r *run, name string, timeout time.Duration, stage func(context.Context) (T, error)) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, fmt.Errorf("build cancelled before stage %s: %w", name, err)
	}
	if r.Progress != nil {
		r.Progress(name, -1, false)
	}
	r.hook(name)
	parent := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	start := time.Now()
	res, err := stage(ctx)
	took := time.Since(start)
	// A publish that got past its commit point is done: reporting it as
	// cancelled would misdescribe the output directory.
	if cerr := parent.Err(); cerr != nil && !(err == nil && isCommitted(res)) {
		return zero, fmt.Errorf("build cancelled in stage %s: %w", name, cerr)
	}
	if err != nil {
		return res, err
	}
	r.result.Stages = append(r.result.Stages, StageTiming{Name: name, Took: took, Cached: res.fromCache(), Entry: res.entry()})
	if r.Progress != nil {
		r.Progress(name, took, res.fromCache())
	}
	return res, nil
}

// Timeouts bound every stage, so that a hung tool still ends the build.
const (
	kernelTimeout    = 3 * time.Hour // a cold build is minutes
	initramfsTimeout = 45 * time.Minute
	guestsTimeout    = 15 * time.Minute
	payloadTimeout   = 15 * time.Minute
	imageTimeout     = 15 * time.Minute
	// guestImagesTimeout: mke2fs and the copies of some 100 MB.
	guestImagesTimeout = 15 * time.Minute
)

// Build runs the pipeline for a board and publishes its artefacts:
//
//	fetch -> kernel -> initramfs -> [guestkernels ->] guests -> guestimages -> payload [-> sign -> release] -> usb, spi -> manifest
func Build(ctx context.Context, o Options) (*Result, error) {
	if o.Epoch.IsZero() {
		o.Epoch = DefaultEpoch
	}
	if o.Only != "" && !slices.Contains(OnlyStages(), o.Only) {
		return nil, fmt.Errorf("build: cannot stop after %q (stages: %s)", o.Only, strings.Join(OnlyStages(), ", "))
	}
	// A bad --out fails now, not after every stage ran.
	if err := checkOutDir(o.OutDir, o.CacheDir); err != nil {
		return nil, err
	}
	// So does a firmware image that is not the one the profile pins.
	if err := o.Board.CheckFiles(); err != nil {
		return nil, err
	}
	// A different fwbuild may build differently: its outputs never come from another's cache.
	r := &run{Options: o, tool: fwbuild.SourceID()}
	r.result.OutDir = o.OutDir
	if err := r.loadKeys(); err != nil {
		return nil, err
	}
	b := o.Board

	var err error
	if r.comps, err = timed(ctx, r, "fetch", 0, r.fetch); err != nil {
		return nil, err
	}
	k, err := timed(ctx, r, "kernel", kernelTimeout, r.kernel)
	if err != nil {
		return nil, err
	}
	r.kernelConfig = k.config
	if err := checkInitrdSupport(b, k); err != nil {
		return nil, err
	}
	if o.Only == "kernel" {
		return r.finish(ctx, []Artefact{artefact("bzImage", k.path)})
	}

	ird, err := timed(ctx, r, "initramfs", initramfsTimeout, r.initramfs)
	if err != nil {
		return nil, err
	}
	arts := []Artefact{
		artefact("initramfs.cpio"+b.ControlDomain.Compression.Ext(), ird.path("initramfs")),
		artefact("initramfs.list", ird.path("listing")),
	}
	if o.Only == "initramfs" {
		return r.finish(ctx, arts)
	}

	var gst stageResult
	if r.hasGuests() {
		gks := guestKernelsOut{}
		if r.hasGuestKernels() {
			if gks, err = timed(ctx, r, "guestkernels", kernelTimeout, r.guestKernels); err != nil {
				return nil, err
			}
		}
		if gst, err = timed(ctx, r, "guests", guestsTimeout, func(ctx context.Context) (stageResult, error) { return r.guests(ctx, k, gks) }); err != nil {
			return nil, err
		}
		arts = append(arts, artefact("guests.cpio", gst.path("guests.cpio")))
	}

	var gi stageResult
	if len(b.GuestImages) > 0 {
		if gi, err = timed(ctx, r, "guestimages", guestImagesTimeout, r.guestImages); err != nil {
			return nil, err
		}
		_, paths, err := guestImageFiles(gi)
		if err != nil {
			return nil, err
		}
		for _, p := range paths {
			arts = append(arts, artefact(contract.GuestImageArtefact(filepath.Base(filepath.Dir(p)), filepath.Base(p)), p))
		}
	}

	pay, err := timed(ctx, r, "payload", payloadTimeout, func(ctx context.Context) (stageResult, error) { return r.payload(ctx, k, ird, gst, gi) })
	if err != nil {
		return nil, err
	}
	if r.owner != nil {
		if pay, err = timed(ctx, r, "sign", payloadTimeout, func(ctx context.Context) (stageResult, error) { return r.sign(ctx, pay) }); err != nil {
			return nil, err
		}
		if b.Outputs.SecureBoot != nil {
			arts = append(arts, artefact(VarsArtefact, pay.path(VarsArtefact)))
		}
		if o.Only == "" || o.Only == "payload" { // --only payload: the payloads and the release that carries them
			rel, err := timed(ctx, r, "release", payloadTimeout, func(ctx context.Context) (stageResult, error) { return r.release(ctx, pay) })
			if err != nil {
				return nil, err
			}
			arts = append(arts, artefact(contract.UpdateArtefact, rel.path(contract.UpdateArtefact)),
				artefact(r.cabinetName(), rel.path("release.cab")))
		}
	}
	arts = append(arts, artefact("payload-esp.efi", pay.path("payload-esp.efi")), artefact("payload-flash.efi", pay.path("payload-flash.efi")))
	if o.Only == "payload" {
		return r.finish(ctx, arts)
	}

	usb, err := timed(ctx, r, "usb", imageTimeout, func(ctx context.Context) (stageResult, error) { return r.usb(ctx, pay, gi) })
	if err != nil {
		return nil, err
	}
	arts = append(arts, artefact("usb.img", usb.path("usb.img")))

	if b.Outputs.SPI != nil {
		spi, err := timed(ctx, r, "spi", imageTimeout, func(ctx context.Context) (stageResult, error) { return r.spi(ctx, pay, k, ird, gst) })
		if err != nil {
			return nil, err
		}
		arts = append(arts, artefact("spi.bin", spi.path("spi.bin")), artefact("spi.layout", spi.path("spi.layout")),
			artefact("flash-map.svg", spi.path("flash-map.svg")))
		t, err := readSizeTable(spi.path("sizes.json"))
		if err != nil {
			return nil, err
		}
		r.result.Sizes = &t
	}
	return r.finish(ctx, arts)
}

func artefact(name, src string) Artefact {
	return Artefact{Output: buildrecord.Output{Name: name}, src: src}
}

// finish hashes the artefacts, adds manifest.json and SHA256SUMS, and publishes.
func (r *run) finish(ctx context.Context, arts []Artefact) (*Result, error) {
	_, err := timed(ctx, r, "manifest", 0, func(ctx context.Context) (published, error) {
		for i := range arts {
			if err := ctx.Err(); err != nil {
				return published{}, err
			}
			sum, n, err := r.hashArtefact(arts[i].src)
			if err != nil {
				return published{}, fmt.Errorf("manifest: %s: %w", arts[i].Name, err)
			}
			arts[i].SHA256, arts[i].Size = sum, n
		}
		m := r.manifest(ctx, arts)
		digests, err := r.peDigests(ctx, arts)
		if err != nil {
			return published{}, err
		}
		m.Authenticode = map[string]string{}
		for n, d := range digests {
			m.Authenticode[n] = hex.EncodeToString(d.SHA256)
		}
		if m.Measurements, err = r.measurements(arts, digests); err != nil {
			return published{}, err
		}
		dir := filepath.Join(r.CacheDir, "tmp")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return published{}, err
		}
		sbom, err := r.sbom(arts)
		if err != nil {
			return published{}, err
		}
		extra := map[string][]byte{buildrecord.ManifestFile: m.JSON(), buildrecord.SumsFile: sha256sums(arts), SBOMFile: sbom}
		names := make([]string, 0, len(extra))
		for n := range extra {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			sum := sha256.Sum256(extra[n])
			p := filepath.Join(dir, hex.EncodeToString(sum[:]))
			if err := atomicfile.WriteFile(p, extra[n], 0o644); err != nil {
				return published{}, err
			}
			arts = append(arts, Artefact{Output: buildrecord.Output{Name: n, Size: int64(len(extra[n])), SHA256: hex.EncodeToString(sum[:])}, src: p})
		}
		r.result.Manifest = m
		written, err := publish(ctx, r.OutDir, arts, r.hook)
		r.result.Written = written
		return published{unchanged: len(written) == 0, done: err == nil}, err
	})
	if err != nil {
		return nil, err
	}
	r.result.Artefacts = arts
	return &r.result, nil
}

// published is the manifest stage's outcome: a build that rewrote nothing
// counts as cached.
type published struct{ unchanged, done bool }

func (p published) fromCache() bool { return p.unchanged }
func (published) entry() string     { return "" }

func (p published) committed() bool { return p.done }

// isCommitted says whether a stage's outcome is a completed publish.
func isCommitted(o any) bool {
	c, ok := o.(interface{ committed() bool })
	return ok && c.committed()
}

// hashArtefact hashes an artefact. A stage output need not be read again:
// its entry's manifest was checked in full (or written) by this build's
// stage call, and the file's inode, mtime and ctime still being as recorded
// shows it was not touched since; so for a kernel built from source.
// Anything else (a kernel in a package, whose tree is checked only quickly;
// a file given by path) is hashed.
func (r *run) hashArtefact(p string) (string, int64, error) {
	for _, kind := range []string{"stages", "kernel"} {
		if strings.HasPrefix(p, filepath.Join(r.CacheDir, kind)+string(filepath.Separator)) {
			if sum, n, ok := cache.RecordedHash(p); ok {
				return sum, n, nil
			}
		}
	}
	return atomicfile.HashFile(p)
}
