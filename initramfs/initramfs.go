// Package initramfs builds the control domain's initramfs: a u-root busybox
// (u-root's init, gosh, operator tools and fwbuild's ctld agent as uinit) plus
// Xen toolstack files taken from extracted Debian packages with their full
// shared-library closure, resolved from the ELF files themselves (never the
// build host's ldd), as one deterministic newc cpio, compressed.
package initramfs

import (
	"bytes"
	"context"
	"fmt"
	"github.com/fwbuild/fwbuild/boardcfg"
	"github.com/fwbuild/fwbuild/contract"
	"github.com/fwbuild/fwbuild/initramfs/internal/closure"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"sort"
	"strings"
	"time"
)

// Spec says what goes into the archive.
type Spec struct {
	// Commands are u-root command packages built in busybox mode, e.g.
	// "github.com/u-root/u-root/cmds/core/ls". They must include init and
	// gosh; ctld (CtldPackage) is always added and started as uinit.
	Commands []string
	// Roots are extracted package trees (dpkg-deb -x); they form one file
	// system, earlier roots winning when a path is in several.
	Roots []string
	// Toolstack are paths inside Roots (e.g. "usr/lib/xen-4.17/bin/xl").
	// Each comes with its symlink targets, directory contents, ELF
	// interpreter and shared libraries, at the same paths.
	Toolstack []string
	// Modules are kernel modules inside Roots
	// ("lib/modules/<release>/kernel/.../x.ko"). Their dependencies are added
	// too, and ctld loads them all at boot, in dependency order.
	Modules []string
	// Symlinks are extra symlinks: image path -> target, e.g.
	// "usr/sbin/xl" -> "/usr/lib/xen-4.17/bin/xl".
	Symlinks map[string]string
	// Extra are generated files (configs); they may replace u-root's
	// defaults such as etc/resolv.conf.
	Extra []File
	// Compression defaults to xz. xz-x86 adds the x86 BCJ filter: 5%
	// smaller, but the kernel needs CONFIG_XZ_DEC_X86=y (Debian's has it;
	// tinyconfig turns it off).
	Compression boardcfg.Compression
	// Epoch is every entry's mtime; the zero value means the Unix epoch.
	// Callers pass SOURCE_DATE_EPOCH here.
	Epoch time.Time
	// BuildTags for the busybox build. "goshliner" gives gosh a small line
	// editor that works on a serial console instead of bubbline.
	BuildTags []string
	// GOARCH of the busybox; default amd64.
	GOARCH string
	// GoCmd is the go command used to compile u-root; default "go" on PATH.
	GoCmd string
	// TempDir holds build files, removed afterwards; default os.TempDir().
	TempDir string
	// Log receives progress; default slog.Default().
	Log *slog.Logger
}

// File is a generated file for the archive.
type File struct {
	Path string
	Data []byte
	Mode fs.FileMode // permission bits; 0 means 0644
}

// node is f as an archive member at its cleaned absolute path.
func (f File) node() (*closure.Node, error) {
	c, err := imagePath(f.Path)
	if err != nil {
		return nil, err
	}
	perm := f.Mode.Perm()
	if perm == 0 {
		perm = 0o644
	}
	return &closure.Node{Path: c, Kind: closure.File, Perm: perm, Data: f.Data, Size: int64(len(f.Data))}, nil
}

// Entry is one archive member, for size reports.
type Entry struct {
	Path string      // absolute path in the image
	Size int64       // bytes stored (a symlink's target length)
	Mode fs.FileMode // type and permission bits
	Link string      // symlink target
}

// Archive is a built initramfs.
type Archive struct {
	Data    []byte  // compressed archive, ready for the boot loader
	RawSize int64   // size of the uncompressed cpio
	Listing []Entry // every member, sorted by path
	// Modules are the kernel modules ctld loads, in order.
	Modules []string
}

func (s *Spec) arch() string {
	if s.GOARCH == "" {
		return "amd64"
	}
	return s.GOARCH
}

// Build builds the archive. The same Spec and inputs give the same bytes.
// ctx bounds the go and xz commands Build runs itself; the busybox
// compilation inside mkuimage cannot be interrupted and is checked around.
func Build(ctx context.Context, s Spec) (*Archive, error) {
	if s.Log == nil {
		s.Log = slog.Default()
	}
	if err := checkArchiveSpec("initramfs", &s.Compression, s.Epoch); err != nil {
		return nil, err
	}

	// Collect the toolstack first: it is fast and catches most mistakes.
	t, err := closure.New(s.Roots)
	if err != nil && (len(s.Toolstack) > 0 || len(s.Modules) > 0) {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	var modules []string
	if t != nil {
		for _, p := range s.Toolstack {
			if err := t.Add(p, "wanted toolstack file"); err != nil {
				return nil, fmt.Errorf("initramfs: toolstack: %w", err)
			}
		}
		if modules, err = t.AddModules(s.Modules); err != nil {
			return nil, fmt.Errorf("initramfs: %w", err)
		}
	}

	tmp, err := os.MkdirTemp(s.TempDir, "fwbuild-initramfs-")
	if err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	defer os.RemoveAll(tmp)
	start := time.Now()
	nodes, err := buildUroot(ctx, s.Log, &s, tmp)
	if err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	s.Log.Info("initramfs: u-root busybox built", "commands", len(s.Commands)+1, "took", time.Since(start).Round(time.Millisecond))

	if t != nil {
		if err := merge(nodes, t.Nodes, "the toolstack"); err != nil {
			return nil, fmt.Errorf("initramfs: %w", err)
		}
	}
	extra := map[string]*closure.Node{}
	if len(modules) > 0 {
		list := strings.Join(modules, "\n") + "\n"
		extra[contract.ModulesList] = &closure.Node{Path: contract.ModulesList, Kind: closure.File, Perm: 0o644, Data: []byte(list), Size: int64(len(list))}
	}
	for p, target := range s.Symlinks {
		c, err := imagePath(p)
		if err != nil || target == "" {
			return nil, fmt.Errorf("initramfs: symlink %q -> %q: want a relative or absolute path and a target", p, target)
		}
		extra[c] = &closure.Node{Path: c, Kind: closure.Symlink, Perm: 0o777, Link: target, Size: int64(len(target))}
	}
	for _, f := range s.Extra {
		n, err := f.node()
		if err != nil {
			return nil, fmt.Errorf("initramfs: extra file: %w", err)
		}
		extra[n.Path] = n
	}
	for p, n := range extra {
		if old, ok := nodes[p]; ok && (old.Kind == closure.Dir || n.Kind == closure.Dir) {
			return nil, fmt.Errorf("initramfs: %s: would replace a directory", p)
		}
		nodes[p] = n
	}
	addParents(nodes)

	var raw bytes.Buffer
	listing, err := writeCPIO(&raw, nodes, s.Epoch.Unix())
	if err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	data, err := compress(ctx, s.Compression, raw.Bytes())
	if err != nil {
		return nil, fmt.Errorf("initramfs: compress: %w", err)
	}
	s.Log.Info("initramfs: archive written", "entries", len(listing), "raw", raw.Len(), "compressed", len(data), "compression", s.Compression)
	return &Archive{Data: data, RawSize: int64(raw.Len()), Listing: listing, Modules: modules}, nil
}

// imagePath cleans an archive path given with or without a leading slash.
func imagePath(p string) (string, error) {
	c := path.Clean("/" + p)
	if p == "" || c == "/" || strings.Contains(p, "\x00") {
		return "", fmt.Errorf("bad archive path %q", p)
	}
	return c, nil
}

// Largest returns the n largest members, biggest first, for size reports.
func (a *Archive) Largest(n int) []Entry {
	l := append([]Entry(nil), a.Listing...)
	sort.SliceStable(l, func(i, j int) bool { return l[i].Size > l[j].Size })
	if n < len(l) {
		l = l[:n]
	}
	return l
}

// checkArchiveSpec validates what both archive builders share: the
// compression (defaulting to xz) and an epoch a cpio mtime can hold.
func checkArchiveSpec(what string, compression *boardcfg.Compression, epoch time.Time) error {
	if *compression == "" {
		*compression = boardcfg.XZ
	}
	switch *compression {
	case boardcfg.XZ, boardcfg.XZX86, boardcfg.Zstd, boardcfg.NoCompression:
	default:
		return fmt.Errorf("%s: compression %q: want xz, xz-x86, zstd or none", what, *compression)
	}
	if epoch.Before(time.Unix(0, 0)) || epoch.Unix() > 1<<32-1 {
		return fmt.Errorf("%s: epoch %v does not fit a cpio mtime", what, epoch)
	}
	return nil
}

// DefaultBuildTags selects gosh's small line editor (peterh/liner), which
// also suits a serial console better than the default bubbline; it saves
// about 1 MB of busybox.
func DefaultBuildTags() []string { return []string{"goshliner"} }
