package boardcfg

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fwbuild/fwbuild/hvcore/kconfig"
)

// Files a profile names on the build host, and where each may be. fwbuild
// runs as root with profiles from many hands, so a profile must not be a
// way to read (and see in error messages) any host file, or to make a build
// read a device:
//
//   - extends: a board name (boards/NAME.yaml) or a path relative to the
//     extending profile; it must be in that profile's directory tree or in
//     boards/, a regular file of at most 1 MiB.
//   - hypervisor.dom0.kernel.fragment: relative to boards/ and in boards/,
//     as is every file it #includes; each a regular file of at most 1 MiB.
//   - a source kernel's patches (hypervisor.dom0.kernel.patches,
//     guests[].kernel.patches): as the fragment, each at most MaxPatchFile.
//   - hypervisor.dom0.kernel.path: relative to the profile that sets it; in
//     that profile's directory tree or in boards/, a regular file of at most
//     256 MiB.
//   - outputs.spi.firmware.path: the same as hypervisor.dom0.kernel.path
//     (at most MaxFirmwareFile).
//
// "In a tree" is decided after filepath.EvalSymlinks, so a symlink that
// points out of the tree counts as outside. Paths inside packages
// (components[].files, control_domain.toolstack) are relative and without
// "..": they are resolved in the unpacked package, never on the host.

// MaxKernelFile bounds a dom0 kernel given by path: bzImages are tens of MiB.
const MaxKernelFile = 256 << 20

// MaxPatchFile bounds a kernel patch: a board's patches are small.
const MaxPatchFile = 1 << 20

// realDir is dir with symlinks resolved, absolute; "" if it does not exist,
// so that no file can be inside it.
func realDir(dir string) string {
	if dir == "" {
		return ""
	}
	r, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return ""
	}
	if r, err = filepath.Abs(r); err != nil {
		return ""
	}
	return r
}

// confine resolves p (value, as the profile gives it, joined to its base
// directory; messages show value), requires the result to be inside one of roots (resolved directories; "" entries are
// skipped), a regular file, and at most max bytes. It returns the resolved
// path, which is what must be read later: reading p again could follow a
// symlink swapped in meanwhile. It opens nothing.
func confine(p, value string, roots []string, max int64, what string) (string, error) {
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		if os.IsNotExist(err) {
			return "", fmt.Errorf("%s %q (%s) does not exist", what, value, p)
		}
		return "", fmt.Errorf("%s %q: %v", what, value, err)
	}
	if real, err = filepath.Abs(real); err != nil {
		return "", fmt.Errorf("%s %q: %v", what, value, err)
	}
	inside := false
	var names []string
	for _, r := range roots {
		if r == "" {
			continue
		}
		if !slices.Contains(names, r) {
			names = append(names, r)
		}
		if rel, err := filepath.Rel(r, real); err == nil && filepath.IsLocal(rel) {
			inside = true
		}
	}
	if !inside {
		return "", fmt.Errorf("%s %q resolves to %s, outside %s: put the file there (symlinks count where they point)", what, value, real, strings.Join(names, " and "))
	}
	st, err := os.Stat(real)
	if err != nil {
		return "", fmt.Errorf("%s %q: %v", what, value, err)
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("%s %q is not a regular file (%v)", what, value, st.Mode().Type())
	}
	if st.Size() > max {
		return "", fmt.Errorf("%s %q is %d bytes: at most %d", what, value, st.Size(), max)
	}
	return real, nil
}

// checkHostFiles applies the rules above to the kernel's fragment and path
// and records the resolved paths the build reads.
func (b *Board) checkHostFiles(boardsDir string) []error {
	var errs []error
	boards := realDir(boardsDir)
	k := &b.Hypervisor.Dom0.Kernel
	if err := b.resolveFragment("hypervisor.dom0.kernel.fragment", k, boardsDir, boards); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, b.resolvePatches("hypervisor.dom0.kernel.patches", k, boardsDir, boards)...)
	for i := range b.Guests {
		if gk := b.Guests[i].Kernel.Build; gk != nil {
			if err := b.resolveFragment(fmt.Sprintf("guests[%d].kernel.fragment", i), gk, boardsDir, boards); err != nil {
				errs = append(errs, err)
			}
			errs = append(errs, b.resolvePatches(fmt.Sprintf("guests[%d].kernel.patches", i), gk, boardsDir, boards)...)
		}
	}
	if k.Path != "" {
		if real, err := b.profileFile("hypervisor.dom0.kernel.path", k.Path, boards, MaxKernelFile, "kernel"); err != nil {
			errs = append(errs, err)
		} else {
			k.PathFile = real
		}
	}
	if s := b.Outputs.SPI; s != nil && s.Firmware.Path != "" {
		if real, err := b.profileFile("outputs.spi.firmware.path", s.Firmware.Path, boards, MaxFirmwareFile, "firmware image"); err != nil {
			errs = append(errs, err)
		} else {
			s.Firmware.File = real
			s.Firmware.pin = b.Loc("outputs.spi.firmware.sha256")
		}
	}
	return errs
}

// profileFile confines value, the path field gives relative to the profile
// that sets it (after extends, not necessarily b.File), to that profile's
// tree or boards (resolved) and returns the resolved path.
func (b *Board) profileFile(field, value, boards string, max int64, what string) (string, error) {
	from := b.Loc(field).File
	p := value
	if !filepath.IsAbs(p) {
		p = filepath.Join(filepath.Dir(from), filepath.FromSlash(p))
	}
	real, err := confine(p, value, []string{realDir(filepath.Dir(from)), boards}, max, what)
	if err != nil {
		return "", b.errAt(field, "%v", err)
	}
	return real, nil
}

// resolveFragment confines a kernel's fragment (field) to the boards
// directory, parses it with its includes, and records the resolved path in
// k.FragmentFile.
func (b *Board) resolveFragment(field string, k *Kernel, boardsDir, boards string) error {
	switch {
	case k.Fragment == "":
		return nil
	case filepath.IsAbs(k.Fragment):
		return b.errAt(field, "%q: give a path relative to the boards directory %s", k.Fragment, boardsDir)
	case boards == "":
		return b.errAt(field, "no boards directory %q to find the fragment in (use --boards DIR)", boardsDir)
	}
	real, err := confine(filepath.Join(boardsDir, filepath.FromSlash(k.Fragment)), k.Fragment, []string{boards}, kconfig.MaxFragmentFile, "fragment")
	if err == nil {
		// The build parses it the same way; doing it here makes `fwbuild
		// check` refuse an #include outside boards/ (or a syntax error)
		// before anything runs.
		if _, err = kconfig.ParseFragmentIn(real, boards); errors.Unwrap(err) != nil {
			err = errors.Unwrap(err) // the field already names the fragment
		}
	}
	if err != nil {
		return b.errAt(field, "%v", err)
	}
	k.FragmentFile = real
	return nil
}

// resolvePatches confines a source kernel's patches (field, a list) to the
// boards directory as resolveFragment does its fragment, and records the
// resolved paths in k.PatchFiles.
func (b *Board) resolvePatches(field string, k *Kernel, boardsDir, boards string) []error {
	if len(k.Patches) == 0 {
		return nil
	}
	if k.Source == "" {
		return []error{b.errAt(field, "patches apply to a kernel built from source: give source and fragment, or drop patches")}
	}
	var errs []error
	k.PatchFiles = nil
	for i, p := range k.Patches {
		f := fmt.Sprintf("%s[%d]", field, i)
		switch {
		case filepath.IsAbs(p):
			errs = append(errs, b.errAt(f, "%q: give a path relative to the boards directory %s", p, boardsDir))
			continue
		case boards == "":
			errs = append(errs, b.errAt(f, "no boards directory %q to find the patch in (use --boards DIR)", boardsDir))
			continue
		}
		real, err := confine(filepath.Join(boardsDir, filepath.FromSlash(p)), p, []string{boards}, MaxPatchFile, "patch")
		if err != nil {
			errs = append(errs, b.errAt(f, "%v", err))
			continue
		}
		k.PatchFiles = append(k.PatchFiles, real)
	}
	return errs
}
