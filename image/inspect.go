package image

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"path"
	"sort"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/fwbuild/fwbuild/contract/bundle"
	"github.com/linuxboot/fiano/pkg/uefi"
)

// Node is one element of an image, for `fwbuild inspect` (plain values,
// JSON-serializable). Offsets count from the start of the parent's data:
// the image for top-level volumes and partitions, the volume for files,
// the decompressed section for volumes nested in a compressed section.
type Node struct {
	Kind     string  `json:"kind"` // image, region, fv, file, guests, disk, partition, dir
	Name     string  `json:"name,omitempty"`
	GUID     string  `json:"guid,omitempty"`
	Type     string  `json:"type,omitempty"`
	Offset   int64   `json:"offset"`
	Size     int64   `json:"size"`
	Free     *int64  `json:"free,omitempty"` // volumes: bytes of free space at the end
	Note     string  `json:"note,omitempty"`
	Children []*Node `json:"children,omitempty"`
}

// Find returns the first node (depth first) with the given kind and GUID
// or name.
func (n *Node) Find(kind, guidOrName string) *Node {
	if n == nil {
		return nil
	}
	if n.Kind == kind && (n.GUID == guidOrName || n.Name == guidOrName) {
		return n
	}
	for _, c := range n.Children {
		if m := c.Find(kind, guidOrName); m != nil {
			return m
		}
	}
	return nil
}

// InspectFirmware lists the firmware volumes of a chip or firmware image
// and the files in them, descending into compressed and nested volumes.
func InspectFirmware(b []byte) (*Node, error) {
	if len(b) == 0 {
		return nil, errors.New("image: inspect firmware: empty image")
	}
	root := &Node{Kind: "image", Size: int64(len(b))}
	err := withFiano(pinnedXZ, func(l *fianoLogger) error {
		fw, err := uefi.Parse(b)
		if err != nil {
			return fmt.Errorf("image: inspect firmware: not a UEFI image: %v%s", err, l.detail())
		}
		switch fw := fw.(type) {
		case *uefi.FlashImage:
			root.Note = "Intel flash descriptor"
			for _, r := range fw.Regions {
				reg, ok := r.Value.(uefi.Region)
				if !ok {
					continue
				}
				fr := reg.FlashRegion()
				n := &Node{Kind: "region", Name: reg.Type().String()}
				if fr != nil {
					n.Offset, n.Size = int64(fr.BaseOffset()), int64(fr.EndOffset()-fr.BaseOffset())
				}
				if br, ok := r.Value.(*uefi.BIOSRegion); ok {
					n.Children = inspectBIOS(br)
				}
				root.Children = append(root.Children, n)
			}
		case *uefi.BIOSRegion:
			root.Children = inspectBIOS(fw)
		}
		return nil
	})
	if errors.Is(err, errFiano) {
		return nil, fmt.Errorf("image: inspect firmware: %w", err)
	}
	if err != nil {
		return nil, err
	}
	if len(root.Children) == 0 {
		return nil, errors.New("image: inspect firmware: no firmware volume found; is this a UEFI image?")
	}
	root.Children = append(root.Children, findGuestBundles(b)...)
	return root, nil
}

// findGuestBundles finds guest bundles (a board's guests region) on 4 KiB
// boundaries, where a flashrom region starts, and reports whether each checks.
func findGuestBundles(b []byte) []*Node {
	var out []*Node
	for off := 0; off+bundle.HeaderSize <= len(b); off += 4096 {
		if string(b[off:off+len(bundle.Magic)]) != bundle.Magic {
			continue
		}
		n := &Node{Kind: "guests", Name: "guest bundle", Offset: int64(off)}
		if archive, err := bundle.Decode(b[off:]); err != nil {
			n.Note = err.Error()
		} else {
			n.Size = int64(bundle.HeaderSize + len(archive))
			n.Note = fmt.Sprintf("cpio archive of %d bytes, SHA-256 ok", len(archive))
		}
		out = append(out, n)
	}
	return out
}

func inspectBIOS(br *uefi.BIOSRegion) []*Node {
	var out []*Node
	for _, e := range br.Elements {
		if fv, ok := e.Value.(*uefi.FirmwareVolume); ok {
			out = append(out, inspectFV(fv, int64(fv.FVOffset), ""))
		}
	}
	return out
}

func inspectFV(fv *uefi.FirmwareVolume, off int64, note string) *Node {
	free := int64(fv.FreeSpace)
	n := &Node{Kind: "fv", GUID: fvName(fv), Type: fv.FVType, Offset: off, Size: int64(fv.Length), Free: &free, Note: note}
	if n.Type == "" {
		n.Type = fv.FileSystemGUID.String()
	}
	pos := fv.DataOffset
	for _, f := range fv.Files {
		pos = uefi.Align8(pos)
		at := pos
		pos += uint64(len(f.Buf()))
		if f.Header.Type == uefi.FVFileTypePad {
			continue
		}
		fn := &Node{Kind: "file", GUID: f.Header.GUID.String(), Type: f.Header.Type.String(), Offset: int64(at), Size: int64(len(f.Buf()))}
		for _, s := range f.Sections {
			inspectSection(s, fn, "")
		}
		n.Children = append(n.Children, fn)
	}
	return n
}

// inspectSection names the file from its UI section and adds volumes
// found in (possibly compressed) sections below it.
func inspectSection(s *uefi.Section, file *Node, note string) {
	switch s.Header.Type {
	case uefi.SectionTypeUserInterface:
		if file.Name == "" {
			file.Name = s.Name
		}
	case uefi.SectionTypeGUIDDefined:
		if gd, ok := s.TypeSpecific.Header.(*uefi.SectionGUIDDefined); ok && gd.Compression != "" {
			note = "in " + gd.Compression + " section"
		}
	}
	for _, e := range s.Encapsulated {
		switch v := e.Value.(type) {
		case *uefi.FirmwareVolume:
			file.Children = append(file.Children, inspectFV(v, 0, note))
		case *uefi.Section:
			inspectSection(v, file, note)
		}
	}
}

// InspectDisk lists the partitions of a GPT disk image and the files of
// the FAT file systems on them.
func InspectDisk(p string) (*Node, error) {
	d, err := diskfs.Open(p, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		return nil, fmt.Errorf("image: inspect %s: %w", p, err)
	}
	defer d.Close()
	root := &Node{Kind: "disk", Name: path.Base(p), Size: d.Size}
	t, err := d.GetPartitionTable()
	if err != nil {
		return nil, fmt.Errorf("image: inspect %s: no partition table: %w", p, err)
	}
	g, ok := t.(*gpt.Table)
	if !ok {
		return nil, fmt.Errorf("image: inspect %s: partition table is %s, not GPT", p, t.Type())
	}
	root.GUID = g.GUID
	root.Type = "gpt"
	for _, part := range g.Partitions {
		if part.Type == gpt.Unused {
			continue
		}
		pn := &Node{Kind: "partition", Name: part.Name, GUID: part.GUID, Type: string(part.Type),
			Offset: part.GetStart(), Size: part.GetSize()}
		root.Children = append(root.Children, pn)
		fs, err := d.GetFilesystem(part.Index)
		if err != nil {
			pn.Note = "no readable file system"
			continue
		}
		if fs.Type() == filesystem.TypeFat32 {
			pn.Note = "FAT32"
		}
		if err := listDir(fs, ".", pn, 0); err != nil {
			return nil, fmt.Errorf("image: inspect %s partition %d: %w", p, part.Index, err)
		}
	}
	return root, nil
}

func listDir(fs iofs.ReadDirFS, dir string, parent *Node, depth int) error {
	if depth > 32 {
		return errors.New("directories nested too deep")
	}
	entries, err := fs.ReadDir(dir)
	if err != nil {
		return err
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	for _, e := range entries {
		p := path.Join(dir, e.Name()) // io/fs paths: no leading slash
		if e.IsDir() {
			n := &Node{Kind: "dir", Name: "/" + p}
			parent.Children = append(parent.Children, n)
			if err := listDir(fs, p, n, depth+1); err != nil {
				return err
			}
			continue
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		parent.Children = append(parent.Children, &Node{Kind: "file", Name: "/" + p, Size: info.Size()})
	}
	return nil
}
