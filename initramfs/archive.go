package initramfs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/fwbuild/fwbuild/boardcfg"
	"github.com/fwbuild/fwbuild/initramfs/internal/closure"
	"github.com/fwbuild/fwbuild/internal/progress"

	"github.com/u-root/mkuimage/cpio"
)

// addParents gives every node its parent directories.
func addParents(nodes map[string]*closure.Node) {
	for p := range nodes {
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			if _, ok := nodes[d]; ok {
				break
			}
			nodes[d] = &closure.Node{Path: d, Kind: closure.Dir, Perm: 0o755}
		}
	}
}

// merge adds src into dst. Directories merge; anything else must be the same
// on both sides.
func merge(dst, src map[string]*closure.Node, what string) error {
	for p, n := range src {
		old, ok := dst[p]
		if !ok {
			dst[p] = n
			continue
		}
		if old.Kind == closure.Dir && n.Kind == closure.Dir {
			continue
		}
		if old.Kind == n.Kind && old.Link == n.Link && old.Major == n.Major && old.Minor == n.Minor &&
			(n.Kind != closure.File || (old.Src != "" && old.Src == n.Src)) {
			continue
		}
		return fmt.Errorf("%s from %s conflicts with an entry already in the archive", p, what)
	}
	return nil
}

// writeCPIO writes nodes as a newc archive: sorted by path (a parent sorts
// before its children), inode numbers in that order, owner root, one mtime.
func writeCPIO(w io.Writer, nodes map[string]*closure.Node, mtime int64) ([]Entry, error) {
	paths := make([]string, 0, len(nodes))
	for p := range nodes {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	cw := cpio.Newc.Writer(w)
	listing := make([]Entry, 0, len(paths))
	for i, p := range paths {
		n := nodes[p]
		info := cpio.Info{
			Ino:   uint64(i + 1),
			Mode:  uint64(n.Perm & 0o7777),
			NLink: 1,
			MTime: uint64(mtime),
			Name:  strings.TrimPrefix(p, "/"),
		}
		var data []byte
		var r io.ReaderAt
		mode := n.Perm & fs.ModePerm
		switch n.Kind {
		case closure.Dir:
			info.Mode |= cpio.S_IFDIR
			info.NLink = 2
			mode |= fs.ModeDir
		case closure.Symlink:
			info.Mode |= cpio.S_IFLNK
			data = []byte(n.Link)
			mode |= fs.ModeSymlink
		case closure.CharDev:
			info.Mode |= cpio.S_IFCHR
			info.Rmajor, info.Rminor = uint64(n.Major), uint64(n.Minor)
			mode |= fs.ModeDevice | fs.ModeCharDevice
		case closure.File:
			info.Mode |= cpio.S_IFREG
			data = n.Data
			if n.Src != "" {
				b, err := os.ReadFile(n.Src)
				if err != nil {
					return nil, err
				}
				data = b
			}
		}
		if data != nil {
			r = bytes.NewReader(data)
		}
		info.FileSize = uint64(len(data))
		if err := cw.WriteRecord(cpio.Record{ReaderAt: r, Info: info}); err != nil {
			return nil, fmt.Errorf("write %s: %w", p, err)
		}
		listing = append(listing, Entry{Path: p, Size: int64(len(data)), Mode: mode, Link: n.Link})
	}
	if err := cpio.WriteTrailer(cw); err != nil {
		return nil, err
	}
	return listing, nil
}

// compress applies the archive's compression with the host's xz or zstd:
// both compress better than the pure-Go encoders (see BenchmarkCompress),
// and every byte of the payload counts; single-threaded so the output does
// not depend on the machine. The kernel accepts only CRC32 (or no) integrity
// checks in an xz initramfs; zstd -19's 8 MiB window is what the kernel's
// own initramfs build (usr/Makefile) uses.
func compress(ctx context.Context, method boardcfg.Compression, raw []byte) ([]byte, error) {
	switch method {
	case boardcfg.NoCompression:
		return raw, nil
	case boardcfg.XZ:
		return xzTool(ctx, raw, "-9e")
	case boardcfg.XZX86:
		// The BCJ filter makes x86 code compress better; the kernel must
		// have CONFIG_XZ_DEC_X86 (the default on x86).
		return xzTool(ctx, raw, "--x86", "--lzma2=preset=9e")
	case boardcfg.Zstd:
		return compressTool(ctx, raw, "zstd", "-19", "-T1", "-q", "--no-progress", "-c")
	default:
		return nil, fmt.Errorf("compression %q: want xz, xz-x86, zstd or none", method)
	}
}

// xzTool runs xz with the options an initramfs needs and args.
func xzTool(ctx context.Context, raw []byte, args ...string) ([]byte, error) {
	return compressTool(ctx, raw, "xz", append([]string{"--format=xz", "--check=crc32", "--threads=1", "--stdout"}, args...)...)
}

// compressTool pipes raw through tool (xz or zstd; both Debian packages are
// named after the tool but xz's, xz-utils).
func compressTool(ctx context.Context, raw []byte, tool string, args ...string) ([]byte, error) {
	bin, err := exec.LookPath(tool)
	if err != nil {
		pkg := tool
		if tool == "xz" {
			pkg = "xz-utils"
		}
		return nil, fmt.Errorf("%s compression needs the %s tool (apt-get install %s): %w", tool, tool, pkg, err)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	// The tool reads its input as it compresses: what it has read is its progress.
	task := progress.Start(ctx, "initramfs: "+tool, progress.Bytes, int64(len(raw)))
	cmd.Stdin = progress.Reader(bytes.NewReader(raw), task)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err = cmd.Run()
	task.Done(err == nil)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%s %s: %w: %s", tool, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out.Bytes(), nil
}

// Pack writes generated files, with their parent directories, as an
// uncompressed newc archive. Guests travel this way: their kernels are
// compressed already, and ctld unpacks the archive as it reads it from flash.
func Pack(files []File, epoch time.Time) (*Archive, error) {
	none := boardcfg.NoCompression
	if err := checkArchiveSpec("pack", &none, epoch); err != nil {
		return nil, err
	}
	nodes := map[string]*closure.Node{}
	for _, f := range files {
		n, err := f.node()
		if err != nil {
			return nil, fmt.Errorf("pack: %w", err)
		}
		if _, dup := nodes[n.Path]; dup {
			return nil, fmt.Errorf("pack: %s given twice", n.Path)
		}
		nodes[n.Path] = n
	}
	for p, n := range nodes {
		if n.Kind != closure.File {
			continue
		}
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			if o, ok := nodes[d]; ok && o.Kind == closure.File {
				return nil, fmt.Errorf("pack: %s is a file and a directory of %s", d, p)
			}
		}
	}
	addParents(nodes)
	var raw bytes.Buffer
	listing, err := writeCPIO(&raw, nodes, epoch.Unix())
	if err != nil {
		return nil, fmt.Errorf("pack: %w", err)
	}
	return &Archive{Data: raw.Bytes(), RawSize: int64(raw.Len()), Listing: listing}, nil
}
