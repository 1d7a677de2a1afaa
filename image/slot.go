package image

import (
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/linuxboot/fiano/pkg/uefi"
)

// slotTree is the parsed firmware region with the slot located in it.
type slotTree struct {
	p         *spiPlan
	br        *uefi.BIOSRegion
	container *uefi.FirmwareVolume // top-level volume holding the slot
	planned   uint64               // container length, which must not change
	slotFV    *uefi.FirmwareVolume // volume directly holding the slot file
	slotIdx   int
	slotFile  *uefi.File
	pe        *uefi.Section
	// compressed is the outermost section that must be re-encoded when the
	// slot changes (nil if none): its size depends on the payload's bytes.
	compressed *uefi.Section
	before     []fvLen
}

type fvLen struct {
	key string
	fv  *uefi.FirmwareVolume
	len uint64
}

// treeWalk is a fiano Visitor that calls fn for every node of a tree,
// parents before children, with the node's ancestors (outermost first).
// fiano's ApplyChildren decides what a node's children are, so every node
// type is walked: NVAR stores in files, padding between volumes, the
// regions of a flash image, and whatever types later fiano versions add.
type treeWalk struct {
	fn   func(f uefi.Firmware, ancestors []uefi.Firmware)
	path []uefi.Firmware
}

func (w *treeWalk) Run(f uefi.Firmware) error { return f.Apply(w) }

func (w *treeWalk) Visit(f uefi.Firmware) error {
	// A full slice expression, so fn cannot keep an alias of the path that
	// later appends overwrite.
	w.fn(f, w.path[:len(w.path):len(w.path)])
	w.path = append(w.path, f)
	err := f.ApplyChildren(w)
	w.path = w.path[:len(w.path)-1]
	return err
}

// walk calls fn for every node below (and including) f with its ancestors.
func walk(f uefi.Firmware, fn func(f uefi.Firmware, ancestors []uefi.Firmware)) error {
	return (&treeWalk{fn: fn}).Run(f)
}

func fvName(fv *uefi.FirmwareVolume) string {
	if fv.ExtHeaderOffset != 0 {
		return fv.FVName.String()
	}
	return fv.FileSystemGUID.String()
}

// fvLengths lists every volume below f in walk order, keyed by name with a
// counter so volumes without a name GUID stay distinct.
func fvLengths(f uefi.Firmware) ([]fvLen, error) {
	var out []fvLen
	seen := map[string]int{}
	err := walk(f, func(f uefi.Firmware, _ []uefi.Firmware) {
		if fv, ok := f.(*uefi.FirmwareVolume); ok {
			k := fvName(fv)
			seen[k]++
			if seen[k] > 1 {
				k = fmt.Sprintf("%s#%d", k, seen[k])
			}
			out = append(out, fvLen{k, fv, fv.Length})
		}
	})
	if err != nil {
		return nil, fmt.Errorf("image: list firmware volumes: %w", err)
	}
	return out, nil
}

func isCompressed(s *uefi.Section) bool {
	if s.Header.Type != uefi.SectionTypeGUIDDefined || s.TypeSpecific == nil {
		return false
	}
	gd, ok := s.TypeSpecific.Header.(*uefi.SectionGUIDDefined)
	return ok && gd.Attributes&uint16(uefi.GUIDEDSectionProcessingRequired) != 0
}

// openSlot parses the planned firmware region and finds the slot.
func openSlot(p *spiPlan, l *fianoLogger) (*slotTree, error) {
	r, err := uefi.NewBIOSRegion(p.region, nil, uefi.RegionTypeBIOS)
	if err != nil {
		return nil, fmt.Errorf("image: base firmware is not a valid UEFI image: %v%s", err, l.detail())
	}
	t := &slotTree{p: p, br: r.(*uefi.BIOSRegion)}
	var matches int
	var unread []string // volumes fiano keeps without their files
	err = walk(t.br, func(f uefi.Firmware, path []uefi.Firmware) {
		if fv, ok := f.(*uefi.FirmwareVolume); ok && !fianoListsFiles(fv.FileSystemGUID) && mayHoldFiles(fv.FileSystemGUID) {
			unread = append(unread, fmt.Sprintf("%s at %#x (%s)", fvName(fv), fv.FVOffset, fvFormat(fv.FileSystemGUID)))
		}
		file, ok := f.(*uefi.File)
		if !ok || file.Header.GUID != p.slot {
			return
		}
		matches++
		t.slotFile = file
		t.container, t.slotFV, t.compressed = nil, nil, nil
		for _, a := range path {
			switch a := a.(type) {
			case *uefi.FirmwareVolume:
				if t.container == nil {
					t.container = a
				}
				t.slotFV = a
			case *uefi.Section:
				if t.compressed == nil && isCompressed(a) {
					t.compressed = a
				}
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("image: look for the slot file %v: %w", p.slot, err)
	}
	switch {
	case matches == 0 && len(unread) > 0:
		// The slot may well be in there: "not found" would send the user
		// looking for the wrong mistake.
		which := "volume " + unread[0] + " is"
		if len(unread) > 1 {
			which = "volumes " + strings.Join(unread, ", ") + " are"
		}
		return nil, fmt.Errorf("image: base firmware has no file %v to hold the payload in the volumes fiano can read, "+
			"but its %s in an unsupported volume format, whose files fiano does not read: "+
			"the slot may be inside; use a base firmware whose volumes are FFS2 or FFS3 (as EDK II builds them)",
			p.slot, which)
	case matches == 0:
		return nil, fmt.Errorf("image: base firmware has no file %v to hold the payload%s", p.slot, l.detail())
	case matches > 1:
		return nil, fmt.Errorf("image: base firmware has %d files %v; the slot must be unique", matches, p.slot)
	case t.slotFV == nil:
		return nil, fmt.Errorf("image: slot file %v lies in no firmware volume", p.slot)
	}
	if p.grow != nil && fvName(t.container) != p.grow.String() {
		return nil, fmt.Errorf("image: slot file %v is in volume %s, not in the volume to grow %v", p.slot, fvName(t.container), *p.grow)
	}
	if t.container.Length == 0 || len(t.container.Blocks) == 0 || t.container.Blocks[0].Size == 0 {
		return nil, fmt.Errorf("image: volume %s holding the slot has no usable block map", fvName(t.container))
	}
	t.planned = t.container.Length
	for i, f := range t.slotFV.Files {
		if f == t.slotFile {
			t.slotIdx = i
		}
	}
	for _, s := range t.slotFile.Sections {
		if s.Header.Type == uefi.SectionTypePE32 {
			if t.pe != nil {
				return nil, fmt.Errorf("image: slot file %v has more than one PE32 section", p.slot)
			}
			t.pe = s
		}
	}
	if t.pe == nil {
		return nil, fmt.Errorf("image: slot file %v has no PE32 section of its own (is it an EFI application or driver?)", p.slot)
	}
	if t.before, err = fvLengths(t.container); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *slotTree) slotLimit() string {
	return fmt.Sprintf("volume %s holding the slot must keep its %#x bytes", fvName(t.slotFV), t.slotFV.Length)
}

// fileLen is the slot file's length after fiano assembles it with a
// payload of n bytes (section and file headers grow past 16 MiB).
func (t *slotTree) fileLen(n uint64) (length uint64, large bool) {
	var d uint64
	for _, s := range t.slotFile.Sections {
		l := uint64(len(s.Buf()))
		if s == t.pe {
			l = n + 4
			if l >= 0xFFFFFF {
				l += 4
			}
		}
		d = uefi.Align4(d) + l
	}
	length = uefi.FileHeaderMinLength + d
	if length > 0xFFFFFF {
		return length + uefi.FileHeaderExtMinLength - uefi.FileHeaderMinLength, true
	}
	return length, false
}

// slotFVEnd is where the last file of the slot volume ends when the slot
// holds n bytes, following fiano's Assemble layout (8-byte file alignment,
// data alignment with pad files, the 8..23-byte gap rule).
func (t *slotTree) slotFVEnd(n uint64) uint64 {
	off := t.slotFV.DataOffset
	for i, f := range t.slotFV.Files {
		l, hl := uint64(len(f.Buf())), f.HeaderLen()
		if i == t.slotIdx {
			var large bool
			l, large = t.fileLen(n)
			hl = uefi.FileHeaderMinLength
			if large {
				hl = uefi.FileHeaderExtMinLength
			}
		}
		at := uefi.Align8(off)
		if a := f.Header.Attributes.GetAlignment(); a != 1 {
			data := uefi.Align(at+hl, a)
			next := data - hl
			if gap := next - at; gap >= 8 && gap < uefi.FileHeaderMinLength {
				data = uefi.Align(data+1, a)
				next = data - hl
			}
			at = next
		}
		off = at + l
	}
	return off
}

// slotBound is the exact largest payload the slot volume takes without
// growing. The layout is monotone in the slot size except for pad-file
// effects behind aligned files, so a binary search is followed by a scan
// that makes every size up to the bound fit.
func (t *slotTree) slotBound() (int64, error) {
	fits := func(n uint64) bool { return t.slotFVEnd(n) <= t.slotFV.Length }
	if !fits(0) {
		return 0, fmt.Errorf("image: volume %s is already full: even an empty slot does not fit", fvName(t.slotFV))
	}
	lo, hi := uint64(0), t.slotFV.Length // fits(lo), !fits(hi)
	for hi-lo > 1 {
		m := lo + (hi-lo)/2
		if fits(m) {
			lo = m
		} else {
			hi = m
		}
	}
	// Walk down from the bound: every size within a window (twice the
	// largest alignment behind the slot) below each failure must fit too.
	// The cost is bounded so crafted volumes cannot stall the build; the
	// assembled volume lengths are checked afterwards in any case.
	var maxAlign uint64 = 8
	for _, f := range t.slotFV.Files[t.slotIdx:] {
		maxAlign = max(maxAlign, f.Header.Attributes.GetAlignment())
	}
	window := min(2*maxAlign+64, 1<<16, 1<<24/uint64(len(t.slotFV.Files)+1))
	for n := lo; n > 0 && lo-(n-1) <= window; {
		n--
		if !fits(n) {
			lo = n - 1 // fits(0) holds, so n >= 1
		}
	}
	return int64(lo), nil
}

// setPayload replaces the slot's PE32 section data.
func (t *slotTree) setPayload(b []byte) error {
	t.pe.SetBuf(b)
	t.pe.Encapsulated = nil
	if err := t.pe.GenSecHeader(); err != nil {
		return fmt.Errorf("image: slot PE32 section: %w", err)
	}
	return nil
}

// assemble rebuilds the container and returns the bytes its content uses.
// The container may grow during assembly (so an overflow is measured, not a
// fiano error string); every other volume must keep its length, since
// fiano silently grows nested volumes and a larger DXEFV does not boot.
func (t *slotTree) assemble() (uint64, error) {
	c := t.container
	count := c.Blocks[0].Count
	c.Resizable = true
	defer func() {
		c.Resizable = false
	}()
	if err := assembleFV(c); err != nil {
		return 0, fmt.Errorf("image: assemble volume %s: %w", fvName(c), err)
	}
	used := c.Length - c.FreeSpace
	grown := c.Length != t.planned
	if grown {
		// Undo the growth so the tree can be assembled again (budget probes).
		c.Length, c.Blocks[0].Count = t.planned, count
		c.SetBuf(c.Buf()[:c.DataOffset])
	}
	after, err := fvLengths(c)
	if err != nil {
		return 0, err
	}
	if len(after) != len(t.before) {
		return 0, fmt.Errorf("image: assembling changed the number of firmware volumes from %d to %d", len(t.before), len(after))
	}
	for i, b := range t.before {
		a := after[i]
		if a.key != b.key {
			return 0, fmt.Errorf("image: assembling reordered firmware volumes: %s became %s", b.key, a.key)
		}
		if a.fv == c {
			continue
		}
		if a.len != b.len {
			return 0, fmt.Errorf("image: firmware volume %s changed size from %#x to %#x bytes (fiano grows full nested volumes; it must keep its size to boot)", b.key, b.len, a.len)
		}
	}
	if !grown && uint64(len(c.Buf())) != t.planned {
		return 0, fmt.Errorf("image: internal: volume %s assembled to %#x bytes, want %#x", fvName(c), len(c.Buf()), t.planned)
	}
	if grown && used <= t.planned {
		used = t.planned + 1
	}
	return used, nil
}

// region returns the firmware region with the assembled container.
func (t *slotTree) region() []byte {
	out := append([]byte(nil), t.p.region...)
	copy(out[t.container.FVOffset:], t.container.Buf())
	return out
}

// worstCompressed bounds what LZMA makes of n incompressible bytes: it
// measured +1.6% on random data (fiano's pure-Go encoder); 3% + 64 KiB
// leaves room, so layouts that pass this check skip the slow probes.
func worstCompressed(n uint64) uint64 { return n + n/32 + 64<<10 }

// budget is the largest payload that fits, and whether it is exact.
func (t *slotTree) budget() (int64, bool, string, error) {
	bound, err := t.slotBound()
	if err != nil {
		return 0, false, "", err
	}
	if t.compressed == nil {
		return bound, true, t.slotLimit(), nil
	}
	// The decompressed content keeps its size (the slot volume does), so
	// if even incompressible content fits, compression never binds.
	var raw uint64
	for _, e := range t.compressed.Encapsulated {
		raw = uefi.Align4(raw) + uint64(len(e.Value.Buf()))
	}
	used := t.container.Length - t.container.FreeSpace
	worst := used - uint64(len(t.compressed.Buf())) + worstCompressed(raw) + 4096
	if worst <= t.planned {
		return bound, true, t.slotLimit(), nil
	}
	limit := fmt.Sprintf("compressed content of volume %s must fit its %#x bytes", fvName(t.container), t.planned)
	// The compressed size grows about linearly with an incompressible
	// payload, but the slope rises with the amount of random data in the
	// dictionary, so it is measured in place: probe with a small and with
	// the largest payload the slot volume takes, interpolate, keep a margin
	// for the model's error (measured: under 100 bytes for OVMF's 8 MiB
	// layout). A probe with a large payload costs 10-40 s of pure-Go LZMA.
	const lo, margin = 4096, 4096
	probe := func(n int64) (uint64, error) {
		if err := t.setPayload(randomPE(n)); err != nil {
			return 0, err
		}
		return t.assemble()
	}
	loUsed, err := probe(lo)
	if err != nil {
		return 0, false, "", err
	}
	if loUsed+margin > t.planned {
		return 0, false, limit, fmt.Errorf("image: volume %s is full even with a %d-byte payload", fvName(t.container), lo)
	}
	hiUsed, err := probe(bound)
	if err != nil {
		return 0, false, "", err
	}
	if hiUsed <= t.planned {
		return bound, false, t.slotLimit(), nil
	}
	slope := float64(hiUsed-loUsed) / float64(bound-lo)
	return lo + int64(float64(t.planned-loUsed-margin)/slope), false, limit, nil
}

// randomPE is a deterministic incompressible stand-in payload of n bytes.
func randomPE(n int64) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewChaCha8([32]byte{'f', 'w', 'b', 'u', 'i', 'l', 'd'}))
	for i := 0; i+8 <= len(b); i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	copy(b, "MZ")
	return b
}
