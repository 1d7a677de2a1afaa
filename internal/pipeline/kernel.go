package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/fwbuild/fwbuild/internal/boundedfile"

	"github.com/fwbuild/fwbuild/hvcore/kconfig"

	"github.com/fwbuild/fwbuild/boardcfg"
	"github.com/fwbuild/fwbuild/hvcore"
	"github.com/fwbuild/fwbuild/hvcore/kbuild"
)

// kernelOut is the dom0 kernel, wherever it came from.
type kernelOut struct {
	path   string
	config string // the kernel's .config, when known
	id     string // identifies the kernel's bytes for downstream keys
	cached bool
	from   string // for messages and the size table: the package or path
	dir    string // the kernel cache entry, for one built from source
}

func (k kernelOut) fromCache() bool { return k.cached }
func (k kernelOut) entry() string   { return k.dir }

func (r *run) kernel(ctx context.Context) (kernelOut, error) {
	b := r.Board
	kc := b.Hypervisor.Dom0.Kernel
	switch {
	case kc.Source != "":
		return r.sourceKernel(ctx, kc, "hypervisor.dom0.kernel")
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
		// PathFile is Path as boardcfg.Load resolved and confined it; read
		// bounded, as the file may have changed since.
		if kc.PathFile == "" {
			return kernelOut{}, fmt.Errorf("kernel: %s (%s) was not checked: load the board with boardcfg.Load", kc.Path, b.Loc("hypervisor.dom0.kernel.path"))
		}
		data, err := boundedfile.Read(kc.PathFile, boardcfg.MaxKernelFile)
		if err != nil {
			return kernelOut{}, fmt.Errorf("kernel: %s: %w", b.Loc("hypervisor.dom0.kernel.path"), err)
		}
		if err := hvcore.CheckDom0Kernel(data, nil, kc.Path); err != nil {
			return kernelOut{}, fmt.Errorf("kernel: %s (%s): %w", kc.Path, b.Loc("hypervisor.dom0.kernel.path"), err)
		}
		sum := sha256.Sum256(data)
		return kernelOut{path: kc.PathFile, id: "file:" + hex.EncodeToString(sum[:]), cached: true, from: kc.Path}, nil
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
	for _, opt := range b.ControlDomain.Compression.KernelOptions() {
		if !hasKernelOption(cfg, opt) {
			return fmt.Errorf("kernel: the dom0 kernel (%s) lacks %s=y, needed to unpack a %s control domain (%s): add it to the kernel or change the compression",
				k.from, opt, b.ControlDomain.Compression, b.Loc("control_domain.compression"))
		}
	}
	return nil
}

// hasKernelOptions says whether a kernel .config sets every option =y.
func hasKernelOptions(config []byte, opts []string) bool {
	for _, opt := range opts {
		if !hasKernelOption(config, opt) {
			return false
		}
	}
	return true
}

func hasKernelOption(config []byte, opt string) bool {
	return strings.Contains("\n"+string(config), "\n"+opt+"=y\n")
}

// sourceKernel builds a kernel from a linux-source component with its
// fragment (dom0's, or a guest's; field is where the profile gives it).
func (r *run) sourceKernel(ctx context.Context, kc boardcfg.Kernel, field string) (kernelOut, error) {
	b := r.Board
	tarball, err := r.comps.File(kc.Source, "tarball", b)
	if err != nil {
		return kernelOut{}, fmt.Errorf("kernel: %w", err)
	}
	// boardcfg.Load resolved the fragment in the boards directory and
	// checked it and its includes; check again now, confined the same
	// way, in case the files changed since.
	frag := kc.FragmentFile
	if frag == "" {
		return kernelOut{}, fmt.Errorf("kernel: fragment %s (%s) was not checked: load the board with boardcfg.Load", kc.Fragment, b.Loc(field+".fragment"))
	}
	if _, err := kconfig.ParseFragmentIn(frag, r.BoardsDir); err != nil {
		return kernelOut{}, fmt.Errorf("kernel: fragment %s (%s): %w", kc.Fragment, b.Loc(field+".fragment"), err)
	}
	if len(kc.PatchFiles) != len(kc.Patches) {
		return kernelOut{}, fmt.Errorf("kernel: patches %v (%s) were not checked: load the board with boardcfg.Load", kc.Patches, b.Loc(field+".patches"))
	}
	res, err := kbuild.Build(ctx, r.CacheDir, kbuild.Spec{
		SourceTarball: tarball,
		Base:          kc.Base,
		Fragment:      frag,
		Patches:       kc.PatchFiles,
		Epoch:         r.Epoch,
	}, func(line string) { r.log().Info("kernel build", "progress", line) })
	if err != nil {
		return kernelOut{}, fmt.Errorf("kernel: %w", err)
	}
	src, _ := b.Component(kc.Source)
	return kernelOut{path: res.BzImage, config: res.Config, id: "kbuild:" + res.Key, cached: res.Cached, from: "source " + src.Package + "=" + src.Version, dir: filepath.Dir(res.BzImage)}, nil
}

// guestKernels builds the kernels guests have of their own
// (guests[].kernel {source, base, fragment}), by guest name.
func (r *run) guestKernels(ctx context.Context) (guestKernelsOut, error) {
	out := guestKernelsOut{byGuest: map[string]kernelOut{}, cached: true}
	for i, g := range r.Board.Guests {
		if g.Kernel.Build == nil {
			continue
		}
		k, err := r.sourceKernel(ctx, *g.Kernel.Build, fmt.Sprintf("guests[%d].kernel", i))
		if err != nil {
			return guestKernelsOut{}, fmt.Errorf("guest %s: %w", g.Name, err)
		}
		out.byGuest[g.Name] = k
		out.cached = out.cached && k.cached
	}
	return out, nil
}

// guestKernelsOut is the guests' own kernels, by guest name.
type guestKernelsOut struct {
	byGuest map[string]kernelOut
	cached  bool
}

func (g guestKernelsOut) fromCache() bool { return g.cached }
func (g guestKernelsOut) entry() string   { return "" }
