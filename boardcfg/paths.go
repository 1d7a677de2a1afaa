package boardcfg

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
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
//   - hypervisor.dom0.kernel.path: relative to the profile that sets it; in
//     that profile's directory tree or in boards/, a regular file of at most
//     256 MiB.
//
// "In a tree" is decided after filepath.EvalSymlinks, so a symlink that
// points out of the tree counts as outside. Paths inside packages
// (components[].files, control_domain.toolstack) are relative and without
// "..": they are resolved in the unpacked package, never on the host.

// maxFragmentFile and maxFragmentReads are hvcore/kbuild's bounds
// (MaxFragmentFile; a test holds them equal).
const (
	maxFragmentFile  = 1 << 20
	maxFragmentReads = 256
)

// MaxKernelFile bounds a dom0 kernel given by path: bzImages are tens of MiB.
const MaxKernelFile = 256 << 20

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

// ReadBounded reads a regular file of at most max bytes. The check is made
// on the opened file (O_NONBLOCK, so a FIFO swapped in does not hang), and
// the read stops past max whatever the file does meanwhile.
func ReadBounded(path string, max int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() || st.Size() > max {
		return nil, fmt.Errorf("%s: want a regular file of at most %d bytes", path, max)
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s: grew past %d bytes while read", path, max)
	}
	return data, nil
}

// checkHostFiles applies the rules above to the kernel's fragment and path
// and records the resolved paths the build reads.
func (b *Board) checkHostFiles(boardsDir string) []error {
	var errs []error
	boards := realDir(boardsDir)
	k := &b.Hypervisor.Dom0.Kernel
	if k.Fragment != "" {
		const field = "hypervisor.dom0.kernel.fragment"
		switch {
		case filepath.IsAbs(k.Fragment):
			errs = append(errs, b.errAt(field, "%q: give a path relative to the boards directory %s", k.Fragment, boardsDir))
		case boards == "":
			errs = append(errs, b.errAt(field, "no boards directory %q to find the fragment in (use --boards DIR)", boardsDir))
		default:
			real, err := confine(filepath.Join(boardsDir, filepath.FromSlash(k.Fragment)), k.Fragment, []string{boards}, maxFragmentFile, "fragment")
			if err == nil {
				err = checkIncludes(real, boards, &fragmentWalk{})
			}
			if err != nil {
				errs = append(errs, b.errAt(field, "%v", err))
			} else {
				k.FragmentFile = real
			}
		}
	}
	if k.Path != "" {
		const field = "hypervisor.dom0.kernel.path"
		from := b.Loc(field).File
		p := k.Path
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(from), filepath.FromSlash(p))
		}
		real, err := confine(p, k.Path, []string{realDir(filepath.Dir(from)), boards}, MaxKernelFile, "kernel")
		if err != nil {
			errs = append(errs, b.errAt(field, "%v", err))
		} else {
			k.PathFile = real
		}
	}
	return errs
}

// reInclude is hvcore/kbuild's #include syntax.
var reInclude = regexp.MustCompile(`^#include(?:\s+(.*))?$`)

type fragmentWalk struct {
	reads int
	stack []string
}

// checkIncludes confines the files a fragment #includes, recursively, as
// hvcore/kbuild.ParseFragmentIn does at build time. It cannot call it:
// kbuild's tests load boards through boardcfg, so boardcfg must not import
// kbuild. It follows only #include lines and reports no syntax errors (the
// build does), so no line of any file appears in its errors.
func checkIncludes(real, root string, w *fragmentWalk) error {
	w.reads++
	if w.reads > maxFragmentReads {
		return fmt.Errorf("more than %d fragment files read (includes count each time): simplify the includes", maxFragmentReads)
	}
	data, err := ReadBounded(real, maxFragmentFile)
	if err != nil {
		return err
	}
	w.stack = append(w.stack, real)
	defer func() { w.stack = w.stack[:len(w.stack)-1] }()
	for n, line := range strings.Split(string(data), "\n") {
		m := reInclude.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		arg := strings.TrimSpace(m[1])
		if len(arg) >= 2 && (arg[0] == '"' && arg[len(arg)-1] == '"' || arg[0] == '<' && arg[len(arg)-1] == '>') {
			arg = arg[1 : len(arg)-1]
		}
		if arg == "" {
			continue // the build reports it
		}
		p := arg
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(real), p)
		}
		inc, err := confine(p, arg, []string{root}, maxFragmentFile, "#include")
		if err != nil {
			return fmt.Errorf("%s:%d: %w", real, n+1, err)
		}
		if slices.Contains(w.stack, inc) {
			return fmt.Errorf("%s:%d: include cycle: %s -> %s", real, n+1, strings.Join(w.stack, " -> "), inc)
		}
		if err := checkIncludes(inc, root, w); err != nil {
			return err
		}
	}
	return nil
}
