package image

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/fwbuild/fwbuild/boardcfg"
	"github.com/linuxboot/fiano/pkg/guid"
	"github.com/linuxboot/fiano/pkg/uefi"
	"github.com/linuxboot/fiano/pkg/visitors"
)

// VolumeUse is one firmware volume's space before and after fwbuild's edit.
type VolumeUse struct {
	Name string // FV name GUID, or the file system GUID of an unnamed volume
	// Path lists the enclosing volumes, outermost first ("" for a top-level one).
	Path       string
	Offset     uint64 // top-level volumes: offset in the firmware region
	Length     uint64
	FreeBefore uint64
	FreeAfter  uint64
	// Compressed: the volume lies inside a compressed section, so its
	// free space is what the decompressed volume has.
	Compressed bool
	Changed    bool
	TopLevel   bool
	// DXE: the volume holding the DXE core, where drivers are inserted.
	DXE bool
}

// FileUse is a file of the firmware with its size, for removal lists.
type FileUse struct {
	GUID   string
	Name   string // UI name, if the file has one
	Type   string
	Size   uint64
	Volume string
}

// EditReport says what an edit of the firmware did, or would do.
type EditReport struct {
	Volumes  []VolumeUse
	Inserted []FileUse
	Removed  []FileUse
	// DXEFiles are the files of the DXE volume, largest first: the
	// candidates a `remove:` list picks from.
	DXEFiles []FileUse
}

// editTree is the parsed firmware region being edited.
type editTree struct {
	br      *uefi.BIOSRegion
	dxe     *uefi.FirmwareVolume
	top     map[*uefi.FirmwareVolume]bool // top-level volumes
	parent  map[*uefi.FirmwareVolume]*uefi.FirmwareVolume
	compr   map[*uefi.FirmwareVolume]bool
	before  []fvLen
	free    map[*uefi.FirmwareVolume]uint64
	changed map[*uefi.FirmwareVolume]bool
	// inserted are the files insert added: no candidates for removal.
	inserted map[guid.GUID]bool
	// stored are the uncompressed EFI_SECTION_COMPRESSION sections whose
	// content openStored parsed, outermost first.
	stored []*uefi.Section
}

// storedData returns the content of an EFI_SECTION_COMPRESSION whose
// CompressionType is 0 (EFI_NOT_COMPRESSED), and the length of its header;
// ok is false for any other section.
func storedData(s *uefi.Section) (data []byte, header int, ok bool) {
	if s.Header.Type != uefi.SectionTypeCompression || len(s.Encapsulated) != 0 {
		return nil, 0, false
	}
	b := s.Buf()
	h := 4
	if s.Header.Size == [3]uint8{0xFF, 0xFF, 0xFF} {
		h = 8
	}
	// EFI_COMPRESSION_SECTION: the common header, UINT32 UncompressedLength, UINT8 CompressionType.
	if len(b) < h+5 || b[h+4] != 0 {
		return nil, 0, false
	}
	n := uint64(binary.LittleEndian.Uint32(b[h:]))
	if n > uint64(len(b)-h-5) {
		return nil, 0, false
	}
	return b[h+5 : h+5+int(n)], h + 5, true
}

// openStored parses the sections inside every uncompressed
// EFI_SECTION_COMPRESSION, which fiano v1.2.0 leaves opaque whatever the
// compression type (VirtualBox keeps its DXE volume in one), and hangs them
// below it so that walks and edits reach them; assemble writes them back.
func openStored(root uefi.Firmware) ([]*uefi.Section, error) {
	var out []*uefi.Section
	for {
		var found []*uefi.Section
		_ = walk(root, func(f uefi.Firmware, _ []uefi.Firmware) {
			if s, ok := f.(*uefi.Section); ok {
				if _, _, ok := storedData(s); ok {
					found = append(found, s)
				}
			}
		})
		if len(found) == 0 {
			return out, nil
		}
		for _, s := range found {
			data, _, _ := storedData(s)
			var enc []*uefi.TypedFirmware
			for off, i := uint64(0), 0; off < uint64(len(data)); i++ {
				es, err := uefi.NewSection(data[off:], i)
				if err != nil {
					return nil, fmt.Errorf("image: uncompressed EFI_SECTION_COMPRESSION: section #%d at %#x: %w", i, off, err)
				}
				if es.Header.ExtendedSize == 0 {
					return nil, fmt.Errorf("image: uncompressed EFI_SECTION_COMPRESSION: section #%d at %#x has size 0", i, off)
				}
				enc = append(enc, uefi.MakeTyped(es))
				off = uefi.Align4(off + uint64(es.Header.ExtendedSize))
			}
			if len(enc) == 0 {
				// Nothing inside: keep it opaque, and stop looking at it.
				enc = nil
				continue
			}
			s.Encapsulated = enc
			out = append(out, s)
		}
		if len(out) > 1<<12 {
			return nil, errors.New("image: too many nested EFI_SECTION_COMPRESSION sections")
		}
	}
}

// storeBack rebuilds every opened section from its (assembled) content,
// innermost first, and detaches the content so that fiano's Assemble, which
// would drop the compression header, treats the section as a leaf. reattach
// undoes the detaching (for reports).
func (t *editTree) storeBack() (reattach func(), err error) {
	saved := make([][]*uefi.TypedFirmware, len(t.stored))
	for i := len(t.stored) - 1; i >= 0; i-- {
		s := t.stored[i]
		var data []byte
		for _, e := range s.Encapsulated {
			if err := (&visitors.Assemble{}).Run(e.Value); err != nil {
				return nil, fmt.Errorf("image: assemble an uncompressed EFI_SECTION_COMPRESSION: %w", err)
			}
			for len(data)%4 != 0 {
				data = append(data, 0)
			}
			data = append(data, e.Value.Buf()...)
		}
		size := 9 + len(data)
		var hdr []byte
		if size < 0xFFFFFF {
			hdr = []byte{byte(size), byte(size >> 8), byte(size >> 16), byte(uefi.SectionTypeCompression)}
		} else {
			size += 4
			hdr = []byte{0xFF, 0xFF, 0xFF, byte(uefi.SectionTypeCompression)}
			hdr = binary.LittleEndian.AppendUint32(hdr, uint32(size))
		}
		hdr = binary.LittleEndian.AppendUint32(hdr, uint32(len(data)))
		hdr = append(hdr, 0) // EFI_NOT_COMPRESSED
		s.SetBuf(append(hdr, data...))
		saved[i], s.Encapsulated = s.Encapsulated, nil
	}
	return func() {
		for i, s := range t.stored {
			s.Encapsulated = saved[i]
		}
	}, nil
}

// openEdit parses region and finds the DXE volume: the one that holds the
// DXE core. Vendors name their volumes differently, so it is found by what
// it holds, not by one vendor's GUIDs.
func openEdit(region []byte, l *fianoLogger) (*editTree, error) {
	r, err := uefi.NewBIOSRegion(region, nil, uefi.RegionTypeBIOS)
	if err != nil {
		return nil, fmt.Errorf("image: base firmware is not a valid UEFI image: %v%s", err, l.detail())
	}
	t := &editTree{br: r.(*uefi.BIOSRegion), top: map[*uefi.FirmwareVolume]bool{}, parent: map[*uefi.FirmwareVolume]*uefi.FirmwareVolume{},
		compr: map[*uefi.FirmwareVolume]bool{},
		free:  map[*uefi.FirmwareVolume]uint64{}, changed: map[*uefi.FirmwareVolume]bool{}}
	if t.stored, err = openStored(t.br); err != nil {
		return nil, err
	}
	var cores []*uefi.FirmwareVolume
	var unread, opaque []string
	err = walk(t.br, func(f uefi.Firmware, path []uefi.Firmware) {
		var fvs []*uefi.FirmwareVolume
		compressed := false
		for _, a := range path {
			switch a := a.(type) {
			case *uefi.FirmwareVolume:
				fvs = append(fvs, a)
			case *uefi.Section:
				if isCompressed(a) || a.Header.Type == uefi.SectionTypeCompression {
					compressed = true
				}
			}
		}
		switch f := f.(type) {
		case *uefi.FirmwareVolume:
			t.free[f] = f.FreeSpace
			t.compr[f] = compressed
			if len(fvs) == 0 {
				t.top[f] = true
			} else {
				t.parent[f] = fvs[len(fvs)-1]
			}
			if !fianoListsFiles(f.FileSystemGUID) && mayHoldFiles(f.FileSystemGUID) {
				unread = append(unread, fmt.Sprintf("%s at %#x (%s)", fvName(f), f.FVOffset, fvFormat(f.FileSystemGUID)))
			}
		case *uefi.File:
			if f.Header.Type == uefi.FVFileTypeDXECore && len(fvs) > 0 {
				cores = append(cores, fvs[len(fvs)-1])
			}
		case *uefi.Section:
			// A compressed section fiano cannot decompress (EFI/Tiano
			// compression) keeps its payload opaque: no children.
			if f.Header.Type == uefi.SectionTypeCompression && len(f.Encapsulated) == 0 {
				v := "?"
				if len(fvs) > 0 {
					v = fvName(fvs[len(fvs)-1])
				}
				opaque = append(opaque, fmt.Sprintf("a %d-byte EFI_SECTION_COMPRESSION (%s) in volume %s", len(f.Buf()), compressionType(f), v))
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("image: walk the firmware: %w", err)
	}
	switch {
	case len(cores) == 1:
		t.dxe = cores[0]
	case len(cores) > 1:
		return nil, fmt.Errorf("image: base firmware has %d DXE cores; fwbuild inserts its launcher next to the one DXE core", len(cores))
	case len(unread) > 0:
		return nil, fmt.Errorf("image: unsupported firmware: no DXE core in the volumes fiano can read, and %s in a volume format fiano does not edit "+
			"(FFS1, as older AMI/Insyde images use): fwbuild cannot insert its launcher; nothing was written",
			strings.Join(unread, ", "))
	case len(opaque) > 0:
		return nil, fmt.Errorf("image: unsupported firmware: no DXE core in what fiano can decompress; the firmware holds %s (fiano v1.2.0 opens no EFI_SECTION_COMPRESSION, not even an uncompressed one): "+
			"fwbuild cannot insert its launcher; nothing was written", strings.Join(opaque, ", "))
	default:
		return nil, fmt.Errorf("image: base firmware has no DXE core (file type DXE_CORE) in any volume: is it a UEFI (PI) firmware image?%s", l.detail())
	}
	if t.before, err = fvLengths(t.br); err != nil {
		return nil, err
	}
	return t, nil
}

// compressionType names the CompressionType of an EFI_SECTION_COMPRESSION:
// VirtualBox wraps its DXE volume in one of type 0, not compressed at all,
// which an error blaming Tiano compression would misdiagnose.
func compressionType(s *uefi.Section) string {
	b := s.Buf()
	h := 4 // EFI_COMMON_SECTION_HEADER, or HEADER2 with an extended size
	if s.Header.Size == [3]uint8{0xFF, 0xFF, 0xFF} {
		h = 8
	}
	if len(b) <= h+4 {
		return "truncated"
	}
	switch b[h+4] { // after the 32-bit UncompressedLength
	case 0:
		return "not compressed"
	case 1:
		return "EFI/Tiano-compressed"
	}
	return fmt.Sprintf("compression type %#x", b[h+4])
}

func fileUI(f *uefi.File) string {
	for _, s := range f.Sections {
		if s.Header.Type == uefi.SectionTypeUserInterface {
			return s.Name
		}
	}
	return ""
}

func fileUse(f *uefi.File, fv *uefi.FirmwareVolume) FileUse {
	return FileUse{GUID: f.Header.GUID.String(), Name: fileUI(f), Type: f.Header.Type.String(), Size: uint64(len(f.Buf())), Volume: fvName(fv)}
}

// markChanged marks fv and every volume enclosing it.
func (t *editTree) markChanged(fv *uefi.FirmwareVolume) {
	for ; fv != nil; fv = t.parent[fv] {
		t.changed[fv] = true
	}
}

// remove drops every file whose GUID or UI name is one of names. A file
// in a volume that is not compressed is replaced by a pad file of its
// size: code in such volumes may run in place, so the files after it
// must not move.
func (t *editTree) remove(names []string) ([]FileUse, error) {
	var out []FileUse
	for _, name := range names {
		var g *guid.GUID
		if guidRE.MatchString(name) {
			g, _ = guid.Parse(name)
		}
		hits := 0
		var fvs []*uefi.FirmwareVolume
		_ = walk(t.br, func(f uefi.Firmware, _ []uefi.Firmware) {
			if fv, ok := f.(*uefi.FirmwareVolume); ok {
				fvs = append(fvs, fv)
			}
		})
		for _, fv := range fvs {
			for i := 0; i < len(fv.Files); i++ {
				f := fv.Files[i]
				if !(g != nil && f.Header.GUID == *g || g == nil && strings.EqualFold(fileUI(f), name)) {
					continue
				}
				if f.Header.Type == uefi.FVFileTypeDXECore || f.Header.Type == uefi.FVFileTypeSECCore || f.Header.Type == uefi.FVFileTypePEICore {
					return nil, fmt.Errorf("image: remove %q: file %v is the firmware's %v: removing it leaves a firmware that cannot boot", name, f.Header.GUID, f.Header.Type)
				}
				hits++
				out = append(out, fileUse(f, fv))
				if t.compr[fv] {
					fv.Files = append(fv.Files[:i], fv.Files[i+1:]...)
					i--
				} else {
					pad, err := uefi.CreatePadFile(uint64(len(f.Buf())))
					if err != nil {
						return nil, fmt.Errorf("image: remove %q: pad file: %w", name, err)
					}
					fv.Files[i] = pad
				}
				t.markChanged(fv)
			}
		}
		if hits == 0 {
			return nil, fmt.Errorf("image: remove %q: the firmware has no file with that GUID or UI name (fwbuild fit lists the files)", name)
		}
	}
	return out, nil
}

// insert appends FFS files to the DXE volume.
func (t *editTree) insert(files [][]byte) ([]FileUse, error) {
	var out []FileUse
	for _, b := range files {
		f, err := uefi.NewFile(append([]byte(nil), b...))
		if err != nil || f == nil {
			return nil, fmt.Errorf("image: insert: not an FFS file (%d bytes): %v", len(b), err)
		}
		dup := false
		_ = walk(t.br, func(x uefi.Firmware, _ []uefi.Firmware) {
			if o, ok := x.(*uefi.File); ok && o.Header.GUID == f.Header.GUID {
				dup = true
			}
		})
		if dup {
			return nil, fmt.Errorf("image: insert: the firmware already has a file %v (%s): start from the vendor's image, not one fwbuild already changed", f.Header.GUID, fileUI(f))
		}
		t.dxe.Files = append(t.dxe.Files, f)
		if t.inserted == nil {
			t.inserted = map[guid.GUID]bool{}
		}
		t.inserted[f.Header.GUID] = true
		t.markChanged(t.dxe)
		out = append(out, fileUse(f, t.dxe))
	}
	return out, nil
}

// NoRoomError reports a firmware whose volumes cannot take the edit.
type NoRoomError struct {
	Volume string
	Need   uint64 // bytes the volume's content needs
	Have   uint64 // bytes the volume holds
	// Candidates are the largest files of the DXE volume.
	Candidates []FileUse
}

func (e *NoRoomError) Error() string {
	var c []string
	for i, f := range e.Candidates {
		if i == 5 {
			break
		}
		n := f.Name
		if n == "" {
			n = f.GUID
		}
		c = append(c, fmt.Sprintf("%s (%d bytes)", n, f.Size))
	}
	return fmt.Sprintf("image: no room: volume %s holds %#x bytes, its new content needs %#x (%d more); volumes keep their size, "+
		"so name files to drop in outputs.spi.remove (largest in the DXE volume: %s; `fwbuild fit` lists them all); nothing was written",
		e.Volume, e.Have, e.Need, e.Need-e.Have, strings.Join(c, ", "))
}

// assemble rebuilds every changed top-level volume. No volume may change
// its length: a nested volume fiano grew would not boot, a top-level one
// would overlap its neighbour.
func (t *editTree) assemble() error {
	reattach, err := t.storeBack()
	if err != nil {
		return err
	}
	err = t.assembleTop()
	reattach()
	if err != nil {
		return err
	}
	return t.checkLengths()
}

func (t *editTree) assembleTop() error {
	for fv := range t.changed {
		if !t.top[fv] {
			continue
		}
		if len(fv.Blocks) == 0 || fv.Blocks[0].Size == 0 {
			return fmt.Errorf("image: volume %s has no usable block map", fvName(fv))
		}
		planned, count := fv.Length, fv.Blocks[0].Count
		fv.Resizable = true
		err := assembleFV(fv)
		fv.Resizable = false
		if err != nil {
			return fmt.Errorf("image: assemble volume %s: %w", fvName(fv), err)
		}
		if fv.Length != planned {
			need := fv.Length - fv.FreeSpace
			fv.Length, fv.Blocks[0].Count = planned, count
			return &NoRoomError{Volume: fvName(fv), Need: need, Have: planned, Candidates: t.dxeFiles()}
		}
	}
	return nil
}

// checkLengths holds every volume, nested ones included, to its length.
func (t *editTree) checkLengths() error {
	after, err := fvLengths(t.br)
	if err != nil {
		return err
	}
	if len(after) != len(t.before) {
		return fmt.Errorf("image: assembling changed the number of firmware volumes from %d to %d", len(t.before), len(after))
	}
	for i, b := range t.before {
		a := after[i]
		if a.key != b.key {
			return fmt.Errorf("image: assembling reordered firmware volumes: %s became %s", b.key, a.key)
		}
		if a.len != b.len {
			return &NoRoomError{Volume: b.key, Need: a.len - a.fv.FreeSpace, Have: b.len, Candidates: t.dxeFiles()}
		}
	}
	return nil
}

func (t *editTree) dxeFiles() []FileUse {
	var out []FileUse
	for _, f := range t.dxe.Files {
		if f.Header.Type == uefi.FVFileTypePad || f.Header.Type == uefi.FVFileTypeDXECore || t.inserted[f.Header.GUID] {
			continue
		}
		out = append(out, fileUse(f, t.dxe))
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Size > out[j].Size })
	return out
}

// report lists every volume with its free space before and now.
func (t *editTree) report() []VolumeUse {
	var out []VolumeUse
	_ = walk(t.br, func(f uefi.Firmware, _ []uefi.Firmware) {
		fv, ok := f.(*uefi.FirmwareVolume)
		if !ok {
			return
		}
		var path []string
		for p := t.parent[fv]; p != nil; p = t.parent[p] {
			path = append([]string{fvName(p)}, path...)
		}
		out = append(out, VolumeUse{Name: fvName(fv), Path: strings.Join(path, "/"), Offset: fv.FVOffset, Length: fv.Length,
			FreeBefore: t.free[fv], FreeAfter: fv.FreeSpace, Compressed: t.compr[fv], Changed: t.changed[fv], TopLevel: t.top[fv], DXE: fv == t.dxe})
	})
	return out
}

// bytes returns region with every changed top-level volume written back.
func (t *editTree) bytes(region []byte) []byte {
	out := append([]byte(nil), region...)
	for fv := range t.changed {
		if t.top[fv] {
			copy(out[fv.FVOffset:], fv.Buf())
		}
	}
	return out
}

// editFirmware inserts FFS files into the DXE volume of a firmware region
// and removes the named files (GUIDs or UI names), keeping every volume's
// size: only the top-level volumes holding a change are rewritten, every
// other byte stays as it was. fiano may reuse region's bytes, so a caller
// that needs them afterwards passes a copy (as Fit does).
func editFirmware(region []byte, insert [][]byte, remove []string, l *fianoLogger) ([]byte, *EditReport, error) {
	t, err := openEdit(region, l)
	if err != nil {
		return nil, nil, err
	}
	rep := &EditReport{}
	if rep.Removed, err = t.remove(remove); err != nil {
		return nil, nil, err
	}
	if rep.Inserted, err = t.insert(insert); err != nil {
		return nil, nil, err
	}
	rep.DXEFiles = t.dxeFiles()
	if err := t.assemble(); err != nil {
		return nil, rep, err
	}
	rep.Volumes = t.report()
	return t.bytes(region), rep, nil
}

// BuildSPIReport is BuildSPI for the launcher placements (SlotFile empty),
// with the report of what changed in the firmware.
func BuildSPIReport(ctx context.Context, s SPISpec) ([]byte, *EditReport, error) {
	if s.SlotFile != "" {
		return nil, nil, errors.New("image: BuildSPIReport is for launcher placements; SlotFile is set")
	}
	return buildLaunched(ctx, s, pinnedXZ)
}

func buildLaunched(ctx context.Context, s SPISpec, xzPath string) ([]byte, *EditReport, error) {
	if s.PayloadRegion != "" {
		if err := checkPE("flash payload", s.Payload); err != nil {
			return nil, nil, err
		}
		i := slices.IndexFunc(s.Regions, func(r boardcfg.Region) bool { return r.Name == s.PayloadRegion })
		if i < 0 {
			return nil, nil, fmt.Errorf("image: payload region %q is not in the layout", s.PayloadRegion)
		}
		if n := uint64(len(s.Payload)); n > uint64(s.Regions[i].Size) {
			return nil, nil, &BudgetError{Slot: "region " + s.PayloadRegion, Payload: int64(n), Budget: int64(s.Regions[i].Size), Exact: true,
				Limit: fmt.Sprintf("region %q holds %#x bytes", s.PayloadRegion, uint64(s.Regions[i].Size))}
		}
		s.Fills = maps.Clone(s.Fills)
		if s.Fills == nil {
			s.Fills = map[string][]byte{}
		}
		s.Fills[s.PayloadRegion] = s.Payload
	} else if len(s.Payload) > 0 {
		return nil, nil, errors.New("image: the payload has no place: give a payload region, a slot file, or insert it as an FFS file")
	}
	p, err := planSPI(s)
	if err != nil {
		return nil, nil, err
	}
	if err := p.checkNested(); err != nil {
		return nil, nil, err
	}
	var region []byte
	var rep *EditReport
	err = fianoCtx(ctx, xzPath, func(l *fianoLogger) error {
		var err error
		region, rep, err = editFirmware(p.region, s.Insert, s.Remove, l)
		return err
	})
	if err != nil {
		if errors.Is(err, errFiano) {
			return nil, nil, fmt.Errorf("image: base firmware: %w", err)
		}
		return nil, rep, err
	}
	out := p.chip(s.ChipSize, region)
	if uint64(len(out)) != s.ChipSize {
		return nil, nil, fmt.Errorf("image: internal: chip image is %#x bytes, want %#x", len(out), s.ChipSize)
	}
	return out, rep, nil
}
