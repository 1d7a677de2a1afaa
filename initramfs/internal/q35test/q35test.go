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

// Components are the packages the qemu-q35 control domain is taken from,
// as boards/qemu-q35.yaml lists them, and Debian's kernel (for Modules).
func Components(t testing.TB) []string {
	t.Helper()
	return append(append([]string(nil), testdeps.Board(t, "qemu-q35").ControlDomain.Toolstack.Packages...), "linux-image")
}

// Roots returns the package roots of Components, without duplicates.
func Roots(t testing.TB) []string {
	t.Helper()
	seen := map[string]bool{}
	var roots []string
	for _, c := range Components(t) {
		r := testdeps.Root(t, c)
		if !seen[r] {
			seen[r] = true
			roots = append(roots, r)
		}
	}
	return roots
}

// Commands are the u-root commands boards/qemu-q35.yaml lists.
func Commands(t testing.TB) []string {
	t.Helper()
	return testdeps.Board(t, "qemu-q35").ControlDomain.Commands
}

// Toolstack is the qemu-q35 toolstack: the files boards/qemu-q35.yaml lists.
func Toolstack(t testing.TB) []string {
	t.Helper()
	return testdeps.Board(t, "qemu-q35").ControlDomain.Toolstack.Files
}

// Symlinks are qemu-q35's toolstack symlinks (xl on the operator's PATH).
func Symlinks(t testing.TB) map[string]string {
	t.Helper()
	return testdeps.Board(t, "qemu-q35").ControlDomain.Toolstack.Symlinks
}

// Modules: Debian's stock kernel builds the dom0 drivers the toolstack
// needs as modules (qemu-q35's own kernel has them built in); xenfs depends
// on xen-privcmd, found through .modinfo.
var Modules = []string{
	"lib/modules/6.1.0-47-amd64/kernel/drivers/xen/xen-evtchn.ko",
	"lib/modules/6.1.0-47-amd64/kernel/drivers/xen/xen-gntdev.ko",
	"lib/modules/6.1.0-47-amd64/kernel/drivers/xen/xen-gntalloc.ko",
	"lib/modules/6.1.0-47-amd64/kernel/drivers/xen/xenfs/xenfs.ko",
}

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
