package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/fwbuild/fwbuild"
	"github.com/fwbuild/fwbuild/boardcfg"
	"github.com/fwbuild/fwbuild/hvcore"
	"github.com/fwbuild/fwbuild/hvcore/kbuild"
	"github.com/fwbuild/fwbuild/image"
	"github.com/fwbuild/fwbuild/initramfs"
	"github.com/fwbuild/fwbuild/internal/cache"
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
	Only  string
	Epoch time.Time
	Log   *slog.Logger
	// Progress is told when a stage starts (took < 0) and ends.
	Progress func(stage string, took time.Duration, cached bool)
}

// StageTiming is how long a stage took and whether its result came from the cache.
type StageTiming struct {
	Name   string        `json:"name"`
	Took   time.Duration `json:"took_ns"`
	Cached bool          `json:"cached"`
}

// Result is what a build produced.
type Result struct {
	OutDir    string        `json:"out_dir"`
	Artefacts []Artefact    `json:"artefacts"`
	Written   []string      `json:"written"`
	Stages    []StageTiming `json:"stages"`
	Sizes     *SizeTable    `json:"sizes,omitempty"`
	Manifest  *Manifest     `json:"-"`
}

// OnlyStages are the stages a build can stop after (Options.Only).
func OnlyStages() []string { return []string{"kernel", "initramfs", "payload"} }

type run struct {
	Options
	tool   string
	tools  map[string]string // host tool versions, see hostTools
	comps  Components
	result Result
}

func (r *run) log() *slog.Logger {
	if r.Log != nil {
		return r.Log
	}
	return slog.New(slog.DiscardHandler)
}

func (r *run) timed(name string, f func() (bool, error)) error {
	if r.Progress != nil {
		r.Progress(name, -1, false)
	}
	start := time.Now()
	cached, err := f()
	took := time.Since(start)
	if err != nil {
		return err
	}
	r.result.Stages = append(r.result.Stages, StageTiming{Name: name, Took: took, Cached: cached})
	if r.Progress != nil {
		r.Progress(name, took, cached)
	}
	return nil
}

// Build runs the pipeline for a board and publishes its artefacts.
func Build(ctx context.Context, o Options) (*Result, error) {
	if o.Epoch.IsZero() {
		o.Epoch = DefaultEpoch
	}
	if o.Only != "" && !slices.Contains(OnlyStages(), o.Only) {
		return nil, fmt.Errorf("build: cannot stop after %q (stages: %s)", o.Only, strings.Join(OnlyStages(), ", "))
	}
	// A different fwbuild may build differently: its outputs never come from another's cache.
	r := &run{Options: o, tool: fwbuild.SourceID()}
	r.result.OutDir = o.OutDir
	b := o.Board

	var arts []Artefact
	if err := r.timed("fetch", func() (bool, error) {
		var err error
		r.comps, err = Fetch(ctx, b, o.CacheDir, r.log())
		return false, err
	}); err != nil {
		return nil, err
	}

	var k kernelOut
	if err := r.timed("kernel", func() (bool, error) {
		kctx, cancel := context.WithTimeout(ctx, 3*time.Hour) // a cold build is minutes; a hung make must still end
		defer cancel()
		var err error
		k, err = r.kernel(kctx)
		return k.cached, err
	}); err != nil {
		return nil, err
	}
	if err := checkInitrdSupport(b, k); err != nil {
		return nil, err
	}
	if o.Only == "kernel" {
		arts = append(arts, artefact("bzImage", k.path))
		return r.finish(ctx, arts)
	}

	var ird stageResult
	if err := r.timed("initramfs", func() (bool, error) {
		ictx, cancel := context.WithTimeout(ctx, 45*time.Minute)
		defer cancel()
		var err error
		ird, err = r.initramfs(ictx)
		return ird.Cached, err
	}); err != nil {
		return nil, err
	}
	initrdName := map[string]string{"xz": "initramfs.cpio.xz", "xz-x86": "initramfs.cpio.xz", "zstd": "initramfs.cpio.zst"}[b.ControlDomain.Compression]
	arts = append(arts, artefact(initrdName, ird.path("initramfs")), artefact("initramfs.list", ird.path("listing")))
	if o.Only == "initramfs" {
		return r.finish(ctx, arts)
	}

	var gst stageResult
	if r.hasGuests() {
		if err := r.timed("guests", func() (bool, error) {
			gctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
			defer cancel()
			var err error
			gst, err = r.guests(gctx, k)
			return gst.Cached, err
		}); err != nil {
			return nil, err
		}
		arts = append(arts, artefact("guests.cpio", gst.path("guests.cpio")))
	}

	var pay stageResult
	if err := r.timed("payload", func() (bool, error) {
		pctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
		defer cancel()
		var err error
		pay, err = r.payload(pctx, k, ird, gst)
		return pay.Cached, err
	}); err != nil {
		return nil, err
	}
	arts = append(arts, artefact("payload-esp.efi", pay.path("payload-esp.efi")), artefact("payload-flash.efi", pay.path("payload-flash.efi")))
	if o.Only == "payload" {
		return r.finish(ctx, arts)
	}

	var usb stageResult
	if err := r.timed("usb", func() (bool, error) {
		var err error
		usb, err = r.usb(pay)
		return usb.Cached, err
	}); err != nil {
		return nil, err
	}
	arts = append(arts, artefact("usb.img", usb.path("usb.img")))

	if b.Outputs.SPI != nil {
		var spi stageResult
		if err := r.timed("spi", func() (bool, error) {
			var err error
			spi, err = r.spi(pay, k, ird, gst)
			return spi.Cached, err
		}); err != nil {
			return nil, err
		}
		arts = append(arts, artefact("spi.bin", spi.path("spi.bin")), artefact("spi.layout", spi.path("spi.layout")))
		t, err := readSizeTable(spi.path("sizes.json"))
		if err != nil {
			return nil, err
		}
		r.result.Sizes = &t
	}
	return r.finish(ctx, arts)
}

func artefact(name, src string) Artefact { return Artefact{Name: name, src: src} }

// finish hashes the artefacts, adds manifest.json and SHA256SUMS, and publishes.
func (r *run) finish(ctx context.Context, arts []Artefact) (*Result, error) {
	if err := r.timed("manifest", func() (bool, error) {
		for i := range arts {
			sum, n, err := r.hashArtefact(arts[i].src)
			if err != nil {
				return false, fmt.Errorf("manifest: %s: %w", arts[i].Name, err)
			}
			arts[i].SHA256, arts[i].Size = sum, n
		}
		m := r.manifest(ctx, arts)
		dir := filepath.Join(r.CacheDir, "tmp")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return false, err
		}
		extra := map[string][]byte{"manifest.json": m.JSON(), "SHA256SUMS": []byte(sha256sums(arts))}
		names := make([]string, 0, len(extra))
		for n := range extra {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			sum := sha256.Sum256(extra[n])
			p := filepath.Join(dir, hex.EncodeToString(sum[:]))
			if err := cache.WriteFile(p, extra[n], 0o644); err != nil {
				return false, err
			}
			arts = append(arts, Artefact{Name: n, Size: int64(len(extra[n])), SHA256: hex.EncodeToString(sum[:]), src: p})
		}
		r.result.Manifest = m
		written, err := publish(r.OutDir, arts)
		r.result.Written = written
		return len(written) == 0, err
	}); err != nil {
		return nil, err
	}
	r.result.Artefacts = arts
	return &r.result, nil
}

// hashArtefact hashes a stage output once: stage directories are immutable,
// so the hash is kept next to the file.
func (r *run) hashArtefact(p string) (string, int64, error) {
	side := p + ".sha256"
	if b, err := os.ReadFile(side); err == nil {
		var sum string
		var n int64
		if _, err := fmt.Sscanf(string(b), "%s %d", &sum, &n); err == nil && len(sum) == 64 {
			return sum, n, nil
		}
	}
	sum, n, err := cache.HashFile(p)
	if err != nil {
		return "", 0, err
	}
	os.WriteFile(side, []byte(fmt.Sprintf("%s %d\n", sum, n)), 0o644) // a cache of a cache: failure is harmless
	return sum, n, nil
}

type kernelOut struct {
	path   string
	config string // the kernel's .config, when known
	id     string // identifies the kernel's bytes for downstream keys
	cached bool
	from   string
}

func (r *run) kernel(ctx context.Context) (kernelOut, error) {
	b := r.Board
	kc := b.Hypervisor.Dom0.Kernel
	switch {
	case kc.Source != "":
		tarball, err := r.comps.File(kc.Source, "tarball", b)
		if err != nil {
			return kernelOut{}, fmt.Errorf("kernel: %w", err)
		}
		frag := filepath.Join(r.BoardsDir, filepath.FromSlash(kc.Fragment))
		if _, err := os.Stat(frag); err != nil {
			return kernelOut{}, fmt.Errorf("kernel: fragment %s (%s): %w", frag, b.Loc("hypervisor.dom0.kernel.fragment"), err)
		}
		src, _ := b.Component(kc.Source)
		res, err := kbuild.Build(ctx, r.CacheDir, kbuild.Spec{
			SourceTarball: tarball,
			Base:          kc.Base,
			Fragment:      frag,
			Epoch:         r.Epoch,
		}, func(line string) { r.log().Info("kernel build", "progress", line) })
		if err != nil {
			return kernelOut{}, fmt.Errorf("kernel: %w", err)
		}
		_ = src
		return kernelOut{path: res.BzImage, config: res.Config, id: "kbuild:" + res.Key, cached: res.Cached, from: "source " + src.Package + "=" + src.Version}, nil
	case kc.Component != "":
		bz, err := r.comps.File(kc.Component, "bzimage", b)
		if err != nil {
			return kernelOut{}, fmt.Errorf("kernel: %w", err)
		}
		c, _ := b.Component(kc.Component)
		cfgPath, cfgErr := r.comps.File(kc.Component, "config", b)
		if cfgErr == nil {
			bzData, err := os.ReadFile(bz)
			if err != nil {
				return kernelOut{}, fmt.Errorf("kernel: %w", err)
			}
			cfg, err := os.ReadFile(cfgPath)
			if err != nil {
				return kernelOut{}, fmt.Errorf("kernel: %w", err)
			}
			if err := hvcore.CheckDom0Kernel(bzData, cfg, c.Package); err != nil {
				return kernelOut{}, fmt.Errorf("kernel: component %s (%s): %w", c.Name, b.Loc("hypervisor.dom0.kernel.component"), err)
			}
		}
		if cfgErr != nil {
			cfgPath = ""
		}
		return kernelOut{path: bz, config: cfgPath, id: "deb:" + string(c.SHA256) + ":" + c.Files["bzimage"], cached: true, from: c.Package + "=" + c.Version}, nil
	default:
		data, err := os.ReadFile(kc.Path)
		if err != nil {
			return kernelOut{}, fmt.Errorf("kernel: %s: %w", b.Loc("hypervisor.dom0.kernel.path"), err)
		}
		if err := hvcore.CheckDom0Kernel(data, nil, kc.Path); err != nil {
			return kernelOut{}, fmt.Errorf("kernel: %s (%s): %w", kc.Path, b.Loc("hypervisor.dom0.kernel.path"), err)
		}
		sum := sha256.Sum256(data)
		return kernelOut{path: kc.Path, id: "file:" + hex.EncodeToString(sum[:]), cached: true, from: kc.Path}, nil
	}
}

// checkInitrdSupport refuses a control-domain compression the dom0 kernel
// cannot unpack: the boot would otherwise die with "junk in compressed archive".
func checkInitrdSupport(b *boardcfg.Board, k kernelOut) error {
	if k.config == "" {
		return nil // a kernel given by path: nothing to check against
	}
	cfg, err := os.ReadFile(k.config)
	if err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	need := map[string][]string{"xz": {"CONFIG_RD_XZ"}, "xz-x86": {"CONFIG_RD_XZ", "CONFIG_XZ_DEC_X86"}, "zstd": {"CONFIG_RD_ZSTD"}}
	for _, opt := range need[b.ControlDomain.Compression] {
		if !strings.Contains("\n"+string(cfg), "\n"+opt+"=y\n") {
			return fmt.Errorf("kernel: the dom0 kernel (%s) lacks %s=y, needed to unpack a %s control domain (%s): add it to the kernel or change the compression",
				k.from, opt, b.ControlDomain.Compression, b.Loc("control_domain.compression"))
		}
	}
	return nil
}

func (r *run) initramfs(ctx context.Context) (stageResult, error) {
	b := r.Board
	cd := b.ControlDomain
	var roots, pkgIDs []string
	for _, name := range cd.Toolstack.Packages {
		f := r.comps[name]
		roots = append(roots, f.Root)
		pkgIDs = append(pkgIDs, name+"="+f.SHA256)
	}
	k := key("initramfs/1", r.tool, jsonKey(cd.Commands), jsonKey(cd.Toolstack), jsonKey(pkgIDs), cd.Compression, r.Epoch.UTC().Format(time.RFC3339))
	return stage(r.CacheDir, "initramfs", k, func(dir string) error {
		arch, err := initramfs.Build(ctx, initramfs.Spec{
			Commands:    cd.Commands,
			Toolstack:   cd.Toolstack.Files,
			Symlinks:    cd.Toolstack.Symlinks,
			Modules:     cd.Toolstack.Modules,
			Roots:       roots,
			Compression: cd.Compression,
			BuildTags:   initramfs.DefaultBuildTags(),
			Epoch:       r.Epoch,
			TempDir:     dir,
			Log:         r.log(),
		})
		if err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
		return writeArchive(dir, "initramfs", arch)
	})
}

// xenOptions is the board's Xen command line plus what fwbuild derives from
// the dom0 settings, so the two can never disagree.
func xenOptions(b *boardcfg.Board) string {
	d := b.Hypervisor.Dom0
	mib := uint64(d.Memory) >> 20
	opts := strings.TrimSpace(b.Hypervisor.Options) + fmt.Sprintf(" dom0_mem=%dM,max:%dM", mib, mib)
	if d.VCPUs > 0 {
		opts += fmt.Sprintf(" dom0_max_vcpus=%d", d.VCPUs)
	}
	return opts
}

// guestsRegion is the board's SPI guests region, if it has one.
func guestsRegion(b *boardcfg.Board) (boardcfg.Region, bool) {
	if b.Outputs.SPI == nil {
		return boardcfg.Region{}, false
	}
	return b.Outputs.SPI.GuestsRegion()
}

// hasGuests says whether the board has a guests stage: guests to pack, or a
// guests region to fill (with an empty archive when there are none).
func (r *run) hasGuests() bool {
	_, ok := guestsRegion(r.Board)
	return ok || len(r.Board.Guests) > 0
}

// guestsParam is the dom0 command-line parameter telling ctld where the
// guests region is mapped; empty when the board has none.
func guestsParam(b *boardcfg.Board) string {
	reg, ok := guestsRegion(b)
	if !ok {
		return ""
	}
	return fmt.Sprintf("fwbuild.guests=%#x,%#x", b.Outputs.SPI.MappedAddress(uint64(reg.Start)), uint64(reg.Size))
}

func (r *run) payload(ctx context.Context, k kernelOut, ird, gst stageResult) (stageResult, error) {
	b := r.Board
	xen, _ := b.Component(b.Hypervisor.Xen)
	grub, hasGrub := b.Component("grub")
	grubID := ""
	if hasGrub {
		grubID = string(grub.SHA256)
	}
	opts := xenOptions(b)
	// The flash payload's bytes depend on the host's xz and grub-mkimage.
	tools := r.hostTools(ctx)
	flashCmdline := b.Hypervisor.Dom0.Cmdline
	if p := guestsParam(b); p != "" {
		flashCmdline = strings.TrimSpace(flashCmdline + " " + p)
	}
	pk := key("payload/2", r.tool, string(xen.SHA256), k.id, ird.Key, gst.Key, opts, b.Hypervisor.Dom0.Cmdline, flashCmdline, grubID, r.Epoch.UTC().Format(time.RFC3339), jsonKey(tools))
	return stage(r.CacheDir, "payload", pk, func(dir string) error {
		efiPath, err := r.comps.File(xen.Name, "efi", b)
		if err != nil {
			return fmt.Errorf("payload: %w", err)
		}
		xenEFI, err := os.ReadFile(efiPath)
		if err != nil {
			return fmt.Errorf("payload: %w", err)
		}
		kernel, err := os.ReadFile(k.path)
		if err != nil {
			return fmt.Errorf("payload: kernel: %w", err)
		}
		initrd, err := ird.read("initramfs")
		if err != nil {
			return fmt.Errorf("payload: %w", err)
		}
		// The ESP has room for everything: guests ride along with the control domain.
		espInitrd, flashInitrd := initrd, initrd
		if len(b.Guests) > 0 {
			guests, err := gst.read("guests.cpio")
			if err != nil {
				return fmt.Errorf("payload: %w", err)
			}
			espInitrd = appendArchive(initrd, guests)
			if guestsParam(b) == "" {
				flashInitrd = espInitrd
			}
		}
		cfg, err := hvcore.XenConfig(hvcore.XenCfg{XenOptions: opts, Dom0Cmdline: b.Hypervisor.Dom0.Cmdline})
		if err != nil {
			return fmt.Errorf("payload: xen.cfg (%s): %w", b.Loc("hypervisor"), err)
		}
		esp, err := hvcore.UnifiedEFI(xenEFI, hvcore.Sections{Config: cfg, Kernel: kernel, Ramdisk: espInitrd})
		if err != nil {
			return fmt.Errorf("payload: unified xen.efi: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, "payload-esp.efi"), esp, 0o644); err != nil {
			return err
		}
		if !hasGrub {
			return errors.New("payload: the board has no \"grub\" component (grub-efi-amd64-bin with files.modules) for the flash payload")
		}
		modules, err := r.comps.File("grub", "modules", b)
		if err != nil {
			return fmt.Errorf("payload: %w", err)
		}
		gzPath, err := r.comps.File(xen.Name, "gz", b)
		if err != nil {
			return fmt.Errorf("payload: %w", err)
		}
		xenGz, err := os.ReadFile(gzPath)
		if err != nil {
			return fmt.Errorf("payload: %w", err)
		}
		flash, err := hvcore.BuildGrub(ctx, hvcore.GrubSpec{
			ModuleDir:   modules,
			XenGz:       xenGz,
			Kernel:      kernel,
			Initrd:      flashInitrd,
			XenOptions:  opts,
			Dom0Cmdline: flashCmdline,
			Mtime:       r.Epoch,
			TempDir:     dir,
		})
		if err != nil {
			return fmt.Errorf("payload: GRUB flash payload: %w", err)
		}
		members, _ := json.Marshal(flash.Members)
		if err := os.WriteFile(filepath.Join(dir, "flash-members.json"), members, 0o644); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, "payload-flash.efi"), flash.Data, 0o644)
	})
}

// hostTools are the first lines of `--version` of the host tools whose
// output lands in artefacts; asked once per build, for the key and the manifest.
func (r *run) hostTools(ctx context.Context) map[string]string {
	if r.tools != nil {
		return r.tools
	}
	v := map[string]string{}
	for _, t := range []string{"xz", "grub-mkimage"} {
		out, err := exec.CommandContext(ctx, t, "--version").Output()
		if err != nil {
			v[t] = "missing"
			continue
		}
		line, _, _ := strings.Cut(string(out), "\n")
		v[t] = strings.TrimSpace(line)
	}
	r.tools = v
	return v
}

func (r *run) usb(pay stageResult) (stageResult, error) {
	b := r.Board
	k := key("usb/1", r.tool, pay.Key, b.Name, fmt.Sprint(uint64(b.Outputs.USB.Size)), r.Epoch.UTC().Format(time.RFC3339))
	return stage(r.CacheDir, "usb", k, func(dir string) error {
		esp, err := pay.read("payload-esp.efi")
		if err != nil {
			return err
		}
		if err := image.WriteUSB(filepath.Join(dir, "usb.img"), image.USBSpec{Size: int64(b.Outputs.USB.Size), Payload: esp, Name: b.Name, Epoch: r.Epoch}); err != nil {
			return fmt.Errorf("usb image (%s): %w", b.Loc("outputs.usb"), err)
		}
		return nil
	})
}

// SPISpec maps a board's SPI output to the image stage's inputs, with
// payload as the flash payload and guests (an image.GuestBundle) as the
// content of the guests region, if the board has one.
func SPISpec(b *boardcfg.Board, comps Components, payload, guests []byte) (image.SPISpec, error) {
	s := b.Outputs.SPI
	if s == nil {
		return image.SPISpec{}, fmt.Errorf("spi: board %s has no outputs.spi", b.Name)
	}
	spec := image.SPISpec{ChipSize: uint64(s.ChipSize), Regions: s.Regions, Fills: map[string][]byte{},
		GrowFV: string(s.GrowVolume), SlotFile: string(s.PayloadFile), Payload: payload}
	comp, role, _ := strings.Cut(s.Firmware, ":")
	fwPath, err := comps.File(comp, role, b)
	if err != nil {
		return spec, fmt.Errorf("spi: base firmware (%s): %w", b.Loc("outputs.spi.firmware"), err)
	}
	if spec.BaseFirmware, err = os.ReadFile(fwPath); err != nil {
		return spec, fmt.Errorf("spi: base firmware: %w", err)
	}
	for i, reg := range s.Regions {
		if reg.Guests {
			spec.Fills[reg.Name] = guests
		}
		if reg.Fill != "" {
			c, role, _ := strings.Cut(reg.Fill, ":")
			p, err := comps.File(c, role, b)
			if err != nil {
				return spec, fmt.Errorf("spi: region %s fill (%s): %w", reg.Name, b.Loc(fmt.Sprintf("outputs.spi.regions[%d].fill", i)), err)
			}
			if spec.Fills[reg.Name], err = os.ReadFile(p); err != nil {
				return spec, fmt.Errorf("spi: %w", err)
			}
		}
	}
	return spec, nil
}

func (r *run) spiSpec(pay, gst stageResult) (image.SPISpec, error) {
	payload, err := pay.read("payload-flash.efi")
	if err != nil {
		return image.SPISpec{}, err
	}
	var bundle []byte
	if guestsParam(r.Board) != "" {
		archive, err := gst.read("guests.cpio")
		if err != nil {
			return image.SPISpec{}, err
		}
		bundle = image.GuestBundle(archive)
	}
	return SPISpec(r.Board, r.comps, payload, bundle)
}

func (r *run) spi(pay stageResult, k kernelOut, ird, gst stageResult) (stageResult, error) {
	b := r.Board
	s := b.Outputs.SPI
	comp, _, _ := strings.Cut(s.Firmware, ":")
	fw, _ := b.Component(comp)
	var fills []string
	for _, reg := range s.Regions {
		if reg.Fill != "" {
			c, _, _ := strings.Cut(reg.Fill, ":")
			fc, _ := b.Component(c)
			fills = append(fills, string(fc.SHA256))
		}
	}
	sk := key("spi/2", r.tool, pay.Key, gst.Key, string(fw.SHA256), s.Firmware, jsonKey(s), jsonKey(fills))
	return stage(r.CacheDir, "spi", sk, func(dir string) error {
		spec, err := r.spiSpec(pay, gst)
		if err != nil {
			return err
		}
		// Errors about the firmware name the component and file the profile chose.
		fwDesc := fmt.Sprintf("base firmware %s (%s)", s.Firmware, b.Loc("outputs.spi.firmware"))
		table, berr := r.sizeTable(spec, k, ird, pay)
		if berr != nil {
			return fmt.Errorf("%s: %w", fwDesc, berr)
		}
		if table.Headroom < 0 {
			return &BudgetError{Table: table, Err: fmt.Errorf("slot %s (%s)", s.PayloadFile, b.Loc("outputs.spi.payload_file"))}
		}
		if g := table.Guests; g != nil && g.Bytes > g.Size {
			i := slices.IndexFunc(s.Regions, func(r boardcfg.Region) bool { return r.Guests })
			field := fmt.Sprintf("outputs.spi.regions[%d]", i)
			return fmt.Errorf("spi: the guests take %d bytes (bundle header included), %d more than region %s holds (%s at %s): make the region larger or the guests fewer or smaller",
				g.Bytes, g.Bytes-g.Size, g.Region, field, b.Loc(field))
		}
		chip, err := image.BuildSPI(spec)
		if err != nil {
			var be *image.BudgetError
			if errors.As(err, &be) {
				table.Budget, table.Headroom = be.Budget, be.Budget-table.Payload
				return &BudgetError{Table: table, Err: err}
			}
			return fmt.Errorf("spi: %s: %w", fwDesc, err)
		}
		if err := os.WriteFile(filepath.Join(dir, "spi.bin"), chip, 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "spi.layout"), []byte(boardcfg.FlashromLayout(spec.Regions)), 0o644); err != nil {
			return err
		}
		return writeSizeTable(filepath.Join(dir, "sizes.json"), table)
	})
}

func (r *run) sizeTable(spec image.SPISpec, k kernelOut, ird, pay stageResult) (SizeTable, error) {
	// The slot's budget does not depend on the guests region, which is
	// checked against its own size after the payload.
	greg, hasRegion := guestsRegion(r.Board)
	bspec := spec
	bspec.Fills = maps.Clone(spec.Fills)
	if hasRegion {
		delete(bspec.Fills, greg.Name)
	}
	budget, err := image.SlotBudget(bspec)
	limit := ""
	var be *image.BudgetError
	if errors.As(err, &be) {
		budget, limit = be.Budget, be.Limit
	} else if err != nil {
		return SizeTable{}, fmt.Errorf("spi: size budget: %w", err)
	}
	var members map[string]int64
	data, err := pay.read("flash-members.json")
	if err == nil {
		err = json.Unmarshal(data, &members)
	}
	if err != nil {
		return SizeTable{}, fmt.Errorf("spi: flash payload contents: %w", err)
	}
	xen, _ := r.Board.Component(r.Board.Hypervisor.Xen)
	var parts []SizeRow
	for name, size := range members {
		if strings.HasPrefix(name, "xen.") {
			parts = append(parts, SizeRow{Component: "Xen (" + xen.Version + ", " + name + ")", Bytes: size})
		}
	}
	cd := members["initrd"]
	if fi, err := os.Stat(ird.path("initramfs")); err == nil && fi.Size() < cd {
		cd = fi.Size()
	}
	parts = append(parts,
		SizeRow{Component: "dom0 kernel (" + k.from + ")", Bytes: members["vmlinuz"]},
		SizeRow{Component: "control domain (initramfs, " + r.Board.ControlDomain.Compression + ")", Bytes: cd},
	)
	if g := members["initrd"] - cd; g > 0 {
		parts = append(parts, SizeRow{Component: fmt.Sprintf("guests (%d, appended to the control domain)", len(r.Board.Guests)), Bytes: g})
	}
	t := newSizeTable(parts, int64(len(spec.Payload)), budget, limit)
	if hasRegion {
		t.Guests = &RegionUse{Region: greg.Name, Guests: len(r.Board.Guests), Bytes: int64(len(spec.Fills[greg.Name])), Size: int64(greg.Size)}
	}
	return t, nil
}
