package image

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/fwbuild/fwbuild/contract/bundle"
	"github.com/fwbuild/fwbuild/hvcore/pe"
	"github.com/linuxboot/fiano/pkg/guid"
	"github.com/linuxboot/fiano/pkg/uefi"
)

// Node is one element of an image, for `fwbuild inspect` (plain values,
// JSON-serializable). Offsets count from the start of the parent's data:
// the image for top-level volumes and partitions, the volume for files,
// the decompressed section for volumes nested in a compressed section,
// the archive for the files of a cpio archive or guest bundle.
type Node struct {
	// image, region, fv, file, guests, disk, partition, dir, pe, section,
	// cpio, symlink, special
	Kind   string `json:"kind"`
	Name   string `json:"name,omitempty"`
	GUID   string `json:"guid,omitempty"`
	Type   string `json:"type,omitempty"`
	Offset int64  `json:"offset"`
	Size   int64  `json:"size"`
	Free   *int64 `json:"free,omitempty"` // volumes: bytes of free space at the end
	Note   string `json:"note,omitempty"`
	// Warning says what is wrong with the node's bytes, as a predicate
	// of the node ("runs past the end of the file: ..."): a length or
	// offset that runs past its parent or the file, which would otherwise
	// be listed as if it were there. Size then counts only the bytes
	// present.
	Warning  string  `json:"warning,omitempty"`
	Children []*Node `json:"children,omitempty"`
}

// warn adds a warning to n.
func (n *Node) warn(format string, args ...any) {
	w := fmt.Sprintf(format, args...)
	if n.Warning != "" {
		w = n.Warning + "; " + w
	}
	n.Warning = w
}

// Warnings lists the warnings of n and the nodes below it as sentences
// that name the node they are about, depth first.
func (n *Node) Warnings() []string {
	var out []string
	var visit func(n *Node)
	visit = func(n *Node) {
		if n.Warning != "" {
			out = append(out, n.label()+" "+n.Warning)
		}
		for _, c := range n.Children {
			visit(c)
		}
	}
	visit(n)
	return out
}

// label names a node in a warning: its kind and its name or GUID.
func (n *Node) label() string {
	switch {
	case n.Name != "":
		return n.Kind + " " + n.Name
	case n.GUID != "":
		return n.Kind + " " + n.GUID
	}
	return fmt.Sprintf("%s at %#x", n.Kind, n.Offset)
}

// find returns the first node (depth first) with the given kind and GUID
// or name.
func (n *Node) find(kind, guidOrName string) *Node {
	if n == nil {
		return nil
	}
	if n.Kind == kind && (n.GUID == guidOrName || n.Name == guidOrName) {
		return n
	}
	for _, c := range n.Children {
		if m := c.find(kind, guidOrName); m != nil {
			return m
		}
	}
	return nil
}

// Inspect lists what the file at p holds, telling its format from its
// content: the firmware volumes and files of a chip or firmware image
// (and the guest bundles on a chip), the partitions and files of a GPT
// disk image, the sections of a PE image such as a payload, or the files
// of a guest bundle or cpio archive.
func Inspect(p string) (*Node, error) {
	n, err := inspectFile(p)
	if err != nil {
		return nil, fmt.Errorf("image: inspect %s: %w", p, err)
	}
	return n, nil
}

// Bounds on what Inspect reads into memory, by format, so that a wrong
// file (a disk image without a GPT, a core dump, /dev/zero behind a
// symlink) is refused at once instead of exhausting memory.
const (
	// maxChipImage is four times the largest BIOS flash chip (64 MiB).
	maxChipImage = 256 << 20
	// maxPEImage leaves room for a unified Xen image carrying its dom0
	// kernel and initramfs, far beyond any that boots from a chip.
	maxPEImage = 512 << 20
	// maxArchive: guest bundles and guests.cpio are written to a chip
	// region, so they are no larger than a chip image.
	maxArchive = maxChipImage
	// headSize is what detection reads before knowing the format.
	headSize = 4096
)

func inspectFile(p string) (*Node, error) {
	// Stat before opening: opening a FIFO blocks until a writer comes, and
	// a device has no size to bound the read by.
	info, err := os.Stat(p)
	if err != nil {
		return nil, unwrapPath(err)
	}
	if err := regularFile(info); err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, unwrapPath(err)
	}
	defer f.Close()
	// The path may name another file by now; what was opened counts.
	if info, err = f.Stat(); err != nil {
		return nil, unwrapPath(err)
	}
	if err := regularFile(info); err != nil {
		return nil, err
	}
	if info.Size() == 0 {
		return nil, errors.New("empty file")
	}
	head := make([]byte, min(info.Size(), headSize))
	n, err := io.ReadFull(f, head)
	if err != nil && err != io.ErrUnexpectedEOF {
		return nil, unwrapPath(err)
	}
	head = head[:n]
	if n == 0 {
		return nil, errors.New("empty file")
	}
	// go-diskfs reads a disk image in place, by offset, and a disk image
	// can be far larger than any chip, so it is recognised from its first
	// sectors and never read into memory.
	what, limit := detectHead(head)
	if what == formatDisk {
		return inspectDisk(p)
	}
	if info.Size() > limit {
		return nil, tooLarge(what, info.Size(), limit)
	}
	b, err := readRest(f, head, info.Size(), limit)
	if err != nil {
		return nil, err
	}
	switch detect(b) {
	case formatFirmware:
		return inspectFirmware(b)
	case formatPE:
		return inspectPE(p, b)
	case formatGuests:
		return inspectGuestBundle(b, 0), nil
	case formatCPIO:
		return inspectCPIO(filepath.Base(p), b), nil
	}
	return nil, errors.New("not a chip or firmware image, GPT disk image, PE image, guest bundle or cpio archive")
}

// regularFile refuses what has no size to bound a read by.
func regularFile(info iofs.FileInfo) error {
	m := info.Mode()
	// A device is read into a file by the tool that knows it; a pipe's
	// content is whatever is written to it.
	what, hint := "not a regular file", "copy it to a file first"
	switch {
	case m.IsRegular():
		return nil
	case m.IsDir():
		return errors.New("is a directory: inspect takes one file")
	case m&iofs.ModeDevice != 0:
		what, hint = "a device", "read a chip or disk into a file first (flashrom -r FILE, dd if=DEVICE of=FILE)"
	case m&iofs.ModeNamedPipe != 0:
		what, hint = "a named pipe", "write what it carries to a file first"
	case m&iofs.ModeSocket != 0:
		what = "a socket"
	}
	return fmt.Errorf("%s, not a regular file: inspect reads image files, whose size bounds the read; %s", what, hint)
}

// detectHead tells from the first bytes of a file what it may be and how
// large such a file can be. Only a GPT disk is certain here: the other
// formats are confirmed by detect on the whole content.
func detectHead(head []byte) (format, int64) {
	switch {
	case len(head) >= gptHeaderEnd && string(head[512:gptHeaderEnd]) == "EFI PART":
		return formatDisk, 0
	case bytes.HasPrefix(head, []byte("MZ")):
		return formatPE, maxPEImage
	case bytes.HasPrefix(head, []byte(cpioNewc)) || bytes.HasPrefix(head, []byte(cpioNewcCRC)):
		return formatCPIO, maxArchive
	}
	// A bundle may start a chip, and a volume may be anywhere in one: the
	// rest can only be a chip or firmware image.
	return formatFirmware, maxChipImage
}

func tooLarge(what format, size, limit int64) error {
	switch what {
	case formatPE:
		return fmt.Errorf("PE image of %d bytes, more than the %d MiB inspect reads: no payload is that large", size, limit>>20)
	case formatCPIO:
		return fmt.Errorf("cpio archive of %d bytes, more than the %d MiB inspect reads: no guests region is that large", size, limit>>20)
	}
	return fmt.Errorf("%d bytes, more than the %d MiB inspect reads as a chip or firmware image (the largest flash chips are 64 MiB), "+
		"and not a GPT disk image, PE image or cpio archive by its first bytes", size, limit>>20)
}

// readRest returns head and the rest of f, at most limit bytes in all: the
// file may have grown since it was measured.
func readRest(f io.Reader, head []byte, size, limit int64) ([]byte, error) {
	buf := bytes.NewBuffer(make([]byte, 0, min(size, limit)+1))
	buf.Write(head)
	if _, err := buf.ReadFrom(io.LimitReader(f, limit+1-int64(len(head)))); err != nil {
		return nil, unwrapPath(err)
	}
	if int64(buf.Len()) > limit {
		return nil, fmt.Errorf("the file grew past %d MiB while it was read", limit>>20)
	}
	return buf.Bytes(), nil
}

// unwrapPath drops the path from an os error: Inspect names the file once.
func unwrapPath(err error) error {
	var pathErr *iofs.PathError
	if errors.As(err, &pathErr) {
		return pathErr.Err
	}
	return err
}

// format is a kind of file Inspect takes apart.
type format string

const (
	formatUnknown  format = ""
	formatFirmware format = "firmware" // chip image, BIOS region, firmware volume
	formatDisk     format = "disk"     // GPT disk image
	formatPE       format = "pe"       // PE image: EFI application, unified Xen
	formatGuests   format = "guests"   // guest bundle: a board's guests region
	formatCPIO     format = "cpio"     // newc cpio archive, such as guests.cpio
)

const (
	gptHeaderEnd = 520 // "EFI PART" at LBA 1 of 512-byte sectors
	// flashSignature marks an Intel flash descriptor, at offset 16 (PCH)
	// or 0 (ICH8-10): 0x0FF0A55A, little endian.
	flashSignature = "\x5a\xa5\xf0\x0f"
)

// detect tells what b holds from signatures, most specific first. A chip
// may have its first firmware volume anywhere (after a guests region, for
// instance) while a bundle or archive may carry a volume image among its
// files, so a file that starts like a bundle is a chip only if a volume
// follows the bundle.
func detect(b []byte) format {
	switch {
	case len(b) >= gptHeaderEnd && string(b[512:gptHeaderEnd]) == "EFI PART":
		return formatDisk
	case bytes.HasPrefix(b, []byte("MZ")):
		return formatPE
	case bytes.HasPrefix(b, []byte(bundle.Magic)):
		end := bundle.HeaderSize // a damaged bundle: volumes may follow its header
		if archive, err := bundle.Decode(b); err == nil {
			end += len(archive)
		}
		if hasVolume(b, end) {
			return formatFirmware
		}
		return formatGuests
	case bytes.HasPrefix(b, []byte(cpioNewc)) || bytes.HasPrefix(b, []byte(cpioNewcCRC)):
		return formatCPIO
	case bytes.HasPrefix(b, []byte(flashSignature)),
		len(b) >= 20 && string(b[16:20]) == flashSignature,
		hasVolume(b, 0):
		return formatFirmware
	}
	return formatUnknown
}

// inspectFirmware lists the firmware volumes of a chip or firmware image
// and the files in them, descending into compressed and nested volumes.
func inspectFirmware(b []byte) (*Node, error) {
	if len(b) == 0 {
		return nil, errors.New("empty image")
	}
	root := &Node{Kind: "image", Size: int64(len(b))}
	err := withFiano(pinnedXZ, func(l *fianoLogger) error {
		// Inside withFiano: fiano's descriptor parser panics on bad offsets.
		if err := checkDescriptor(b); err != nil {
			return err
		}
		fw, err := uefi.Parse(b)
		if err == nil {
			return (&inspector{parent: root}).Run(fw)
		}
		off, length, ok := truncatedFV(b)
		if !ok {
			return fmt.Errorf("not a UEFI image: %v%s", err, l.detail())
		}
		// A truncated image (a short read of the chip, an interrupted
		// download) is listed up to the volume that runs past its end.
		if hasVolume(b[:off], 0) {
			resetErasePolarity()
			fw, err := uefi.Parse(b[:off])
			if err != nil {
				return fmt.Errorf("not a UEFI image: %v%s", err, l.detail())
			}
			if err := (&inspector{parent: root}).Run(fw); err != nil {
				return err
			}
		}
		root.Children = append(root.Children, truncatedFVNode(b, off, length))
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(root.Children) == 0 {
		return nil, errors.New("no firmware volume found; is this a UEFI image?")
	}
	root.Children = append(root.Children, findGuestBundles(b)...)
	return root, nil
}

// truncatedFVNode reports the volume at b[off:] that claims length bytes,
// more than b holds.
func truncatedFVNode(b []byte, off int, length uint64) *Node {
	var fs guid.GUID
	copy(fs[:], b[off+fvFileSystemGUID:])
	n := &Node{Kind: "fv", GUID: fs.String(), Type: uefi.FVGUIDs[fs], Offset: int64(off), Size: int64(len(b) - off)}
	if n.Type == "" {
		n.Type = fs.String()
	}
	n.warn("runs past the end of the image: %d of %d bytes present, its files are not listed (the image is truncated: read or download it again)",
		len(b)-off, length)
	return n
}

// checkDescriptor refuses an Intel flash image whose descriptor lays out
// a region past the end of b. fiano would skip such a region (printing
// to stdout, which would corrupt `fwbuild --json inspect`), and listing
// the image without its BIOS region would hide that the image is cut short.
func checkDescriptor(b []byte) error {
	if _, err := uefi.FindSignature(b); err != nil || len(b) < uefi.FlashDescriptorLength {
		return nil // not a descriptor image, or fiano says why
	}
	var fd uefi.FlashDescriptor
	fd.SetBuf(bytes.Clone(b[:uefi.FlashDescriptorLength]))
	if err := fd.ParseFlashDescriptor(); err != nil || fd.Region == nil || fd.DescriptorMap == nil {
		return nil // fiano reports it
	}
	nr := int(fd.DescriptorMap.NumberOfRegions)
	for i, fr := range fd.Region.FlashRegions {
		if nr != 0 && i >= nr { // as fiano reads it: older descriptors count their regions
			break
		}
		if !fr.Valid() {
			continue
		}
		if end := uint64(fr.EndOffset()); end > uint64(len(b)) {
			return fmt.Errorf("the flash descriptor lays out the %s region at %#x..%#x, but the image ends at %#x: "+
				"the image is truncated (read the chip again, or give its full size)",
				uefi.FlashRegionType(i), fr.BaseOffset(), end, len(b))
		}
	}
	return nil
}

// inspector is a fiano Visitor that builds the report of a firmware tree:
// flash regions, volumes and files become nodes, a file takes its name
// from its UI section, and a volume nested in a compressed section says
// so. Every other node type is descended into, so a volume is reported
// wherever fiano finds one.
type inspector struct {
	parent *Node  // where the nodes found now go
	file   *Node  // the file whose sections are visited, named by its UI section
	at     int64  // the offset of the file visited next in its volume
	end    int64  // the length of that volume
	note   string // for volumes: the compressed section they lie in
}

func (v *inspector) Run(f uefi.Firmware) error { return f.Apply(v) }

func (v *inspector) Visit(f uefi.Firmware) error {
	switch f := f.(type) {
	case *uefi.FlashImage:
		// The regions are listed as the descriptor lays them out, each
		// with what fiano found in it.
		v.parent.Note = "Intel flash descriptor"
		if err := f.IFD.Apply(v); err != nil {
			return err
		}
		for _, r := range f.Regions {
			in := v
			if reg, ok := r.Value.(uefi.Region); ok {
				n := &Node{Kind: "region", Name: reg.Type().String()}
				if fr := reg.FlashRegion(); fr != nil {
					n.Offset, n.Size = int64(fr.BaseOffset()), int64(fr.EndOffset()-fr.BaseOffset())
				}
				v.parent.Children = append(v.parent.Children, n)
				in = &inspector{parent: n}
			}
			if err := r.Value.Apply(in); err != nil {
				return err
			}
		}
		return nil
	case *uefi.FirmwareVolume:
		free := int64(f.FreeSpace)
		n := &Node{Kind: "fv", GUID: fvName(f), Type: f.FVType, Offset: int64(f.FVOffset), Size: int64(f.Length), Free: &free, Note: v.note}
		if n.Type == "" {
			n.Type = f.FileSystemGUID.String()
		}
		if !fianoListsFiles(f.FileSystemGUID) {
			// fiano keeps such a volume without files and without free
			// space: say so rather than list it as an empty, full volume.
			n.Free = nil
			n.Note = joinNote(n.Note, unsupportedNote(f.FileSystemGUID))
		}
		v.parent.Children = append(v.parent.Children, n)
		// fiano does not record where a file starts: files follow the
		// header 8-byte aligned, pad files included.
		pos := f.DataOffset
		for _, file := range f.Files {
			pos = uefi.Align8(pos)
			if err := file.Apply(&inspector{parent: n, at: int64(pos), end: int64(f.Length)}); err != nil {
				return err
			}
			pos += uint64(len(file.Buf()))
		}
		return nil
	case *uefi.File:
		if f.Header.Type == uefi.FVFileTypePad {
			// Free space between files, not content: not reported itself.
			return f.ApplyChildren(v)
		}
		n := &Node{Kind: "file", GUID: f.Header.GUID.String(), Type: f.Header.Type.String(), Offset: v.at, Size: int64(len(f.Buf()))}
		// fiano bounds a file's size by the data after it, not by its
		// volume, so a damaged size can claim the next volume's bytes.
		if v.end > 0 && n.Offset+n.Size > v.end {
			inside := max(v.end-n.Offset, 0)
			n.warn("runs past the end of its volume: %d of %d bytes inside it", inside, n.Size)
			n.Size = inside
		}
		v.parent.Children = append(v.parent.Children, n)
		return f.ApplyChildren(&inspector{parent: n, file: n})
	case *uefi.Section:
		switch f.Header.Type {
		case uefi.SectionTypeUserInterface:
			if v.file != nil && v.file.Name == "" {
				v.file.Name = f.Name
			}
		case uefi.SectionTypeCompression, uefi.SectionTypeGUIDDefined, uefi.SectionTypeDisposable:
			if len(f.Encapsulated) == 0 && v.file != nil && v.file.Note == "" {
				// fiano opens only the compression it knows (not EFI 1.1
				// compression, as in VirtualBox's DXE volume): a volume
				// image that shows no volume says why.
				v.file.Note = f.Header.Type.String() + " not opened by fiano"
			}
			if f.TypeSpecific == nil { // only GUID-defined sections have one
				break
			}
			if gd, ok := f.TypeSpecific.Header.(*uefi.SectionGUIDDefined); ok && gd.Compression != "" {
				in := *v
				in.note = "in " + gd.Compression + " section"
				return f.ApplyChildren(&in)
			}
		}
		return f.ApplyChildren(v)
	default:
		return f.ApplyChildren(v)
	}
}

func joinNote(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// findGuestBundles finds guest bundles (a board's guests region) on 4 KiB
// boundaries, where a flashrom region starts, and reports whether each checks.
func findGuestBundles(b []byte) []*Node {
	var out []*Node
	for off := 0; off+bundle.HeaderSize <= len(b); off += 4096 {
		if string(b[off:off+len(bundle.Magic)]) == bundle.Magic {
			out = append(out, inspectGuestBundle(b, off))
		}
	}
	return out
}

// inspectGuestBundle reports the bundle at b[off:] with the files of its
// archive. A bundle that does not check is a node with a warning, not an
// error: that is what a stale or damaged guests region looks like. One
// whose archive runs past the end of b lists the files that are there.
func inspectGuestBundle(b []byte, off int) *Node {
	n := &Node{Kind: "guests", Name: "guest bundle", Offset: int64(off)}
	region := b[off:]
	if len(region) >= bundle.HeaderSize && string(region[:len(bundle.Magic)]) == bundle.Magic {
		if length := binary.LittleEndian.Uint64(region[16:]); length > uint64(len(region)-bundle.HeaderSize) {
			present := region[bundle.HeaderSize:]
			n.Size = int64(len(region))
			n.warn("runs past the end of the file: %d of %d archive bytes present (the file is truncated)", len(present), length)
			var err error
			if n.Children, err = listCPIO(present); err != nil {
				n.warn("is damaged: %v", err)
			}
			return n
		}
	}
	archive, err := bundle.Decode(region)
	if err != nil {
		n.warn("does not check: %v", err)
		return n
	}
	n.Size = int64(bundle.HeaderSize + len(archive))
	n.Note = fmt.Sprintf("cpio archive of %d bytes, SHA-256 ok", len(archive))
	if n.Children, err = listCPIO(archive); err != nil {
		n.warn("is damaged: %v", err)
	}
	return n
}

func inspectCPIO(name string, b []byte) *Node {
	n := &Node{Kind: "cpio", Name: name, Size: int64(len(b))}
	var err error
	if n.Children, err = listCPIO(b); err != nil {
		n.warn("is damaged: %v", err)
	}
	return n
}

const (
	cpioNewc       = "070701"
	cpioNewcCRC    = "070702"
	cpioHeaderSize = 110 // magic and 13 fields of 8 hex digits
	cpioTrailer    = "TRAILER!!!"
)

// listCPIO lists the entries of a newc cpio archive in archive order, up
// to the first damage, which it returns as the error. The archive is in
// memory, so this reads it in place and checks every length against it
// (a header's name size alone could make a stream reader allocate 4 GiB).
func listCPIO(b []byte) ([]*Node, error) {
	var out []*Node
	for off := 0; ; {
		if len(b)-off < cpioHeaderSize {
			return out, fmt.Errorf("cpio: archive ends at %d without a trailer", len(b))
		}
		h := b[off : off+cpioHeaderSize]
		if m := string(h[:6]); m != cpioNewc && m != cpioNewcCRC {
			return out, fmt.Errorf("cpio: header at %d: magic %q, not newc", off, m)
		}
		field := func(i int) (uint64, error) {
			return strconv.ParseUint(string(h[6+8*i:14+8*i]), 16, 32)
		}
		mode, err1 := field(1)
		size, err2 := field(6)
		nameSize, err3 := field(11)
		if err := errors.Join(err1, err2, err3); err != nil {
			return out, fmt.Errorf("cpio: header at %d: %w", off, err)
		}
		nameEnd := uint64(off+cpioHeaderSize) + nameSize
		if nameSize == 0 || nameEnd > uint64(len(b)) || b[nameEnd-1] != 0 {
			return out, fmt.Errorf("cpio: header at %d: name of %d bytes does not fit the archive", off, nameSize)
		}
		name := string(b[off+cpioHeaderSize : nameEnd-1])
		if name == cpioTrailer {
			return out, nil
		}
		data := align4(nameEnd)
		if size > uint64(len(b)) || data > uint64(len(b))-size {
			return out, fmt.Errorf("cpio: %s: %d bytes of data run past the archive", name, size)
		}
		n := &Node{Kind: "file", Name: path.Clean("/" + name), Offset: int64(data), Size: int64(size)}
		switch mode & 0o170000 {
		case 0o100000:
		case 0o040000:
			n.Kind = "dir"
		case 0o120000:
			n.Kind = "symlink"
			n.Note = "-> " + string(b[data:data+size])
		default:
			n.Kind = "special"
			n.Note = fmt.Sprintf("mode %06o", mode)
		}
		out = append(out, n)
		off = int(align4(data + size))
	}
}

func align4(v uint64) uint64 { return (v + 3) &^ 3 }

// inspectPE lists a PE image's sections: for a unified Xen image, where
// .config, .kernel and .ramdisk sit and how big they are.
func inspectPE(name string, b []byte) (*Node, error) {
	f, err := pe.Read(b)
	if err != nil {
		return nil, err
	}
	root := &Node{Kind: "pe", Name: name, Size: int64(len(b)),
		Note: fmt.Sprintf("image base %#x, size of image %#x, entry %#x", f.ImageBase, f.SizeOfImage, f.AddressOfEntryPoint)}
	var cut int
	for _, s := range f.Sections {
		n := &Node{
			Kind: "section", Name: s.Name, Offset: int64(s.Offset), Size: int64(s.Present),
			Note: fmt.Sprintf("VA %#x, virtual size %#x", f.ImageBase+uint64(s.VirtualAddress), s.VirtualSize),
		}
		if s.Present < s.Size {
			cut++
			n.warn("runs past the end of the file: %d of %d bytes present", s.Present, s.Size)
		}
		root.Children = append(root.Children, n)
	}
	if cut > 0 {
		root.warn("is truncated: %d of its %d sections run past the end of the file (copy or download it again)", cut, len(f.Sections))
	}
	return root, nil
}

// inspectDisk lists the partitions of a GPT disk image and the files of
// the FAT file systems on them.
func inspectDisk(p string) (*Node, error) {
	d, err := diskfs.Open(p, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	root := &Node{Kind: "disk", Name: path.Base(p), Size: d.Size}
	t, err := d.GetPartitionTable()
	if err != nil {
		return nil, fmt.Errorf("no partition table: %w", err)
	}
	g, ok := t.(*gpt.Table)
	if !ok {
		return nil, fmt.Errorf("partition table is %s, not GPT", t.Type())
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
		// The table may describe a larger disk than the file holds (a copy
		// cut short, a partition table edited by hand).
		truncated := pn.Offset+pn.Size > d.Size
		if pn.Offset >= d.Size {
			pn.warn("lies past the end of the disk image (%d bytes; the partition starts at %#x): its files are not listed", d.Size, pn.Offset)
			pn.Size = 0
			continue
		}
		if truncated {
			pn.warn("runs past the end of the disk image: %d of %d bytes present (the image is truncated)", d.Size-pn.Offset, pn.Size)
			pn.Size = d.Size - pn.Offset
		}
		if err := checkFAT(d.Backend, pn.Offset, pn.Size); err != nil {
			pn.warn("%v: its files are not listed", err)
			continue
		}
		fs, err := d.GetFilesystem(part.Index)
		if err != nil {
			pn.Note = "no readable file system"
			continue
		}
		if fs.Type() == filesystem.TypeFat32 {
			pn.Note = "FAT32"
		}
		if err := listDir(fs, ".", pn, 0); err != nil {
			if truncated {
				pn.warn("its file system cannot be read to the end (%v): the files listed are those found before the damage", err)
				continue
			}
			return nil, fmt.Errorf("partition %d: %w", part.Index, err)
		}
		capFiles(pn, pn.Size)
	}
	return root, nil
}

// capFiles warns of files under n that claim more than the partition's
// size bytes: a damaged directory entry, or a partition cut short.
func capFiles(n *Node, size int64) {
	for _, c := range n.Children {
		if c.Size > size {
			c.warn("is %d bytes, more than its %d-byte partition holds", c.Size, size)
			c.Size = size
		}
		capFiles(c, size)
	}
}

// checkFAT refuses a FAT32 boot sector at off whose FAT does not fit the
// size-byte partition: go-diskfs allocates the FAT as the boot sector
// says (up to 4 GiB, twice) before it checks anything.
func checkFAT(r io.ReaderAt, off, size int64) error {
	bs := make([]byte, 512)
	if n, _ := r.ReadAt(bs, off); n < len(bs) || string(bs[0x52:0x5A]) != "FAT32   " {
		return nil // not FAT32: go-diskfs tells
	}
	bytesPerSector := int64(binary.LittleEndian.Uint16(bs[0x0B:]))
	fat := int64(binary.LittleEndian.Uint32(bs[0x24:])) * bytesPerSector
	if fat > size {
		return fmt.Errorf("its FAT32 boot sector claims a %d-byte FAT, more than the %d-byte partition", fat, size)
	}
	return nil
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
