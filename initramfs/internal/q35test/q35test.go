// Package q35test holds the qemu-q35 control-domain inputs shared by the
// initramfs tests: where the extracted packages are, and which toolstack
// files, kernel modules and symlinks the board takes from them.
package q35test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/fwbuild/fwbuild/internal/testdeps"
)

// Root returns the extracted package root of a qemu-q35 component, fetched
// and cached on first use.
func Root(t testing.TB, component string) string {
	t.Helper()
	return testdeps.Root(t, component)
}

// Components are the packages the qemu-q35 control domain is taken from:
// the toolstack, the libraries it loads, and the kernel (for its modules).
var Components = []string{
	"xen-utils", "xenstore-utils", "xen-utils-common", "libxenmisc", "libxenstore", "libxencall",
	"libxenevtchn", "libxenforeignmemory", "libxengnttab", "libxentoollog", "libxendevicemodel",
	"libxenhypfs", "libxentoolcore", "libyajl", "libc6", "liblzma", "libuuid", "libzstd", "zlib",
	"linux-image",
}

// Roots returns the package roots of Components, without duplicates.
func Roots(t testing.TB) []string {
	t.Helper()
	seen := map[string]bool{}
	var roots []string
	for _, c := range Components {
		r := Root(t, c)
		if !seen[r] {
			seen[r] = true
			roots = append(roots, r)
		}
	}
	return roots
}

// The qemu-q35 toolstack, as boards/qemu-q35.yaml should list it.
var (
	Toolstack = []string{
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
	// Modules: the Debian kernel builds the dom0 drivers the toolstack
	// needs as modules; xenfs depends on xen-privcmd, found through
	// .modinfo.
	Modules = []string{
		"lib/modules/6.1.0-47-amd64/kernel/drivers/xen/xen-evtchn.ko",
		"lib/modules/6.1.0-47-amd64/kernel/drivers/xen/xen-gntdev.ko",
		"lib/modules/6.1.0-47-amd64/kernel/drivers/xen/xen-gntalloc.ko",
		"lib/modules/6.1.0-47-amd64/kernel/drivers/xen/xenfs/xenfs.ko",
	}
	// Symlinks put xl on the operator's PATH.
	Symlinks = map[string]string{
		"usr/sbin/xl": "/usr/lib/xen-4.17/bin/xl",
	}
)

// Find returns where in-image path p is in the first of Roots that has it
// (without following a final symlink).
func Find(t testing.TB, p string) string {
	t.Helper()
	for _, r := range Roots(t) {
		host := filepath.Join(r, p)
		if _, err := os.Lstat(host); err == nil {
			return host
		}
	}
	t.Fatalf("q35test: %s is in no qemu-q35 package", p)
	return ""
}
