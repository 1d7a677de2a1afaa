package image

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"sort"
	"strconv"
	"strings"

	"github.com/fwbuild/fwbuild/boardcfg"
	"github.com/linuxboot/fiano/pkg/uefi"
)

// DescriptorRegion is one region of an Intel flash descriptor's region section.
type DescriptorRegion struct {
	// Kind names the FLREG slot: "descriptor", "bios", "me", "gbe", "pd", and
	// for higher indices fiano's names lower-cased ("devexp1", "bios2",
	// "microcode", "ec", "devexp2", "ie", "10gbe1", "10gbe2", "reserved1",
	// "reserved2", "ptt") or "region<N>".
	Kind string
	// Index is the FLREG index (0 descriptor, 1 bios, 2 me, 3 gbe, 4 pd, ...).
	Index int
	Start uint64
	Size  uint64
}

// end is the offset one past the region's last byte.
func (r DescriptorRegion) end() uint64 { return r.Start + r.Size }

// label names r in errors.
func (r DescriptorRegion) label() string {
	return fmt.Sprintf("%s (FLREG%d, %#x-%#x)", r.Kind, r.Index, r.Start, r.end()-1)
}

const (
	// ifdSize is the descriptor region every Intel chip starts with;
	// FLREG bases and limits count blocks of the same size.
	ifdSize  = uefi.FlashDescriptorLength
	ifdBlock = uefi.RegionBlockSize
	// ifdFLREGs is the number of FLREG slots fiano reads (FLREG0..15): the
	// region section ends where the master section of a v2 descriptor starts.
	ifdFLREGs = 16

	// FLREG indices the master section refers to.
	ifdDesc, ifdBIOS, ifdME, ifdGbE, ifdPD, ifdEC = 0, 1, 2, 3, 4, 8
)

// ifdKind names FLREG slot i. fiano's FlashRegionType counts from the
// BIOS region (its region section struct hides FLREG0 in two unnamed
// fields), hence the i-1.
func ifdKind(i int) string {
	if i == 0 {
		return "descriptor"
	}
	s := uefi.FlashRegionType(i - 1).String()
	if i >= ifdFLREGs || strings.HasPrefix(s, "Unknown") {
		return "region" + strconv.Itoa(i)
	}
	return strings.ToLower(s)
}

// ifdIndex is ifdKind's inverse; ok is false for an unknown kind.
func ifdIndex(kind string) (int, bool) {
	for i := 0; i < ifdFLREGs; i++ {
		if ifdKind(i) == kind {
			return i, true
		}
	}
	if n, err := strconv.Atoi(strings.TrimPrefix(kind, "region")); err == nil && strings.HasPrefix(kind, "region") && n > 0 && n < ifdFLREGs {
		return n, true
	}
	return 0, false
}

func ifdKinds() string {
	var ks []string
	for i := 0; i < ifdFLREGs; i++ {
		ks = append(ks, strconv.Quote(ifdKind(i)))
	}
	return strings.Join(ks, ", ")
}

// HasDescriptor reports whether chip starts with an Intel flash descriptor:
// the signature 0x0FF0A55A at 0x10 (PCH, ICH9 and later) or at 0 (ICH8),
// the two places fiano looks.
func HasDescriptor(chip []byte) bool {
	_, err := uefi.FindSignature(chip)
	return err == nil
}

// ReadDescriptor returns the used regions of chip's descriptor sorted by
// Start. Unused FLREG entries (base > limit, limit 0 or 0xFFFF, as fiano
// defines them) and entries past the descriptor's region count (NR, when
// not 0) are skipped. It checks that every region lies inside chip, that no
// two overlap, that the descriptor region starts at 0 and that a BIOS
// region exists.
func ReadDescriptor(chip []byte) ([]DescriptorRegion, error) {
	mapStart, err := uefi.FindSignature(chip)
	if err != nil {
		return nil, errors.New("image: descriptor: no Intel flash descriptor signature 0x0FF0A55A at 0x10 or 0: not a descriptor-mode Intel image (or the dump starts at the wrong offset)")
	}
	if len(chip) < ifdSize {
		return nil, fmt.Errorf("image: descriptor: chip image is %#x bytes, shorter than the %#x-byte descriptor: truncated file? read the whole chip", len(chip), ifdSize)
	}
	// fiano's ParseFlashDescriptor slices at the bases the map gives
	// without checking them: a corrupt map would panic. Check first.
	m, err := uefi.NewFlashDescriptorMap(chip[mapStart:ifdSize])
	if err != nil {
		return nil, fmt.Errorf("image: descriptor: read descriptor map: %w", err)
	}
	if end := int(m.RegionBase)*0x10 + uefi.FlashRegionSectionSize; m.RegionBase == 0 || end > ifdSize {
		return nil, fmt.Errorf("image: descriptor: FLMAP0 puts the region section at %#x, which does not fit between the descriptor map and the end of the 4 KiB descriptor: corrupt descriptor", int(m.RegionBase)*0x10)
	}
	if end := int(m.MasterBase)*0x10 + uefi.FlashMasterSectionSize; m.MasterBase == 0 || end > ifdSize {
		return nil, fmt.Errorf("image: descriptor: FLMAP1 puts the master section at %#x, which does not fit between the descriptor map and the end of the 4 KiB descriptor: corrupt descriptor", int(m.MasterBase)*0x10)
	}

	// Only the descriptor itself is parsed: uefi.NewFlashImage would also
	// parse the BIOS region's volumes (global erase polarity, prints to
	// stdout and silently drops regions past the chip's end, which we
	// want to report).
	fd := &uefi.FlashDescriptor{}
	fd.SetBuf(append([]byte(nil), chip[:ifdSize]...))
	if err := fd.ParseFlashDescriptor(); err != nil {
		return nil, fmt.Errorf("image: descriptor: %w", err)
	}

	// FLREG0 is the first dword of the region section, which fiano's
	// struct leaves unnamed.
	flreg0 := fd.Buf()[fd.RegionStart:]
	entries := make([]uefi.FlashRegion, 0, ifdFLREGs)
	entries = append(entries, uefi.FlashRegion{
		Base:  binary.LittleEndian.Uint16(flreg0[0:]),
		Limit: binary.LittleEndian.Uint16(flreg0[2:]),
	})
	entries = append(entries, fd.Region.FlashRegions[:]...)

	// NR is zero-based and deprecated (0) in v2 descriptors; older ones
	// carry stale "valid" entries past it (fiano's reading, too).
	nr := int(fd.DescriptorMap.NumberOfRegions)
	var regions []DescriptorRegion
	for i, fr := range entries {
		if nr != 0 && i > nr {
			break
		}
		used := fr.Valid()
		if i == 0 {
			// A 4 KiB descriptor region has limit 0, which fiano's Valid
			// reads as unused (right for every other slot: a region
			// in block 0 would overlap the descriptor).
			used = fr.Base <= fr.Limit && fr.Limit != 0xFFFF
		}
		if !used {
			continue
		}
		regions = append(regions, DescriptorRegion{
			Kind:  ifdKind(i),
			Index: i,
			Start: uint64(fr.BaseOffset()),
			Size:  uint64(fr.EndOffset()) - uint64(fr.BaseOffset()),
		})
	}
	sortDescriptorRegions(regions)
	if err := checkDescriptorRegions(uint64(len(chip)), regions); err != nil {
		return nil, err
	}
	return regions, nil
}

// sortDescriptorRegions sorts by Start, ties (only in a corrupt
// descriptor) by Index so that errors name the same pair every time.
func sortDescriptorRegions(rs []DescriptorRegion) {
	sort.Slice(rs, func(i, j int) bool {
		if rs[i].Start != rs[j].Start {
			return rs[i].Start < rs[j].Start
		}
		return rs[i].Index < rs[j].Index
	})
}

// checkDescriptorRegions checks sorted regions against a chip of chipSize
// bytes: what both ReadDescriptor and WriteDescriptor require.
func checkDescriptorRegions(chipSize uint64, regions []DescriptorRegion) error {
	var haveDesc, haveBIOS bool
	for i, r := range regions {
		if r.Size == 0 {
			return fmt.Errorf("image: descriptor: region %s has size 0: drop it or give it a size", r.Kind)
		}
		if r.end() > chipSize || r.end() < r.Start {
			return fmt.Errorf("image: descriptor: region %s ends past the chip's end %#x: the descriptor is for a larger chip (or the image is truncated)", r.label(), chipSize)
		}
		if i > 0 && r.Start < regions[i-1].end() {
			return fmt.Errorf("image: descriptor: region %s overlaps region %s: move one of them", r.label(), regions[i-1].label())
		}
		switch r.Index {
		case 0:
			if r.Start != 0 {
				return fmt.Errorf("image: descriptor: region %s does not start at 0: the chip's first 4 KiB must be the descriptor", r.label())
			}
			haveDesc = true
		case 1:
			haveBIOS = true
		}
	}
	if !haveDesc {
		return fmt.Errorf("image: descriptor: no descriptor region (FLREG0) at 0: add {Kind: \"descriptor\", Start: 0, Size: 0x1000}")
	}
	if !haveBIOS {
		return fmt.Errorf("image: descriptor: no BIOS region (FLREG1): the host cannot boot without one; add a \"bios\" region")
	}
	return nil
}

// Offsets of the sections WriteDescriptor lays out, as on Skylake and later
// PCH descriptors (coreboot's ifdtool dumps of such boards show the same).
const (
	ifdFCBA   = 0x30  // component section
	ifdFRBA   = 0x40  // region section: 16 FLREGs up to the masters
	ifdFMBA   = 0x80  // master section
	ifdFPSBA  = 0x100 // PCH straps (none written)
	ifdFMSBA  = 0x300 // processor straps (none written)
	ifdFLUMAP = 0xEFC // upper map: VSCC table base and length
	ifdVTBA   = 0xEE0 // VSCC table (empty)
)

// v2 FLCOMP frequency codes. A read clock of 17 MHz is what marks a v2
// (Skylake+) descriptor to parsers such as UEFITool; v1 ones have 20 MHz.
const (
	ifdFreq17MHz = 6
	ifdFreq50MHz = 4
	ifdNoChip    = 0xF
)

// ifdFLMSTR is an FLMSTR value (v2: read bits 8-19, write bits 20-31, one bit per
// region index).
func ifdFLMSTR(read, write []int) uint32 {
	var v uint32
	for _, i := range read {
		v |= 1 << (8 + i)
	}
	for _, i := range write {
		v |= 1 << (20 + i)
	}
	return v
}

// WriteDescriptor returns a 4 KiB Intel flash descriptor (IFD v2, as on
// Skylake and later PCHs) for a chip of chipSize bytes holding regions.
// Kind chooses each region's FLREG slot (Index, if set, must agree); a
// "descriptor" region at 0 of 4 KiB and a "bios" region are required;
// starts and sizes are 4 KiB aligned. The masters are locked down as
// coreboot's ifdtool --lock does: the host reads the descriptor and BIOS
// and writes BIOS (plus GbE and PD, and reads EC, when the chip has those
// regions) but cannot read the ME region; nothing writes the descriptor.
// chipSize must be one SPI chip density (512 KiB to 64 MiB) or the sum of
// two (up to 128 MiB).
//
// The descriptor carries no PCH or processor soft straps: those are
// specific to a board's chipset and wiring, and wrong straps keep real
// silicon from booting. Use it for emulated boards and tests; a real
// board keeps its vendor's descriptor (read it with ReadDescriptor).
func WriteDescriptor(chipSize uint64, regions []DescriptorRegion) ([]byte, error) {
	d1, d2, err := ifdDensities(chipSize)
	if err != nil {
		return nil, err
	}
	rs := make([]DescriptorRegion, len(regions))
	seen := map[int]bool{}
	for i, r := range regions {
		idx, ok := ifdIndex(r.Kind)
		if !ok {
			return nil, fmt.Errorf("image: descriptor: region %d has unknown kind %q: use one of %s or region<N> (N < %d)", i, r.Kind, ifdKinds(), ifdFLREGs)
		}
		if r.Index != 0 && r.Index != idx {
			return nil, fmt.Errorf("image: descriptor: region %s has Index %d but kind %q is FLREG%d: leave Index 0 or make them agree", r.Kind, r.Index, r.Kind, idx)
		}
		if seen[idx] {
			return nil, fmt.Errorf("image: descriptor: two %q regions: a descriptor has one FLREG slot per kind", r.Kind)
		}
		seen[idx] = true
		r.Index = idx
		if r.Start%ifdBlock != 0 || r.Size%ifdBlock != 0 {
			return nil, fmt.Errorf("image: descriptor: region %s is not 4 KiB aligned: FLREG counts 4 KiB blocks; round start and size to 0x1000", r.label())
		}
		if idx == 0 && (r.Start != 0 || r.Size != ifdSize) {
			return nil, fmt.Errorf("image: descriptor: region %s must be 0x0-0xfff (4 KiB at offset 0)", r.label())
		}
		rs[i] = r
	}
	sortDescriptorRegions(rs)
	if err := checkDescriptorRegions(chipSize, rs); err != nil {
		return nil, err
	}

	d := make([]byte, ifdSize)
	for i := range d {
		d[i] = 0xFF // erased flash: what real descriptors hold where nothing is defined
	}
	le := binary.LittleEndian
	put := func(off int, v uint32) { le.PutUint32(d[off:], v) }

	nc := uint32(0) // zero-based number of flash components
	if d2 != ifdNoChip {
		nc = 1
	}
	put(0x10, 0x0FF0A55A)
	// FLMAP0: FCBA, NC, FRBA; NR (bits 24-26) is reserved in v2: 0.
	put(0x14, ifdFCBA>>4|nc<<8|ifdFRBA>>4<<16)
	// FLMAP1: FMBA, NM (zero-based: host, ME, GbE), FPSBA, ISL (no straps).
	put(0x18, ifdFMBA>>4|2<<8|ifdFPSBA>>4<<16)
	// FLMAP2: FMSBA, PSL (no straps), and in bits 16-23 the 0x31 that
	// Sunrise Point and later descriptors carry (v1's ICCRIBA): flashrom
	// tells the generation by it. With 0 (and no straps) flashrom 1.3
	// takes the descriptor for an ICH8 one and lists only its "fd"
	// region, so `flashrom --ifd -i bios` fails.
	put(0x1C, ifdFMSBA>>4|0x31<<16)

	// Component section: FLCOMP, FLILL (no invalid instructions), FLPB.
	put(ifdFCBA, uint32(d1)|uint32(d2)<<4|
		ifdFreq17MHz<<17|1<<20| // read clock 17 MHz, fast read supported
		ifdFreq50MHz<<21|ifdFreq50MHz<<24|ifdFreq50MHz<<27)
	put(ifdFCBA+4, 0)
	put(ifdFCBA+8, 0)

	// Region section: an unused slot has base 0x7FFF > limit 0, as ifdtool
	// writes it (and limit 0 is what UEFITool checks).
	for i := 0; i < ifdFLREGs; i++ {
		put(ifdFRBA+4*i, 0x7FFF)
	}
	for _, r := range rs {
		base := uint32(r.Start / ifdBlock)
		limit := uint32((r.end() - 1) / ifdBlock)
		put(ifdFRBA+4*r.Index, base|limit<<16)
	}

	// Master section: FLMSTR1 host CPU/BIOS, FLMSTR2 ME, FLMSTR3 GbE,
	// FLMSTR4 (reserved) and FLMSTR5 EC, locked the way coreboot's
	// ifdtool --lock sets them: each master reads the descriptor and
	// reads and writes its own region; the host also owns platform data,
	// shares GbE with the ME and the NIC (the OS driver updates the NIC's
	// NVM) and may read the EC's region. Nothing writes the descriptor
	// and the host cannot read the ME region. A region the chip lacks gets
	// no bits, so a chip without GbE, PD or EC gives the host exactly
	// descriptor+BIOS to read and BIOS to write.
	type access struct{ read, write []int }
	host := access{[]int{ifdDesc, ifdBIOS}, []int{ifdBIOS}}
	me := access{[]int{ifdDesc, ifdME}, []int{ifdME}}
	var nic, ec access
	if seen[ifdPD] {
		host.read, host.write = append(host.read, ifdPD), append(host.write, ifdPD)
	}
	if seen[ifdGbE] {
		host.read, host.write = append(host.read, ifdGbE), append(host.write, ifdGbE)
		me.read, me.write = append(me.read, ifdGbE), append(me.write, ifdGbE)
		nic = access{[]int{ifdDesc, ifdGbE}, []int{ifdGbE}}
	}
	if seen[ifdEC] {
		host.read = append(host.read, ifdEC)
		ec = access{[]int{ifdDesc, ifdEC}, []int{ifdEC}}
	}
	for i, m := range []access{host, me, nic, {}, ec} {
		put(ifdFMBA+4*i, ifdFLMSTR(m.read, m.write))
	}

	// Upper map: an empty VSCC table rather than 0xFF, which parsers would
	// read as 127 bogus flash parts.
	put(ifdFLUMAP, ifdVTBA>>4)
	return d, nil
}

// ifdDensities returns FLCOMP's density codes for one or two components
// that add up to chipSize (code n is 512 KiB << n; 0xF is "no second
// chip"). FLREG's 15-bit block numbers reach 128 MiB, the most two
// 64 MiB chips hold.
func ifdDensities(chipSize uint64) (first, second uint8, err error) {
	code := func(n uint64) (uint8, bool) {
		if n < 512<<10 || n > 64<<20 || bits.OnesCount64(n) != 1 {
			return 0, false
		}
		return uint8(bits.TrailingZeros64(n) - 19), true
	}
	if c, ok := code(chipSize); ok {
		return c, ifdNoChip, nil
	}
	// Two chips, the larger one first as boards wire them: 24 MiB is
	// 16 + 8, 128 MiB is 64 + 64.
	if n := bits.OnesCount64(chipSize); n == 1 || n == 2 {
		hi := uint64(1) << (63 - bits.LeadingZeros64(chipSize))
		lo := chipSize - hi
		if lo == 0 {
			hi, lo = hi/2, hi/2
		}
		c1, ok1 := code(hi)
		c2, ok2 := code(lo)
		if ok1 && ok2 {
			return c1, c2, nil
		}
	}
	return 0, 0, fmt.Errorf("image: descriptor: chip size %#x is not a SPI flash density (512 KiB to 64 MiB, a power of two) nor the sum of two: set the board's chip size to the real part's size", chipSize)
}

// descriptorRegionNames are the layout names ChipLayout gives the regions
// of an Intel flash descriptor, by kind.
var descriptorRegionNames = map[string]string{"descriptor": "fd"}

// ChipLayout is the flash layout of a full-chip image: the regions of its
// Intel flash descriptor (the BIOS region marked firmware, every other one
// preserved: fwbuild changes nothing outside the BIOS region), with the
// profile's regions added (fwbuild's own, nested in the BIOS region) or, by
// name, replacing a descriptor region.
func ChipLayout(chip []byte, profile []boardcfg.Region) ([]boardcfg.Region, error) {
	regs, err := ReadDescriptor(chip)
	if err != nil {
		return nil, err
	}
	byName := map[string]boardcfg.Region{}
	for _, r := range profile {
		byName[r.Name] = r
	}
	var out []boardcfg.Region
	for _, d := range regs {
		name := d.Kind
		if n, ok := descriptorRegionNames[d.Kind]; ok {
			name = n
		}
		r := boardcfg.Region{Name: name, Start: boardcfg.Size(d.Start), Size: boardcfg.Size(d.Size), Kind: d.Kind}
		if d.Kind == "bios" {
			r.Firmware = true
		} else {
			r.Preserve = true
		}
		if o, ok := byName[name]; ok {
			if d.Kind == "bios" {
				return nil, fmt.Errorf("image: the profile's region %q would replace the descriptor's BIOS region: fwbuild edits the BIOS region the descriptor gives; name fwbuild's regions differently", name)
			}
			o.Kind = d.Kind
			r = o
			delete(byName, name)
		}
		out = append(out, r)
	}
	for _, r := range profile {
		if _, ok := byName[r.Name]; ok {
			out = append(out, r)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Start != out[j].Start {
			return out[i].Start < out[j].Start
		}
		return out[i].Size > out[j].Size
	})
	return out, nil
}
