package initramfs

import (
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// pkgRoot returns the extracted package root of a qemu-q35 component.
// TODO(integrator): switch to testdeps.Root(t, component) when it lands;
// until then every component is in the one merged scratch tree.
func pkgRoot(t testing.TB, component string) string {
	t.Helper()
	return filepath.Join("/work/scratch/root")
}

// q35Components are the packages the qemu-q35 toolstack is taken from.
var q35Components = []string{
	"xen-utils", "xenstore-utils", "xen-utils-common", "libxenmisc", "libxenstore", "libxencall",
	"libxenevtchn", "libxenforeignmemory", "libxengnttab", "libxentoollog", "libxendevicemodel",
	"libxenhypfs", "libxentoolcore", "libyajl", "libc6", "libext2fs", "liblzma", "libuuid", "libzstd",
	"zlib", "libncurses", "libtinfo", "libgcc", "libbz2", "liblz4", "linux-image",
}

func q35Roots(t testing.TB) []string {
	seen := map[string]bool{}
	var roots []string
	for _, c := range q35Components {
		r := pkgRoot(t, c)
		if !seen[r] {
			seen[r] = true
			roots = append(roots, r)
		}
	}
	return roots
}

// q35Spec is the qemu-q35 control domain.
func q35Spec(t testing.TB) Spec {
	return Spec{
		Commands:  DefaultCommands(),
		Roots:     q35Roots(t),
		Toolstack: q35Toolstack,
		Modules:   q35Modules,
		Symlinks:  q35Symlinks,
		Epoch:     time.Unix(1700000000, 0),
		TempDir:   t.TempDir(),
	}
}

func needTool(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: apt-get install -y %s", name, pkg)
	}
	return p
}

// The qemu-q35 toolstack, as boards/qemu-q35.yaml should list it.
var (
	q35Toolstack = []string{
		"usr/lib/xen-4.17/bin/xl",
		"usr/lib/xen-4.17/bin/xenstored",
		"usr/lib/xen-4.17/bin/xenconsoled",
		"usr/lib/xen-4.17/bin/xen-init-dom0",
		"usr/bin/xenstore",
		"usr/bin/xenstore-chmod",
		"usr/bin/xenstore-exists",
		"usr/bin/xenstore-list",
		"usr/bin/xenstore-ls",
		"usr/bin/xenstore-read",
		"usr/bin/xenstore-rm",
		"usr/bin/xenstore-watch",
		"usr/bin/xenstore-write",
		"etc/xen/xl.conf",
	}
	// The Debian kernel builds the dom0 drivers the toolstack needs as
	// modules; xenfs depends on xen-privcmd, found through .modinfo.
	q35Modules = []string{
		"lib/modules/6.1.0-47-amd64/kernel/drivers/xen/xen-evtchn.ko",
		"lib/modules/6.1.0-47-amd64/kernel/drivers/xen/xen-gntdev.ko",
		"lib/modules/6.1.0-47-amd64/kernel/drivers/xen/xen-gntalloc.ko",
		"lib/modules/6.1.0-47-amd64/kernel/drivers/xen/xenfs/xenfs.ko",
	}
	q35Symlinks = map[string]string{
		"usr/sbin/xl": "/usr/lib/xen-4.17/bin/xl",
	}
)
