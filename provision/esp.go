package provision

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/fwbuild/fwbuild/contract"
	"github.com/fwbuild/fwbuild/contract/unit"
)

// A unit that boots from removable media (usb.img) may have no unit region
// in flash: its record then goes on the ESP as contract.UnitFile, signed
// (ctld accepts nothing else there).

// isDiskImage says whether path is a GPT disk image rather than a chip
// image: "EFI PART" at LBA 1.
func isDiskImage(p string) (bool, error) {
	if p == "" {
		return false, nil
	}
	f, err := os.Open(p)
	if err != nil {
		return false, fmt.Errorf("provision: image: %w", err)
	}
	defer f.Close()
	sig := make([]byte, 8)
	if _, err := f.ReadAt(sig, 512); err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("provision: image %s: %w", p, err)
	}
	return string(sig) == "EFI PART", nil
}

// writeESP writes the record into a copy of the disk image (sparse, in the
// same directory), then renames the copy over it.
func writeESP(p string, rec []byte, force bool) (*unit.Record, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("provision: image: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("provision: image %s is not a regular file", p)
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), "."+filepath.Base(p)+".provision-*")
	if err != nil {
		return nil, fmt.Errorf("provision: image: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename, a no-op
	defer tmp.Close()
	if err := sparseCopy(tmp, p, fi.Size()); err != nil {
		return nil, fmt.Errorf("provision: copy %s: %w", p, err)
	}
	old, err := writeESPFile(tmp, p, rec, force)
	if err != nil {
		return nil, err
	}
	if err := tmp.Chmod(fi.Mode().Perm()); err != nil {
		return nil, fmt.Errorf("provision: image: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return nil, fmt.Errorf("provision: sync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("provision: image: %w", err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return nil, fmt.Errorf("provision: image: %w", err)
	}
	return old, nil
}

func writeESPFile(f *os.File, name string, rec []byte, force bool) (*unit.Record, error) {
	d, err := diskfs.OpenBackend(file.New(f, false), diskfs.WithOpenMode(diskfs.ReadWrite))
	if err != nil {
		return nil, fmt.Errorf("provision: open disk %s: %w", name, err)
	}
	pt, err := d.GetPartitionTable()
	if err != nil {
		return nil, fmt.Errorf("provision: %s: partition table: %w", name, err)
	}
	t, ok := pt.(*gpt.Table)
	if !ok {
		return nil, fmt.Errorf("provision: %s: not a GPT disk", name)
	}
	idx := 0
	for _, part := range t.Partitions {
		if part != nil && part.Type == gpt.EFISystemPartition {
			if idx != 0 {
				return nil, fmt.Errorf("provision: %s has more than one EFI System Partition", name)
			}
			idx = part.Index
		}
	}
	if idx == 0 {
		return nil, fmt.Errorf("provision: %s has no EFI System Partition: pass the usb.img fwbuild built", name)
	}
	fs, err := d.GetFilesystem(idx)
	if err != nil {
		return nil, fmt.Errorf("provision: %s: ESP: %w", name, err)
	}
	where := fmt.Sprintf("image %s, ESP file %s", name, contract.UnitFile)
	fp := "/" + contract.UnitFile
	var old *unit.Record
	if r, err := fs.OpenFile(fp, os.O_RDONLY); err == nil {
		b, err := io.ReadAll(io.LimitReader(r, unit.HeaderSize+unit.MaxBody+12+unit.MaxSig))
		r.Close()
		if err != nil {
			return nil, fmt.Errorf("provision: %s: read: %w", where, err)
		}
		if old, err = existing(where, b, force); err != nil {
			return nil, fmt.Errorf("provision: %w", err)
		}
	}
	// Mkdir is a no-op for a directory that is there (the slots').
	if err := fs.Mkdir(path.Dir(fp)); err != nil {
		return nil, fmt.Errorf("provision: %s: mkdir: %w", where, err)
	}
	w, err := fs.OpenFile(fp, os.O_CREATE|os.O_RDWR|os.O_TRUNC)
	if err != nil {
		return nil, fmt.Errorf("provision: %s: create: %w", where, err)
	}
	if n, err := w.Write(rec); err != nil || n != len(rec) {
		w.Close()
		return nil, fmt.Errorf("provision: %s: write: %d of %d bytes, %v", where, n, len(rec), err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("provision: %s: close: %w", where, err)
	}
	return old, nil
}

// sparseCopy copies src into dst, leaving holes where src reads as zeros
// (a usb.img is mostly empty).
func sparseCopy(dst *os.File, src string, size int64) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	buf := make([]byte, 1<<20)
	zero := make([]byte, len(buf))
	for off := int64(0); off < size; {
		n, err := in.ReadAt(buf, off)
		if n > 0 && !bytes.Equal(buf[:n], zero[:n]) {
			if _, werr := dst.WriteAt(buf[:n], off); werr != nil {
				return werr
			}
		}
		off += int64(n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
	}
	return dst.Truncate(size)
}
