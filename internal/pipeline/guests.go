package pipeline

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fwbuild/fwbuild/boardcfg"
	"github.com/fwbuild/fwbuild/contract"
	"github.com/fwbuild/fwbuild/hvcore"
	"github.com/fwbuild/fwbuild/initramfs"
)

// guestsRegion is the board's SPI guests region, if it has one.
func guestsRegion(b *boardcfg.Board) (boardcfg.Region, bool) {
	if b.Outputs.SPI == nil {
		return boardcfg.Region{}, false
	}
	return b.Outputs.SPI.GuestsRegion()
}

// hasGuestKernels says whether a guest has a kernel built for it.
func (r *run) hasGuestKernels() bool {
	for _, g := range r.Board.Guests {
		if g.Kernel.Build != nil {
			return true
		}
	}
	return false
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
	return contract.GuestsRegion{Addr: b.Outputs.SPI.MappedAddress(uint64(reg.Start)), Size: uint64(reg.Size)}.String()
}

// xlConfig is a guest's xl config. A guest with a kernel of its own boots
// it from the control domain's initramfs; a guest of a guest image boots the
// image's kernel and initrd from the data disk, where ctld keeps the image's
// verified files, and (for an image fwbuild built) mounts its root from its
// first virtual disk. typ is the resolved virtualization mode (guestType).
// Its vifs (on bridge) and vbds name ctld as their hotplug script (Xen's are
// bash, which the control domain does not carry); disks are raw files on the
// data disk, set up as loop devices by ctld for the phy backend (dom0 has no
// qemu for qdisk).
func xlConfig(g boardcfg.Guest, img *boardcfg.GuestImage, typ, bridge string) []byte {
	after := g.After
	if after == "" {
		after = "poweroff"
	}
	vcpus := g.VCPUs
	if vcpus == 0 {
		vcpus = 1
	}
	kernel, ramdisk := contract.GuestKernel(g.Name), contract.GuestInitrd(g.Name)
	params := "console=hvc0 " + contract.GuestParams{Name: g.Name, After: after}.String()
	if img != nil {
		kernel, ramdisk = contract.DataImageFile(img.Name, contract.GuestImageKernel), contract.DataImageFile(img.Name, contract.GuestImageInitrd)
		if img.BuildsRoot() {
			// blkfront names the first disk xvda, PV or PVH.
			params += " root=/dev/xvda"
		}
		params += " " + img.Cmdline
	}
	extra := strings.Join(strings.Fields(params+" "+g.Cmdline), " ")
	var b strings.Builder
	fmt.Fprintln(&b, contract.AutostartLine(g.Autostart))
	if typ == boardcfg.GuestTypePVH && (g.Type == "" || g.Type == boardcfg.GuestTypeAuto) {
		// ctld falls back to PV on a CPU that cannot run PVH.
		fmt.Fprintln(&b, contract.TypeAutoLine)
	}
	fmt.Fprintf(&b, "name = %q\ntype = %q\nmemory = %d\nvcpus = %d\n", g.Name, typ, uint64(g.Memory)>>20, vcpus)
	fmt.Fprintf(&b, "kernel = %q\nramdisk = %q\n", kernel, ramdisk)
	fmt.Fprintf(&b, "extra = %q\non_poweroff = \"destroy\"\non_crash = \"destroy\"\n", extra)
	writeDevices(&b, g, bridge)
	return []byte(b.String())
}

// guestType resolves a guest's type: auto is PVH when its kernel's config
// says it boots as a PVH guest (CONFIG_XEN_PVH=y; Debian's cloud kernel
// does), else PV; the dom0 kernel, built without it, is always PV. kernelConfig
// is the kernel's config file, "" when the package has none.
func guestType(g boardcfg.Guest, kernelConfig string) string {
	switch g.Type {
	case boardcfg.GuestTypePV, boardcfg.GuestTypePVH:
		return g.Type
	}
	if kernelConfig == "" || g.Kernel.IsDom0() {
		return boardcfg.GuestTypePV
	}
	cfg, err := os.ReadFile(kernelConfig)
	if err != nil || !hasKernelOptions(cfg, []string{"CONFIG_XEN_PVH"}) {
		return boardcfg.GuestTypePV
	}
	return boardcfg.GuestTypePVH
}

// guests packs the board's guests (an xl config each, their kernel and
// initramfs) into one uncompressed cpio. The USB payload appends it to the
// control domain, which the kernel unpacks as one tree; the SPI image puts it
// in the chip's guests region, which ctld unpacks at boot, because the
// payload slot has no room for a second kernel. Every guest gets the same
// tiny init, which reports its domain id from inside the VM.
func (r *run) guests(ctx context.Context, k kernelOut, own guestKernelsOut) (stageResult, error) {
	b := r.Board
	var ids []string
	for _, g := range b.Guests {
		if img, ok := b.GuestImage(g.Image); ok {
			kc, _ := img.KernelRef()
			c, _ := b.Component(kc)
			ids = append(ids, "image:"+string(c.SHA256)+":"+jsonKey(c.Files))
		} else if g.Kernel.IsDom0() {
			ids = append(ids, k.id)
		} else if gk, ok := own.byGuest[g.Name]; ok {
			ids = append(ids, gk.id)
		} else {
			c, _ := b.Component(g.Kernel.Ref)
			ids = append(ids, string(c.SHA256)+":"+c.Files["bzimage"]+":"+c.Files["config"])
		}
	}
	gk := key("guests/1", r.tool, jsonKey(b.Guests), jsonKey(b.GuestImages), b.GuestBridge(), jsonKey(ids), r.Epoch.UTC().Format(time.RFC3339), jsonKey(r.hostTools(ctx)))
	return r.stage(ctx, "guests", gk, func(dir string) error {
		var files []initramfs.File
		initrds := map[boardcfg.Compression][]byte{}
		for i, g := range b.Guests {
			if err := ctx.Err(); err != nil {
				return err
			}
			if img, ok := b.GuestImage(g.Image); ok {
				// The kernel and initrd are the image's, on the data disk.
				kc, _ := img.KernelRef()
				cfg, _ := r.comps.File(kc, "config", b)
				files = append(files, initramfs.File{Path: contract.GuestConfig(g.Name), Data: xlConfig(g, &img, guestType(g, cfg), b.GuestBridge())})
				continue
			}
			kpath, cfg := k.path, k.config
			if gk, ok := own.byGuest[g.Name]; ok {
				kpath, cfg = gk.path, gk.config
			} else if !g.Kernel.IsDom0() {
				var err error
				if kpath, err = r.comps.File(g.Kernel.Ref, "bzimage", b); err != nil {
					return fmt.Errorf("guests: %s (%s): %w", g.Name, b.Loc(fmt.Sprintf("guests[%d].kernel", i)), err)
				}
				cfg, _ = r.comps.File(g.Kernel.Ref, "config", b)
			}
			kernel, err := os.ReadFile(kpath)
			if err != nil {
				return fmt.Errorf("guests: %s: %w", g.Name, err)
			}
			comp := guestCompression(cfg)
			if initrds[comp] == nil {
				if initrds[comp], err = initramfs.Guest(ctx, initramfs.GuestSpec{Epoch: r.Epoch, TempDir: dir, Compression: comp}); err != nil {
					return fmt.Errorf("guests: %w", err)
				}
			}
			if err := checkGuestMemory(g, kernel, len(initrds[comp])); err != nil {
				return fmt.Errorf("guests: %s (%s): %w", g.Name, b.Loc(fmt.Sprintf("guests[%d].memory", i)), err)
			}
			if guestType(g, cfg) == boardcfg.GuestTypePV {
				// xl create loads a gzip'd ELF several times faster than an xz bzImage.
				if kernel, err = hvcore.PVKernel(ctx, kernel); err != nil {
					return fmt.Errorf("guests: %s: %w", g.Name, err)
				}
			}
			files = append(files,
				initramfs.File{Path: contract.GuestConfig(g.Name), Data: xlConfig(g, nil, guestType(g, cfg), b.GuestBridge())},
				initramfs.File{Path: contract.GuestKernel(g.Name), Data: kernel},
				initramfs.File{Path: contract.GuestInitrd(g.Name), Data: initrds[comp]},
			)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		arch, err := initramfs.Pack(files, r.Epoch)
		if err != nil {
			return fmt.Errorf("guests: %w", err)
		}
		return writeArchive(dir, "guests.cpio", arch)
	})
}

// guestCompression is xz (with a small dictionary) when the guest kernel is
// known to unpack it, else none: a guest's memory is small, its archive too.
func guestCompression(kernelConfig string) boardcfg.Compression {
	if kernelConfig == "" {
		return boardcfg.NoCompression
	}
	cfg, err := os.ReadFile(kernelConfig)
	if err != nil || !hasKernelOptions(cfg, boardcfg.XZ.KernelOptions()) {
		return boardcfg.NoCompression
	}
	return boardcfg.XZ
}

// appendArchive appends a cpio to an initramfs; the kernel unpacks
// concatenated archives, compressed or not, as one tree. Each archive starts
// on a 4-byte boundary (an xz stream is a multiple of 4 bytes; zstd is not).
func appendArchive(initrd, archive []byte) []byte {
	out := make([]byte, 0, len(initrd)+3+len(archive))
	out = append(out, initrd...)
	for len(out)%4 != 0 {
		out = append(out, 0)
	}
	return append(out, archive...)
}

// loadStart is where Xen's domain builder puts a PV Linux kernel: its
// CONFIG_PHYSICAL_START, 16 MiB unless a kernel config moves it.
const loadStart = 16 << 20

// checkGuestMemory refuses a guest too small for its own kernel: xl create
// would fail at boot with "segment kernel too large".
func checkGuestMemory(g boardcfg.Guest, kernel []byte, initrd int) error {
	size, err := hvcore.KernelInitSize(kernel)
	if err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	need := loadStart + size + uint64(initrd)
	if uint64(g.Memory) < need {
		return fmt.Errorf("memory %v cannot hold its kernel: it unpacks to %d MiB (bzImage init_size) above the %d MiB load address, plus a %d KiB initramfs; give it at least %d MiB",
			g.Memory, size>>20, loadStart>>20, initrd>>10, (need+(1<<20)-1)>>20)
	}
	return nil
}

// writeArchive writes an archive as name in a stage directory, with its
// listing (size and path a line) as "listing".
func writeArchive(dir, name string, arch *initramfs.Archive) error {
	if err := os.WriteFile(filepath.Join(dir, name), arch.Data, 0o644); err != nil {
		return err
	}
	var list strings.Builder
	for _, e := range arch.Listing {
		fmt.Fprintf(&list, "%10d %s\n", e.Size, e.Path)
	}
	return os.WriteFile(filepath.Join(dir, "listing"), []byte(list.String()), 0o644)
}

// writeDevices writes a guest's disk and vif lines. The disk spec's target
// comes last: xl takes the rest of the spec as the path.
func writeDevices(b *strings.Builder, g boardcfg.Guest, bridge string) {
	if len(g.Disks) > 0 {
		var specs []string
		for i, d := range g.Disks {
			specs = append(specs, fmt.Sprintf("%q", fmt.Sprintf("format=raw, vdev=xvd%c, access=rw, backendtype=phy, script=%s, target=%s",
				'a'+i, contract.CtldPath, contract.DataGuestDisk(g.Name, d.Name))))
		}
		fmt.Fprintf(b, "disk = [ %s ]\n", strings.Join(specs, ", "))
	}
	if len(g.NICs) > 0 {
		var specs []string
		for _, n := range g.NICs {
			br := n.Bridge
			if br == "" {
				br = bridge
			}
			spec := "bridge=" + br
			if n.MAC != "" {
				spec += ", mac=" + strings.ToLower(n.MAC)
			}
			spec += ", script=" + contract.CtldPath
			specs = append(specs, fmt.Sprintf("%q", spec))
		}
		fmt.Fprintf(b, "vif = [ %s ]\n", strings.Join(specs, ", "))
	}
}
