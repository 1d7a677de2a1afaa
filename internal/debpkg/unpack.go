package debpkg

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"

	"github.com/fwbuild/fwbuild/internal/cache"
	"pault.ag/go/debian/deb"
)

// Unpack extracts the data archive of a .deb into dest (which must exist).
//
// A package is data, not something to trust, so nothing it holds may write
// outside dest or anywhere but where its own name says:
//   - names that are absolute or climb out with ../ are refused;
//   - nothing is written through a symlink: a parent directory that is a
//     symlink is refused (./x -> /elsewhere then ./x/file), and an entry that
//     replaces a symlink or a file removes it first (never follows it);
//   - hard links must name a regular file extracted earlier;
//   - an entry cannot replace a directory, nor a directory a non-directory;
//   - device nodes, fifos and other special files are skipped (never created);
//   - setuid, setgid and sticky bits are stripped.
//
// All of it happens through an os.Root on dest, so even a check this code
// gets wrong cannot reach outside dest.
func Unpack(debPath, dest string) error {
	_, err := unpack(debPath, dest)
	return err
}

// unpack is Unpack, also returning what it wrote (as a cache manifest
// without fingerprints). With dest "" it writes nothing and only computes
// that: what the tree of a verified .deb must hold.
func unpack(debPath, dest string) (*cache.Manifest, error) {
	d, closer, err := deb.LoadFile(debPath)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", debPath, err)
	}
	defer closer()
	x := &extractor{dirs: map[string]bool{".": true}, files: map[string]cache.FileRecord{}}
	if dest != "" {
		if x.root, err = os.OpenRoot(dest); err != nil {
			return nil, err
		}
		defer x.root.Close()
	}
	if err := x.extract(d.Data); err != nil {
		return nil, err
	}
	return cache.NewManifest(x.files), nil
}

type extractor struct {
	root  *os.Root                    // nil: compute files only
	dirs  map[string]bool             // directories known to be real ones, by relative path
	files map[string]cache.FileRecord // what the tree holds, by relative path
}

// entryName is a tar entry's path relative to the package root ("." for the
// root itself), or an error if it leaves the root.
func entryName(name string) (string, error) {
	n := name
	for len(n) > 2 && n[:2] == "./" {
		n = n[2:]
	}
	if path.IsAbs(n) {
		return "", fmt.Errorf("data archive: entry %q escapes the package root: it is absolute", name)
	}
	c := path.Clean(n)
	if c == ".." || len(c) > 2 && c[:3] == "../" {
		return "", fmt.Errorf("data archive: entry %q escapes the package root", name)
	}
	return c, nil
}

func (x *extractor) extract(tr *tar.Reader) error {
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("data archive: %w", err)
		}
		rel, err := entryName(h.Name)
		if err != nil {
			return err
		}
		if err := x.entry(h, rel, tr); err != nil {
			return err
		}
	}
}

func (x *extractor) entry(h *tar.Header, rel string, body io.Reader) error {
	if rel == "." {
		return nil // the root: it exists
	}
	switch h.Typeflag {
	case tar.TypeDir:
		return x.mkdirs(rel, h.Name)
	case tar.TypeReg, tar.TypeSymlink, tar.TypeLink:
	default:
		// Device nodes, fifos and the like have no place in a build input,
		// and creating them as root would be a hole: skipped.
		return nil
	}
	if err := x.mkdirs(path.Dir(rel), h.Name); err != nil {
		return err
	}
	if err := x.clear(rel, h.Name); err != nil {
		return err
	}
	switch h.Typeflag {
	case tar.TypeReg:
		return x.file(rel, h, body)
	case tar.TypeSymlink:
		// The link is data: its target is never followed by extraction.
		if x.root != nil {
			if err := x.root.Symlink(h.Linkname, rel); err != nil {
				return fmt.Errorf("data archive: %s: %w", h.Name, err)
			}
		}
		x.files[rel] = cache.FileRecord{Type: cache.TypeSymlink, Target: h.Linkname}
		return nil
	default: // tar.TypeLink
		old, err := entryName(h.Linkname)
		if err != nil {
			return fmt.Errorf("data archive: hard link %q to %q escapes the package root", h.Name, h.Linkname)
		}
		// The target must be a regular file this package put there, so its
		// directories are known real ones and no link is followed.
		rec, ok := x.files[old]
		if !ok || rec.Type != cache.TypeFile || !x.dirs[path.Dir(old)] {
			return fmt.Errorf("data archive: hard link %q to %q: not a regular file earlier in the package", h.Name, h.Linkname)
		}
		if x.root != nil {
			if err := x.root.Link(old, rel); err != nil {
				return fmt.Errorf("data archive: %s: %w", h.Name, err)
			}
		}
		x.files[rel] = rec
		return nil
	}
}

// mkdirs makes rel and its parents real directories, refusing any that is a
// symlink or a file: writing through it would land wherever it points.
func (x *extractor) mkdirs(rel, name string) error {
	if x.dirs[rel] {
		return nil
	}
	if err := x.mkdirs(path.Dir(rel), name); err != nil {
		return err
	}
	if rec, ok := x.files[rel]; ok {
		return fmt.Errorf("data archive: entry %q: %s is a %s in the package, not a directory: refusing to write through it", name, rel, rec.Type)
	}
	if x.root != nil {
		// Only what this package created can be in the way, and it is in
		// x.files; check the disk too, in case dest was not empty.
		if info, err := x.root.Lstat(rel); err == nil && !info.IsDir() {
			return fmt.Errorf("data archive: entry %q: %s is not a directory: refusing to write through it", name, rel)
		} else if err != nil {
			if err := x.root.Mkdir(rel, 0o755); err != nil {
				return fmt.Errorf("data archive: %s: %w", name, err)
			}
		}
	}
	x.dirs[rel] = true
	x.files[rel] = cache.FileRecord{Type: cache.TypeDir}
	return nil
}

// clear makes way for a non-directory at rel: a file or symlink already
// there (tar lets a later entry replace an earlier one) is removed, not
// written through; a directory is refused, as it would take its contents.
func (x *extractor) clear(rel, name string) error {
	if x.dirs[rel] {
		return fmt.Errorf("data archive: entry %q would replace the directory %s", name, rel)
	}
	delete(x.files, rel)
	if x.root == nil {
		return nil
	}
	info, err := x.root.Lstat(rel)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err == nil && info.IsDir() {
		return fmt.Errorf("data archive: entry %q would replace the directory %s", name, rel)
	}
	if err == nil {
		err = x.root.Remove(rel)
	}
	if err != nil {
		return fmt.Errorf("data archive: %s: %w", name, err)
	}
	return nil
}

// file writes a regular file, with no more than its rwx bits (and owner
// write, so that the cache can replace it).
func (x *extractor) file(rel string, h *tar.Header, body io.Reader) error {
	perm := fs.FileMode(h.Mode)&0o777 | 0o200
	sum := sha256.New()
	w := io.Writer(sum)
	var f *os.File
	if x.root != nil {
		var err error
		// O_EXCL: never open whatever may have appeared there since clear.
		if f, err = x.root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); err != nil {
			return fmt.Errorf("data archive: %s: %w", h.Name, err)
		}
		defer f.Close()
		w = io.MultiWriter(f, sum)
	}
	n, err := io.Copy(w, body)
	if err != nil {
		return fmt.Errorf("data archive: %s: %w", h.Name, err)
	}
	if f != nil {
		if err := f.Chmod(perm); err != nil {
			return fmt.Errorf("data archive: %s: %w", h.Name, err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("data archive: %s: %w", h.Name, err)
		}
	}
	x.files[rel] = cache.FileRecord{Type: cache.TypeFile, Mode: perm, Size: n, SHA256: hex.EncodeToString(sum.Sum(nil))}
	return nil
}
