package image

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
)

// imagesPart is where the guest-images partition goes and what it holds.
type imagesPart struct {
	start, end uint64 // LBAs, inclusive
	files      []USBFile
	sizes      []int64
}

const imagesLabel = "FWIMAGES"

// planImages sizes the guest-images partition for its files (FAT32 tables,
// directories and cluster slack included, never below what go-diskfs needs
// for FAT32) and puts it at the end of the space the ESP would otherwise
// fill (which ends at lastLBA, on a 2048-sector boundary).
func planImages(files []USBFile, lastLBA uint64) (*imagesPart, error) {
	p := &imagesPart{end: lastLBA, files: append([]USBFile(nil), files...)}
	sort.Slice(p.files, func(i, j int) bool { return p.files[i].Path < p.files[j].Path })
	var total int64
	seen := map[string]bool{}
	for _, f := range p.files {
		if f.Path == "" || strings.HasPrefix(f.Path, "/") || path.Clean(f.Path) != f.Path || strings.HasPrefix(f.Path, "..") {
			return nil, fmt.Errorf("image: guest-images file %q: want a clean relative path", f.Path)
		}
		if seen[f.Path] {
			return nil, fmt.Errorf("image: guest-images file %q given twice", f.Path)
		}
		seen[f.Path] = true
		fi, err := os.Stat(f.Src)
		if err != nil {
			return nil, fmt.Errorf("image: guest-images file %s: %w", f.Path, err)
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("image: guest-images file %s: %s is not a regular file", f.Path, f.Src)
		}
		p.sizes = append(p.sizes, fi.Size())
		total += (fi.Size() + 64<<10 - 1) / (64 << 10) * (64 << 10) // the largest cluster go-diskfs picks
	}
	// FAT32's two tables take 8 bytes per cluster (at least 4 KiB ones),
	// directories a few clusters; 8 MiB covers both for any key a factory
	// uses, and FAT32 needs some 34 MiB at least.
	need := max(total+total/512+8<<20, minESP+6<<20)
	sectors := (uint64(need)/sector + firstLBA - 1) / firstLBA * firstLBA
	if sectors > lastLBA {
		return nil, fmt.Errorf("image: the guest images need a %d MiB partition: more than the USB image holds", need>>20)
	}
	p.start = lastLBA + 1 - sectors
	return p, nil
}

// writeImages creates the guest-images file system and copies the files.
func writeImages(ctx context.Context, f *os.File, u USBSpec, p *imagesPart) error {
	d, err := diskfs.OpenBackend(file.New(f, false), diskfs.WithOpenMode(diskfs.ReadWrite))
	if err != nil {
		return fmt.Errorf("open disk: %w", err)
	}
	fs, err := d.CreateFilesystem(disk.FilesystemSpec{
		Partition: 2, FSType: filesystem.TypeFat32, VolumeLabel: imagesLabel, Reproducible: true,
	})
	if err != nil {
		return fmt.Errorf("create FAT32 guest-images partition: %w", err)
	}
	made := map[string]bool{}
	buf := make([]byte, 1<<20)
	for i, img := range p.files {
		if err := ctx.Err(); err != nil {
			return err
		}
		if dir := path.Dir(img.Path); dir != "." && !made[dir] {
			if err := fs.Mkdir("/" + dir); err != nil {
				return fmt.Errorf("guest images: mkdir %s: %w", dir, err)
			}
			made[dir] = true
		}
		src, err := os.Open(img.Src)
		if err != nil {
			return fmt.Errorf("guest images: %w", err)
		}
		w, err := fs.OpenFile("/"+img.Path, os.O_CREATE|os.O_RDWR)
		if err != nil {
			src.Close()
			return fmt.Errorf("guest images: create %s: %w", img.Path, err)
		}
		n, err := copyCtx(ctx, w, src, buf)
		src.Close()
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil || n != p.sizes[i] {
			return fmt.Errorf("guest images: write %s (%d bytes, %d written): %v", img.Path, p.sizes[i], n, err)
		}
	}
	h := sha256.Sum256([]byte("fat-serial-images\x00" + u.Name))
	if err := fixFAT(f, int64(p.start)*sector, u.Epoch, binary.LittleEndian.Uint32(h[:4])); err != nil {
		return fmt.Errorf("guest images: fix up FAT: %w", err)
	}
	return nil
}

// copyCtx copies in 1 MiB steps, checking ctx between them.
func copyCtx(ctx context.Context, w io.Writer, r io.Reader, buf []byte) (int64, error) {
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		k, err := r.Read(buf)
		if k > 0 {
			m, werr := w.Write(buf[:k])
			n += int64(m)
			if werr != nil {
				return n, werr
			}
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}
