package pipeline

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/fwbuild/fwbuild/boardcfg"
	"github.com/fwbuild/fwbuild/initramfs"
)

// Where the control domain keeps its guests; ctld reads guestsDir.
const (
	guestsDir   = "/etc/fwbuild/guests"
	guestImages = "/var/lib/fwbuild/guests"
)

// xlConfig is a guest's xl config. PV with no vif or disk: the hotplug
// scripts those need are bash, which the control domain does not carry.
func xlConfig(g boardcfg.Guest) []byte {
	after := g.After
	if after == "" {
		after = "poweroff"
	}
	autostart := "no"
	if g.Autostart {
		autostart = "yes"
	}
	vcpus := g.VCPUs
	if vcpus == 0 {
		vcpus = 1
	}
	extra := strings.TrimSpace(fmt.Sprintf("console=hvc0 fwbuild.guest=%s fwbuild.after=%s %s", g.Name, after, g.Cmdline))
	var b strings.Builder
	fmt.Fprintf(&b, "# fwbuild: autostart=%s\n", autostart)
	fmt.Fprintf(&b, "name = %q\ntype = \"pv\"\nmemory = %d\nvcpus = %d\n", g.Name, uint64(g.Memory)>>20, vcpus)
	fmt.Fprintf(&b, "kernel = %q\nramdisk = %q\n", guestImages+"/"+g.Name+"/vmlinuz", guestImages+"/"+g.Name+"/initrd")
	fmt.Fprintf(&b, "extra = %q\non_poweroff = \"destroy\"\non_crash = \"destroy\"\n", extra)
	return []byte(b.String())
}

// guestFiles are the control-domain files for the board's guests: an xl
// config each, and their kernel and initramfs. Every guest gets the same
// tiny init, which reports its domain id from inside the VM.
func (r *run) guestFiles(ctx context.Context, k kernelOut, tmp string) ([]initramfs.File, error) {
	b := r.Board
	if len(b.Guests) == 0 {
		return nil, nil
	}
	// Uncompressed: the control domain archive compresses it anyway, and xz -9 wants a 64 MiB dictionary a small guest cannot spare.
	initrd, err := initramfs.GuestInitramfs(ctx, initramfs.GuestSpec{Epoch: r.Epoch, TempDir: tmp, Compression: "none"})
	if err != nil {
		return nil, fmt.Errorf("guests: %w", err)
	}
	var files []initramfs.File
	for i, g := range b.Guests {
		kpath := k.path
		if g.Kernel != "dom0" {
			if kpath, err = r.comps.File(g.Kernel, "bzimage", b); err != nil {
				return nil, fmt.Errorf("guests: %s (%s): %w", g.Name, b.Loc(fmt.Sprintf("guests[%d].kernel", i)), err)
			}
		}
		kernel, err := os.ReadFile(kpath)
		if err != nil {
			return nil, fmt.Errorf("guests: %s: %w", g.Name, err)
		}
		files = append(files,
			initramfs.File{Path: guestsDir + "/" + g.Name + ".cfg", Data: xlConfig(g)},
			initramfs.File{Path: guestImages + "/" + g.Name + "/vmlinuz", Data: kernel},
			initramfs.File{Path: guestImages + "/" + g.Name + "/initrd", Data: initrd},
		)
	}
	return files, nil
}
