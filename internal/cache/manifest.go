package cache

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/fwbuild/fwbuild/internal/atomicfile"
)

// ManifestName is the file, at the top of every directory entry, that records
// what the entry held when it was built: a key names the inputs, not the
// bytes on disk, so without it a damaged entry (a flipped bit, an edited
// file) would be reused silently and the build's manifest would lie.
//
// It is text, one line per file, sorted by path; JSON took longer to parse
// than the check it serves for a package of thousands of files:
//
//	fwbuild-manifest 2
//	f <perm, octal> <size> <sha256> <inode> <mtime ns> <ctime ns> <quoted path>
//	d <inode> <mtime ns> <ctime ns> <quoted path>
//	l <inode> <mtime ns> <ctime ns> <quoted target> <quoted path>
//	end <number of records>
//
// A record without a fingerprint has "-" for inode, mtime and ctime.
const ManifestName = ".files.sha256"

// manifestVersion changes if the format does. A manifest of another version
// is treated as none (ErrUnrecorded), not as damage: another fwbuild wrote it.
const manifestVersion = 2

const manifestHeader = "fwbuild-manifest "

// File types in a manifest.
const (
	TypeFile    = "file"
	TypeDir     = "dir"
	TypeSymlink = "symlink"
)

// FileRecord is one file, directory or symlink of an entry.
type FileRecord struct {
	Type   string
	Mode   fs.FileMode // permission bits of a file; 0: not checked
	Size   int64
	SHA256 string
	Target string // of a symlink
	// Stat lets a quick check skip hashing a file that has not been touched
	// since it was hashed (as git's index does): any write through the file
	// system changes mtime and ctime, and ctime cannot be set back.
	Stat *Fingerprint
}

// Fingerprint identifies one state of a file's inode.
type Fingerprint struct {
	Ino   uint64
	Mtime int64
	Ctime int64
}

// Manifest is the content of a directory entry by slash-separated path
// relative to it; the manifest file itself is not listed.
type Manifest struct {
	Version int
	Files   map[string]FileRecord
}

// NewManifest returns a manifest of files (without fingerprints), such as
// the tree a package must unpack to.
func NewManifest(files map[string]FileRecord) *Manifest {
	return &Manifest{Version: manifestVersion, Files: files}
}

// File returns the recorded hash and size of a regular file of the entry.
func (m *Manifest) File(rel string) (sha256 string, size int64, ok bool) {
	if m == nil {
		return "", 0, false
	}
	f, ok := m.Files[filepath.ToSlash(rel)]
	if !ok || f.Type != TypeFile {
		return "", 0, false
	}
	return f.SHA256, f.Size, true
}

// ErrUnrecorded means an entry has no manifest: an older fwbuild built it.
var ErrUnrecorded = errors.New("cache: entry has no " + ManifestName)

// CorruptError is an entry whose files differ from its manifest.
type CorruptError struct {
	Entry  string // the entry's path
	File   string // relative path of the first difference ("" for the manifest itself)
	Reason string
}

func (e *CorruptError) Error() string {
	if e.File == "" {
		return fmt.Sprintf("cache entry %s is damaged: %s", e.Entry, e.Reason)
	}
	return fmt.Sprintf("cache entry %s is damaged: %s %s", e.Entry, e.File, e.Reason)
}

// BuildManifest hashes every file under dir (not following symlinks).
func BuildManifest(dir string) (*Manifest, error) {
	m := &Manifest{Version: manifestVersion, Files: map[string]FileRecord{}}
	err := filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if rel == "." || rel == ManifestName {
			return nil
		}
		rec, err := recordOf(p, de)
		if err != nil {
			return err
		}
		if rec.Type == TypeFile {
			if rec.SHA256, _, err = atomicfile.HashFile(p); err != nil {
				return err
			}
		}
		m.Files[filepath.ToSlash(rel)] = rec
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cache: record %s: %w", dir, err)
	}
	return m, nil
}

// recordOf describes p without hashing it.
func recordOf(p string, de fs.DirEntry) (FileRecord, error) {
	info, err := de.Info()
	if err != nil {
		return FileRecord{}, err
	}
	switch t := info.Mode().Type(); {
	case t == 0:
		return FileRecord{Type: TypeFile, Mode: info.Mode().Perm(), Size: info.Size(), Stat: fingerprint(info)}, nil
	case t == fs.ModeDir:
		return FileRecord{Type: TypeDir, Stat: fingerprint(info)}, nil
	case t == fs.ModeSymlink:
		target, err := os.Readlink(p)
		return FileRecord{Type: TypeSymlink, Target: target, Stat: fingerprint(info)}, err
	default:
		return FileRecord{}, fmt.Errorf("%s: a %s has no place in a cache entry", p, t)
	}
}

func fingerprint(info fs.FileInfo) *Fingerprint {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	return &Fingerprint{Ino: st.Ino, Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano()}
}

// manifestFile is where the manifest of the entry at path is kept: inside
// it, or beside it (<key>.files.sha256) for trees whose top level must stay as
// built (a kernel source tree: older fwbuilds want exactly one directory).
func manifestFile(path string, beside bool) string {
	if beside {
		return path + ManifestName
	}
	return filepath.Join(path, ManifestName)
}

// Write records m as dir's manifest, atomically: a crash leaves the old one.
func (m *Manifest) Write(dir string) error { return m.writeFile(manifestFile(dir, false)) }

func (m *Manifest) writeFile(file string) error {
	if err := atomicfile.WriteFile(file, m.marshal(), 0o644); err != nil {
		return fmt.Errorf("cache: record %s: %w", file, err)
	}
	return nil
}

// ReadManifest reads the manifest of the directory entry at path; it fails
// with ErrUnrecorded if there is none and a CorruptError if it is unreadable.
func ReadManifest(path string) (*Manifest, error) {
	return readManifest(path, manifestFile(path, false))
}

func readManifest(path, file string) (*Manifest, error) {
	b, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", path, ErrUnrecorded)
	}
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	if first, _, _ := bytes.Cut(b, []byte("\n")); bytes.HasPrefix(first, []byte(manifestHeader)) &&
		string(first) != manifestHeader+strconv.Itoa(manifestVersion) {
		return nil, fmt.Errorf("%s: %w (%s is of another format, %q)", path, ErrUnrecorded, file, first)
	}
	m, err := unmarshal(b)
	if err != nil {
		return nil, &CorruptError{Entry: path, Reason: fmt.Sprintf("its manifest %s is unreadable: %v", file, err)}
	}
	return m, nil
}

func (m *Manifest) marshal() []byte {
	paths := make([]string, 0, len(m.Files))
	for p := range m.Files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s%d\n", manifestHeader, manifestVersion)
	for _, p := range paths {
		f := m.Files[p]
		switch f.Type {
		case TypeFile:
			fmt.Fprintf(&b, "f %o %d %s ", f.Mode, f.Size, f.SHA256)
		case TypeDir:
			b.WriteString("d ")
		case TypeSymlink:
			b.WriteString("l ")
		}
		if f.Stat != nil {
			fmt.Fprintf(&b, "%d %d %d ", f.Stat.Ino, f.Stat.Mtime, f.Stat.Ctime)
		} else {
			b.WriteString("- - - ")
		}
		if f.Type == TypeSymlink {
			b.WriteString(strconv.Quote(f.Target) + " ")
		}
		b.WriteString(strconv.Quote(p) + "\n")
	}
	// So that a manifest cut short at a line's end is not taken for a
	// smaller entry.
	fmt.Fprintf(&b, "end %d\n", len(paths))
	return b.Bytes()
}

func unmarshal(b []byte) (*Manifest, error) {
	text := string(b)
	first, rest, _ := strings.Cut(text, "\n")
	if first != manifestHeader+strconv.Itoa(manifestVersion) {
		return nil, fmt.Errorf("header %q, want %q", first, manifestHeader+strconv.Itoa(manifestVersion))
	}
	m := &Manifest{Version: manifestVersion, Files: make(map[string]FileRecord, strings.Count(rest, "\n"))}
	for n := 2; ; n++ {
		if rest == "" {
			return nil, errors.New("cut short: no end line")
		}
		var line string
		line, rest, _ = strings.Cut(rest, "\n")
		if count, ok := strings.CutPrefix(line, "end "); ok {
			if rest != "" || count != strconv.Itoa(len(m.Files)) {
				return nil, fmt.Errorf("line %d: %q after %d records", n, line, len(m.Files))
			}
			return m, nil
		}
		p, f, err := parseLine(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		m.Files[p] = f
	}
}

func parseLine(line string) (string, FileRecord, error) {
	kind, rest, _ := strings.Cut(line, " ")
	var f FileRecord
	bad := fmt.Errorf("bad record %q", line)
	switch kind {
	case "f":
		f.Type = TypeFile
		var fields [3]string
		for i := range fields {
			fields[i], rest, _ = strings.Cut(rest, " ")
		}
		mode, err1 := strconv.ParseUint(fields[0], 8, 32)
		size, err2 := strconv.ParseInt(fields[1], 10, 64)
		if errors.Join(err1, err2) != nil || len(fields[2]) != 64 {
			return "", f, bad
		}
		f.Mode, f.Size, f.SHA256 = fs.FileMode(mode), size, fields[2]
	case "d":
		f.Type = TypeDir
	case "l":
		f.Type = TypeSymlink
	default:
		return "", f, bad
	}
	var fields [3]string
	for i := range fields {
		fields[i], rest, _ = strings.Cut(rest, " ")
	}
	if fields[0] != "-" {
		ino, err1 := strconv.ParseUint(fields[0], 10, 64)
		mt, err2 := strconv.ParseInt(fields[1], 10, 64)
		ct, err3 := strconv.ParseInt(fields[2], 10, 64)
		if errors.Join(err1, err2, err3) != nil {
			return "", f, bad
		}
		f.Stat = &Fingerprint{Ino: ino, Mtime: mt, Ctime: ct}
	}
	if f.Type == TypeSymlink {
		q, err := strconv.QuotedPrefix(rest)
		if err != nil {
			return "", f, bad
		}
		f.Target, _ = strconv.Unquote(q)
		rest = strings.TrimPrefix(rest[len(q):], " ")
	}
	p, err := strconv.Unquote(rest)
	if err != nil || p == "" {
		return "", f, bad
	}
	return p, f, nil
}

// Verification depths.
const (
	// Full hashes every file.
	Full = true
	// Quick hashes only files whose inode, mtime or ctime changed since they
	// were recorded; it still catches any file written, replaced, added or
	// removed through the file system, but not a bit that rots on the disk.
	Quick = false
)

// Verify checks the tree at path (an entry, or a symlink to one) against m.
// It reports whether a quick check found fingerprints that changed while
// the content did not (a copied cache): m then holds the new ones, and the
// caller may Write it so that the next quick check is quick again.
func Verify(path string, m *Manifest, full bool) (refreshed bool, err error) {
	dir, err := filepath.EvalSymlinks(path)
	if err != nil {
		return false, fmt.Errorf("cache: %w", err)
	}
	if !full {
		return verifyQuick(path, dir, m)
	}
	bad := func(rel, reason string) error { return &CorruptError{Entry: path, File: rel, Reason: reason} }
	seen := 0
	err = filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if rel == "." || rel == ManifestName {
			return nil
		}
		rel = filepath.ToSlash(rel)
		want, ok := m.Files[rel]
		if !ok {
			return bad(rel, "is not in the recorded manifest (added since the entry was built)")
		}
		seen++
		got, err := recordOf(p, de)
		if err != nil {
			return bad(rel, err.Error())
		}
		switch {
		case got.Type != want.Type:
			return bad(rel, fmt.Sprintf("is a %s, recorded as a %s", got.Type, want.Type))
		case got.Type == TypeSymlink && got.Target != want.Target:
			return bad(rel, fmt.Sprintf("points to %q, recorded as %q", got.Target, want.Target))
		case got.Type != TypeFile:
			return nil
		case got.Size != want.Size:
			return bad(rel, fmt.Sprintf("has %d bytes, recorded as %d", got.Size, want.Size))
		case want.Mode != 0 && got.Mode != want.Mode:
			return bad(rel, fmt.Sprintf("has mode %v, recorded as %v", got.Mode, want.Mode))
		}
		if !full && want.Stat != nil && got.Stat != nil && *want.Stat == *got.Stat {
			return nil
		}
		sum, _, err := atomicfile.HashFile(p)
		if err != nil {
			return bad(rel, err.Error())
		}
		if sum != want.SHA256 {
			return bad(rel, fmt.Sprintf("has SHA-256 %s, recorded as %s", sum, want.SHA256))
		}
		if !full && (want.Stat == nil || *want.Stat != *got.Stat) {
			want.Stat = got.Stat
			m.Files[rel] = want
			refreshed = true
		}
		return nil
	})
	if err != nil {
		var ce *CorruptError
		if errors.As(err, &ce) {
			return false, err
		}
		return false, &CorruptError{Entry: path, Reason: err.Error()}
	}
	if seen != len(m.Files) {
		for rel, f := range m.Files {
			if _, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(rel))); err != nil {
				return false, bad(rel, fmt.Sprintf("(a %s) is missing", f.Type))
			}
		}
	}
	return refreshed, nil
}

// verifyQuick is Verify without hashing untouched files: one lstat per
// record, in parallel, and no directory listing (but the top one's) unless a
// directory's own fingerprint changed, which adding, removing or renaming
// anything in it does. That is most of a no-op rebuild's time for packages
// of thousands of files.
func verifyQuick(path, dir string, m *Manifest) (bool, error) {
	bad := func(rel, reason string) error { return &CorruptError{Entry: path, File: rel, Reason: reason} }
	children := map[string][]string{}
	rels := make([]string, 0, len(m.Files))
	for rel := range m.Files {
		rels = append(rels, rel)
		parent, name := ".", rel
		if i := strings.LastIndexByte(rel, '/'); i >= 0 {
			parent, name = rel[:i], rel[i+1:]
		}
		children[parent] = append(children[parent], name)
	}
	// The top directory has no fingerprint (writing the manifest into it
	// changes it): always listed.
	if err := sameNames(dir, ".", children["."]); err != nil {
		return false, bad(err.rel, err.reason)
	}
	type update struct {
		rel string
		fp  *Fingerprint
	}
	workers := min(runtime.GOMAXPROCS(0), 1+len(rels)/256)
	errs := make([]error, workers)
	updates := make([][]update, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(rels); i += workers {
				rel := rels[i]
				want := m.Files[rel]
				p := filepath.Join(dir, filepath.FromSlash(rel))
				info, err := os.Lstat(p)
				if err != nil {
					errs[w] = bad(rel, fmt.Sprintf("(a %s) is missing", want.Type))
					return
				}
				got := typeOf(info)
				switch {
				case got != want.Type:
					errs[w] = bad(rel, fmt.Sprintf("is a %s, recorded as a %s", got, want.Type))
				case got == TypeFile && info.Size() != want.Size:
					errs[w] = bad(rel, fmt.Sprintf("has %d bytes, recorded as %d", info.Size(), want.Size))
				case got == TypeFile && want.Mode != 0 && info.Mode().Perm() != want.Mode:
					errs[w] = bad(rel, fmt.Sprintf("has mode %v, recorded as %v", info.Mode().Perm(), want.Mode))
				}
				if errs[w] != nil {
					return
				}
				fp := fingerprint(info)
				if fp != nil && want.Stat != nil && *fp == *want.Stat {
					continue
				}
				// Touched since recorded: look at the content.
				switch got {
				case TypeFile:
					if sum, _, err := atomicfile.HashFile(p); err != nil || sum != want.SHA256 {
						errs[w] = bad(rel, fmt.Sprintf("has SHA-256 %s, recorded as %s (%v)", sum, want.SHA256, err))
					}
				case TypeSymlink:
					if target, err := os.Readlink(p); err != nil || target != want.Target {
						errs[w] = bad(rel, fmt.Sprintf("points to %q, recorded as %q", target, want.Target))
					}
				case TypeDir:
					if err := sameNames(dir, rel, children[rel]); err != nil {
						errs[w] = bad(err.rel, err.reason)
					}
				}
				if errs[w] != nil {
					return
				}
				updates[w] = append(updates[w], update{rel, fp})
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, e := range errs {
			if e != nil {
				return false, e // the first worker's, which is a CorruptError
			}
		}
	}
	refreshed := false
	for _, us := range updates {
		for _, u := range us {
			f := m.Files[u.rel]
			f.Stat = u.fp
			m.Files[u.rel] = f
			refreshed = true
		}
	}
	return refreshed, nil
}

type nameError struct{ rel, reason string }

// sameNames checks that directory rel of dir holds exactly names (and,
// at the top, the manifest).
func sameNames(dir, rel string, names []string) *nameError {
	ents, err := os.ReadDir(filepath.Join(dir, filepath.FromSlash(rel)))
	if err != nil {
		return &nameError{rel, err.Error()}
	}
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	found := 0
	for _, e := range ents {
		if rel == "." && e.Name() == ManifestName {
			continue
		}
		if !want[e.Name()] {
			return &nameError{path.Join(rel, e.Name()), "is not in the recorded manifest (added since the entry was built)"}
		}
		found++
	}
	if found != len(names) {
		for _, n := range names {
			if _, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(rel), n)); err != nil {
				return &nameError{path.Join(rel, n), "is missing"}
			}
		}
	}
	return nil
}

func typeOf(info fs.FileInfo) string {
	switch info.Mode().Type() {
	case 0:
		return TypeFile
	case fs.ModeDir:
		return TypeDir
	case fs.ModeSymlink:
		return TypeSymlink
	}
	return info.Mode().Type().String()
}

// VerifyEntry reads the manifest of the directory entry at path and checks
// the entry against it, refreshing stale fingerprints (best effort).
func VerifyEntry(path string, full bool) (*Manifest, error) {
	return verifyEntry(path, manifestFile(path, false), full)
}

func verifyEntry(path, file string, full bool) (*Manifest, error) {
	m, err := readManifest(path, file)
	if err != nil {
		return nil, err
	}
	refreshed, err := Verify(path, m, full)
	if err != nil {
		return nil, err
	}
	if refreshed {
		m.writeFile(file) // only saves time next run: a failure costs nothing
	}
	return m, nil
}

// RecordedHash returns the SHA-256 and size recorded for a file at the top
// of a directory entry with its manifest inside, if its inode, mtime, ctime
// and size are still as recorded. It is only as good as the entry's last
// check: callers use it for entries checked in full in the same run.
func RecordedHash(p string) (sum string, size int64, ok bool) {
	m, err := ReadManifest(filepath.Dir(p))
	if err != nil {
		return "", 0, false
	}
	rec, found := m.Files[filepath.Base(p)]
	if !found || rec.Type != TypeFile || rec.Stat == nil {
		return "", 0, false
	}
	info, err := os.Lstat(p)
	if err != nil || !info.Mode().IsRegular() || info.Size() != rec.Size {
		return "", 0, false
	}
	if fp := fingerprint(info); fp == nil || *fp != *rec.Stat {
		return "", 0, false
	}
	return rec.SHA256, rec.Size, true
}
