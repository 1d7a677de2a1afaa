// Package closure collects files from extracted package trees together with
// everything they need at run time: symlink targets, directory contents, the
// ELF interpreter and the shared-library closure (DT_NEEDED searched the way
// glibc's ld.so does, honouring DT_RPATH/DT_RUNPATH and $ORIGIN), and kernel
// modules with their .modinfo dependencies. It reads the ELF files
// themselves, never the build host's ldd, so the result does not depend on
// the machine that builds it.
package closure

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// maxHops bounds symlink resolution, as the kernel's 40 does.
const maxHops = 40

// Kind is a Node's file type.
type Kind int

// The kinds of Node.

const (
	Dir Kind = iota
	File
	Symlink
	CharDev
)

// Node is one entry of the image, keyed by its absolute in-image path.
type Node struct {
	Path string // absolute, clean, in the image
	Kind Kind
	Perm fs.FileMode
	Src  string // host file to copy (File), or empty when Data is set
	Data []byte
	Link string // Symlink target, verbatim
	Size int64
	// Major/Minor of a device node.
	Major, Minor uint32
}

// Tree is the union of extracted package roots, seen as one file system
// whose absolute paths are the image's. It resolves symlinks inside the
// union, never on the build host.
type Tree struct {
	roots []string
	// Nodes are the entries collected so far, by absolute image path.
	Nodes map[string]*Node
	// files seen so far by size, to keep hard links as one copy.
	bySize map[int64][]seenFile
}

type seenFile struct {
	fi   fs.FileInfo
	path string
}

// New returns an empty collection over roots; earlier roots win when a path
// is in several.
func New(roots []string) (*Tree, error) {
	if len(roots) == 0 {
		return nil, errors.New("no package roots given")
	}
	for _, r := range roots {
		fi, err := os.Stat(r)
		if err != nil {
			return nil, fmt.Errorf("package root: %w", err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("package root %s is not a directory", r)
		}
	}
	return &Tree{roots: roots, Nodes: map[string]*Node{}, bySize: map[int64][]seenFile{}}, nil
}

func (t *Tree) rootList() string { return strings.Join(t.roots, ", ") }

// lstat finds p (absolute, in the image) in the first root that has it. It
// does not resolve symlinks in p.
func (t *Tree) lstat(p string) (string, fs.FileInfo, error) {
	for _, r := range t.roots {
		host := filepath.Join(r, filepath.FromSlash(p))
		fi, err := os.Lstat(host)
		if err == nil {
			return host, fi, nil
		}
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			return "", nil, err
		}
	}
	return "", nil, fs.ErrNotExist
}

// resolveDir resolves every symlink in directory path dir and returns the
// real directory. With record set, the symlinks it went through become part
// of the image, so dir keeps working at run time.
func (t *Tree) resolveDir(dir string, record bool, hops *int) (string, error) {
	cur := "/"
	rest := strings.Split(strings.TrimPrefix(path.Clean(dir), "/"), "/")
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		if c == "" {
			continue
		}
		next := path.Join(cur, c)
		host, fi, err := t.lstat(next)
		if err != nil {
			return "", fmt.Errorf("%s: %w", next, err)
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			if *hops++; *hops > maxHops {
				return "", fmt.Errorf("%s: too many levels of symbolic links", next)
			}
			target, err := os.Readlink(host)
			if err != nil {
				return "", err
			}
			if record {
				t.Nodes[next] = &Node{Path: next, Kind: Symlink, Perm: 0o777, Link: target, Size: int64(len(target))}
			}
			base := cur
			if path.IsAbs(target) {
				base = "/"
			}
			// Restart from the link's target with what is left.
			rest = append(strings.Split(strings.TrimPrefix(path.Join(base, target), "/"), "/"), rest...)
			cur = "/"
		case fi.IsDir():
			cur = next
		default:
			return "", fmt.Errorf("%s: %w", next, syscall.ENOTDIR)
		}
	}
	return cur, nil
}

// locate resolves the directories of p and returns its real in-image path
// and where it is on the host, without following p itself.
func (t *Tree) locate(p string, record bool, hops *int) (string, string, fs.FileInfo, error) {
	p = path.Clean("/" + p)
	if p == "/" {
		return "", "", nil, errors.New("cannot add the root directory")
	}
	dir, err := t.resolveDir(path.Dir(p), record, hops)
	if err != nil {
		return "", "", nil, err
	}
	real := path.Join(dir, path.Base(p))
	host, fi, err := t.lstat(real)
	if err != nil {
		return "", "", nil, fmt.Errorf("%s: %w", real, err)
	}
	return real, host, fi, nil
}

// follow resolves p completely (like stat(2)) without changing the image.
func (t *Tree) follow(p string) (string, fs.FileInfo, error) {
	hops := 0
	for {
		real, host, fi, err := t.locate(p, false, &hops)
		if err != nil {
			return "", nil, err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			return host, fi, nil
		}
		if hops++; hops > maxHops {
			return "", nil, fmt.Errorf("%s: too many levels of symbolic links", p)
		}
		target, err := os.Readlink(host)
		if err != nil {
			return "", nil, err
		}
		if !path.IsAbs(target) {
			target = path.Join(path.Dir(real), target)
		}
		p = target
	}
}

// Add puts p into the image with everything it needs at run time: symlink
// targets, directory contents, and for ELF files the interpreter and the
// shared-library closure. why says who asked for p, for error messages.
func (t *Tree) Add(p, why string) error {
	hops := 0
	return t.addHops(p, why, nil, &hops)
}

func (t *Tree) addHops(p, why string, loaderRPath []string, hops *int) error {
	p = path.Clean("/" + p)
	if _, ok := t.Nodes[p]; ok {
		return nil
	}
	real, host, fi, err := t.locate(p, true, hops)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s (%s) is in none of the package roots (%s): %w", p, why, t.rootList(), err)
	}
	if err != nil {
		return fmt.Errorf("%s (%s): %w", p, why, err)
	}
	if _, ok := t.Nodes[real]; ok {
		return nil
	}
	perm := fi.Mode().Perm()
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(host)
		if err != nil {
			return err
		}
		t.Nodes[real] = &Node{Path: real, Kind: Symlink, Perm: 0o777, Link: target, Size: int64(len(target))}
		if *hops++; *hops > maxHops {
			return fmt.Errorf("%s (%s): too many levels of symbolic links", p, why)
		}
		if !path.IsAbs(target) {
			target = path.Join(path.Dir(real), target)
		}
		return t.addHops(target, "target of symlink "+real, loaderRPath, hops)
	case fi.IsDir():
		t.Nodes[real] = &Node{Path: real, Kind: Dir, Perm: perm}
		names, err := t.readDir(real)
		if err != nil {
			return err
		}
		for _, n := range names {
			h := 0
			if err := t.addHops(path.Join(real, n), "in directory "+real, nil, &h); err != nil {
				return err
			}
		}
		return nil
	case fi.Mode().IsRegular():
		if first := t.hardLinkOf(real, fi); first != "" {
			rel, err := filepath.Rel(path.Dir(real), first)
			if err != nil {
				return err
			}
			// A symlink is simpler than a cpio hard link and works for
			// the multi-call binaries that packages hard-link (xenstore-*
			// dispatch on argv[0]).
			t.Nodes[real] = &Node{Path: real, Kind: Symlink, Perm: 0o777, Link: rel, Size: int64(len(rel))}
			return nil
		}
		t.Nodes[real] = &Node{Path: real, Kind: File, Perm: perm, Src: host, Size: fi.Size()}
		return t.addELFDeps(real, host, loaderRPath)
	default:
		return fmt.Errorf("%s (%s): unsupported file type %v", p, why, fi.Mode().Type())
	}
}

// hardLinkOf returns the image path of a file already added that is the
// same inode as fi, or "".
func (t *Tree) hardLinkOf(p string, fi fs.FileInfo) string {
	for _, s := range t.bySize[fi.Size()] {
		if os.SameFile(s.fi, fi) {
			return s.path
		}
	}
	t.bySize[fi.Size()] = append(t.bySize[fi.Size()], seenFile{fi: fi, path: p})
	return ""
}

// readDir lists a directory across all roots (several packages fill the
// same directory).
func (t *Tree) readDir(dir string) ([]string, error) {
	seen := map[string]bool{}
	for _, r := range t.roots {
		ents, err := os.ReadDir(filepath.Join(r, filepath.FromSlash(dir)))
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			seen[e.Name()] = true
		}
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}

func (t *Tree) addELFDeps(p, host string, loaderRPath []string) error {
	f, err := os.Open(host)
	if err != nil {
		return err
	}
	defer f.Close()
	if !isELF(f) {
		return nil
	}
	info, err := readELF(f)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	if info.Interp != "" {
		if err := t.Add(info.Interp, "interpreter of "+p); err != nil {
			return err
		}
	}
	// ld.so uses DT_RPATH (of this object, then of the objects that loaded
	// it) only when the object has no DT_RUNPATH.
	var search []string
	rpath := append(append([]string(nil), info.RPath...), loaderRPath...)
	if len(info.RunPath) == 0 {
		search = append(search, expandOrigin(rpath, p)...)
	}
	search = append(search, expandOrigin(info.RunPath, p)...)
	search = append(search, defaultLibDirs(info.Machine)...)
	for _, lib := range info.Needed {
		if strings.Contains(lib, "/") {
			if err := t.Add(lib, "needed by "+p); err != nil {
				return err
			}
			continue
		}
		found := ""
		for _, dir := range search {
			cand := path.Join(dir, lib)
			if t.compatible(cand, info) {
				found = cand
				break
			}
		}
		if found == "" {
			return fmt.Errorf("library %s needed by %s is in none of the package roots (%s); searched %s",
				lib, p, t.rootList(), strings.Join(search, ":"))
		}
		hops := 0
		if err := t.addHops(found, "needed by "+p, rpath, &hops); err != nil {
			return err
		}
	}
	return nil
}

// compatible reports whether p exists and is an ELF object ld.so would load
// for info (same class and machine; it skips others, e.g. 32-bit ones).
func (t *Tree) compatible(p string, info *elfInfo) bool {
	host, fi, err := t.follow(p)
	if err != nil || !fi.Mode().IsRegular() {
		return false
	}
	f, err := os.Open(host)
	if err != nil {
		return false
	}
	defer f.Close()
	c, m, err := elfKind(f)
	return err == nil && c == info.Class && m == info.Machine
}

func expandOrigin(dirs []string, p string) []string {
	origin := path.Dir(p)
	out := make([]string, 0, len(dirs))
	for _, d := range dirs {
		d = strings.ReplaceAll(d, "${ORIGIN}", origin)
		d = strings.ReplaceAll(d, "$ORIGIN", origin)
		if path.IsAbs(d) {
			out = append(out, path.Clean(d))
		}
	}
	return out
}
