package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/fwbuild/fwbuild/boardcfg"
	"github.com/fwbuild/fwbuild/hvcore/pe"
	"github.com/linuxboot/fiano/pkg/guid"
	"github.com/linuxboot/fiano/pkg/uefi"
	"github.com/linuxboot/fiano/pkg/visitors"
)

// SPISpec describes a flash chip image for a UEFI board.
type SPISpec struct {
	ChipSize uint64
	// Regions is the chip layout as the board profile gives it; the image
	// uses each region's name, start, size, preserve and firmware flags.
	Regions []boardcfg.Region
	// Fills maps a region name to content placed at the start of that
	// (non-firmware, non-preserved) region, e.g. an OVMF variable store;
	// the rest of the region is 0xFF.
	Fills map[string][]byte
	// BaseFirmware is the UEFI firmware (e.g. OVMF_CODE_4M.fd). It is
	// placed at the top of the firmware region.
	BaseFirmware []byte
	// GrowFV names (by GUID) the top-level volume that is enlarged
	// downwards to fill the firmware region; it must start the base
	// firmware. Empty: the base firmware is placed as it is.
	GrowFV string
	// SlotFile names (by GUID) the file whose PE32 section receives Payload
	// (the legacy placement, without a launcher). Empty: Payload goes into
	// PayloadRegion or, as an FFS file, into Insert.
	SlotFile string
	// Payload is a PE32(+) EFI application.
	Payload []byte
	// PayloadRegion names the region that receives Payload as raw bytes
	// (the launcher reads it from memory-mapped flash).
	PayloadRegion string
	// Base is the chip image to start from: a vendor's full-chip image, or
	// a generated flash descriptor on an erased chip. Nil: an erased chip.
	// Preserved regions keep these bytes.
	Base []byte
	// Insert are FFS files added to the firmware's DXE volume (the
	// launcher), Remove the files (GUIDs or UI names) dropped from it.
	Insert [][]byte
	Remove []string
}

// BudgetError reports a payload that does not fit the slot, with the
// numbers a size report needs.
type BudgetError struct {
	Slot    string // GUID of the slot file
	Payload int64  // size of the payload PE
	Budget  int64  // largest payload PE that fits
	// Limit says what bounds the budget.
	Limit string
	// Exact is false when Budget comes from a compressed volume: then it is
	// an estimate for incompressible payloads (what a GRUB memdisk with
	// compressed kernels is), and the build itself checks the real bytes.
	Exact bool
}

// Overflow is how many bytes the payload must lose to fit.
func (e *BudgetError) Overflow() int64 { return e.Payload - e.Budget }

func (e *BudgetError) Error() string {
	approx := ""
	if !e.Exact {
		approx = "about "
	}
	return fmt.Sprintf("image: flash payload of %d bytes does not fit slot %s: budget %s%d bytes, %s%d bytes over; limit: %s",
		e.Payload, e.Slot, approx, e.Budget, approx, e.Overflow(), e.Limit)
}

var guidRE = regexp.MustCompile(`^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$`)

func parseGUID(field, s string) (guid.GUID, error) {
	if !guidRE.MatchString(s) {
		return guid.GUID{}, fmt.Errorf("image: %s %q is not a GUID like 7C04A583-9E3E-4F1C-AD65-E05268D0B4D1", field, s)
	}
	g, err := guid.Parse(s)
	if err != nil {
		return guid.GUID{}, fmt.Errorf("image: %s %q: %w", field, s, err)
	}
	return *g, nil
}

// checkPE rejects payloads firmware would not start, before any work.
func checkPE(what string, b []byte) error {
	if len(b) == 0 {
		return fmt.Errorf("image: %s is empty", what)
	}
	// pe.Read requires the optional header an EFI application has.
	if _, err := pe.Read(b); err != nil {
		return fmt.Errorf("image: %s (%d bytes) is not a PE32 EFI image: %v", what, len(b), err)
	}
	return nil
}

// spiPlan is a validated SPISpec with the firmware region laid out before
// fiano sees it.
type spiPlan struct {
	regions []boardcfg.Region
	fills   map[string][]byte
	fw      int
	region  []byte // firmware region: base at the top, GrowFV enlarged
	baseOff uint64 // where the base firmware starts in region
	growLen uint64 // planned length of GrowFV, 0 if none
	grow    *guid.GUID
	slot    guid.GUID
	base    []byte // chip to start from, nil: erased
}

func planSPI(s SPISpec) (*spiPlan, error) {
	rs, fw, err := checkLayout(s.ChipSize, s.Regions, s.Fills)
	if err != nil {
		return nil, err
	}
	p := &spiPlan{regions: rs, fills: s.Fills, fw: fw, base: s.Base}
	if s.Base != nil && uint64(len(s.Base)) != s.ChipSize {
		return nil, fmt.Errorf("image: base chip image is %#x bytes, the chip %#x", len(s.Base), s.ChipSize)
	}
	if s.SlotFile != "" {
		if p.slot, err = parseGUID("slot file", s.SlotFile); err != nil {
			return nil, err
		}
	}
	r := rs[fw]
	size := uint64(r.Size)
	base := s.BaseFirmware
	if len(base) == 0 {
		return nil, errors.New("image: base firmware is empty")
	}
	if uint64(len(base)) > size {
		return nil, fmt.Errorf("image: base firmware (%#x bytes) is larger than firmware region %q (%#x bytes)", len(base), r.Name, size)
	}
	fvs := topLevelFVs(base)
	if len(fvs) == 0 {
		return nil, fmt.Errorf("image: base firmware (%d bytes) is not a UEFI image: no firmware volume header found", len(base))
	}
	p.region = bytes.Repeat([]byte{0xFF}, int(size))
	p.baseOff = size - uint64(len(base))
	if s.GrowFV == "" {
		copy(p.region[p.baseOff:], base)
		return p, nil
	}
	g, err := parseGUID("volume to grow", s.GrowFV)
	if err != nil {
		return nil, err
	}
	p.grow = &g
	var h *fvHeader
	var names []string
	for i := range fvs {
		names = append(names, fmt.Sprintf("%v at %#x", fvs[i].Name, fvs[i].Offset))
		if fvs[i].Name == g && h == nil {
			h = &fvs[i]
		}
	}
	if h == nil {
		return nil, fmt.Errorf("image: base firmware has no top-level volume %v to grow (found: %s)", g, strings.Join(names, ", "))
	}
	if h.Offset != 0 {
		return nil, fmt.Errorf("image: volume %v starts at %#x of the base firmware; only a volume at offset 0 can grow downwards", g, h.Offset)
	}
	// The volume keeps its header and files at the bottom of the region;
	// everything above it in the base (SECFV) stays byte for byte at the top.
	p.growLen = size - uint64(len(base)) + h.Length
	p.baseOff = 0
	copy(p.region, base[:h.Length])
	copy(p.region[p.growLen:], base[h.Length:])
	if err := growFV(p.region, *h, p.growLen); err != nil {
		return nil, fmt.Errorf("image: grow volume to fill region %q: %w", r.Name, err)
	}
	return p, nil
}

// chip places the firmware region and then the fills (regions nested in
// the firmware region included) into the base chip or an erased one.
// A non-preserved region is erased before its fill, a preserved one keeps
// the base chip's bytes.
func (p *spiPlan) chip(size uint64, region []byte) []byte {
	var out []byte
	if p.base != nil {
		out = append([]byte(nil), p.base...)
	} else {
		out = bytes.Repeat([]byte{0xFF}, int(size))
	}
	fw := p.regions[p.fw]
	copy(out[fw.Start:fw.Start+fw.Size], region)
	for i, r := range p.regions {
		if i == p.fw || r.Preserve {
			continue
		}
		if !inside(r, fw) {
			fill(out[r.Start:r.Start+r.Size], 0xFF)
		}
		copy(out[r.Start:], p.fills[r.Name])
	}
	return out
}

func fill(b []byte, v byte) {
	for i := range b {
		b[i] = v
	}
}

// inside reports whether region r lies within region o.
func inside(r, o boardcfg.Region) bool { return r.Name != o.Name && o.Contains(r) }

// checkNested makes sure the regions nested in the firmware region lie in
// its free space: erased bytes outside every firmware volume.
func (p *spiPlan) checkNested() error {
	fw := p.regions[p.fw]
	fvs := topLevelFVs(p.region)
	for _, r := range p.regions {
		if !inside(r, fw) {
			continue
		}
		lo, hi := uint64(r.Start-fw.Start), uint64(r.End()-fw.Start)+1
		for _, v := range fvs {
			if lo < uint64(v.Offset)+v.Length && uint64(v.Offset) < hi {
				return fmt.Errorf("image: region %q (%#x-%#x) overlaps firmware volume %v (%#x-%#x of region %q): put it in the free space of the firmware region",
					r.Name, uint64(r.Start), uint64(r.End()), v.Name, uint64(fw.Start)+uint64(v.Offset), uint64(fw.Start)+uint64(v.Offset)+v.Length-1, fw.Name)
			}
		}
		for i := lo; i < hi; i++ {
			if p.region[i] != 0xFF {
				return fmt.Errorf("image: region %q (%#x-%#x) is not free in the base firmware: byte %#x is %#02x, not erased; put it where the firmware region is erased",
					r.Name, uint64(r.Start), uint64(r.End()), uint64(fw.Start)+i, p.region[i])
			}
		}
	}
	return nil
}

// BuildSPI returns the chip image: base firmware with the payload in the
// slot file, laid out per s.Regions. Nothing but the slot's PE32 section
// and the enlargement of GrowFV changes; every volume keeps its size. It
// ends when ctx does (see fianoCtx).
func BuildSPI(ctx context.Context, s SPISpec) ([]byte, error) {
	return buildSPICtx(ctx, s, pinnedXZ)
}

func buildSPI(s SPISpec, xzPath string) ([]byte, error) {
	return buildSPICtx(context.Background(), s, xzPath)
}

func buildSPICtx(ctx context.Context, s SPISpec, xzPath string) ([]byte, error) {
	if s.SlotFile == "" {
		out, _, err := buildLaunched(ctx, s, xzPath)
		return out, err
	}
	p, err := planSPI(s)
	if err != nil {
		return nil, err
	}
	if err := checkPE("flash payload", s.Payload); err != nil {
		return nil, err
	}
	var region []byte
	err = fianoCtx(ctx, xzPath, func(l *fianoLogger) error {
		t, err := openSlot(p, l)
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		bound, err := t.slotBound()
		if err != nil {
			return err
		}
		if n := int64(len(s.Payload)); n > bound {
			return &BudgetError{Slot: s.SlotFile, Payload: n, Budget: bound, Exact: true, Limit: t.slotLimit()}
		}
		if err := t.setPayload(s.Payload); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		used, err := t.assemble()
		if err != nil {
			return err
		}
		if used > t.planned {
			n := int64(len(s.Payload))
			return &BudgetError{Slot: s.SlotFile, Payload: n, Budget: n - int64(used-t.planned), Exact: false,
				Limit: fmt.Sprintf("volume %v holds %#x bytes; its compressed content needs %#x", t.container, t.planned, used)}
		}
		region = t.region()
		return nil
	})
	if err != nil {
		if errors.Is(err, errFiano) {
			return nil, fmt.Errorf("image: base firmware: %w", err)
		}
		return nil, err
	}
	out := p.chip(s.ChipSize, region)
	if uint64(len(out)) != s.ChipSize {
		return nil, fmt.Errorf("image: internal: chip image is %#x bytes, want %#x", len(out), s.ChipSize)
	}
	return out, nil
}

// fianoCtx runs withFiano so that ctx ends the wait. fiano takes no context
// and one of its steps (LZMA over FVMAIN_COMPACT with a full slot) runs for
// 15 s, so checks between the steps alone would not make Ctrl-C prompt: on
// cancellation fianoCtx returns ctx.Err() at once and the abandoned run
// finishes in the background (fn checks ctx between steps, so it stops at
// the next one) and its result is dropped. It holds fianoMu until then,
// so a later fiano call waits for it; fiano writes no files, so nothing it
// leaves behind can be mistaken for output.
func fianoCtx(ctx context.Context, xzPath string, fn func(l *fianoLogger) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- withFiano(xzPath, fn) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// SlotBudget returns the largest payload PE (in bytes) that fits the slot
// file of s; s.Payload is ignored. The bound is exact when it comes from the
// volume that holds the slot (DXEFV must keep its size). When compression
// of an enclosing volume binds instead, it is estimated for incompressible
// data by compressing probe payloads (several seconds per probe), the
// slowest fiano work there is; it ends when ctx does (see fianoCtx).
func SlotBudget(ctx context.Context, s SPISpec) (int64, error) {
	b, _, _, err := slotBudgetCtx(ctx, s, pinnedXZ)
	return b, err
}

func slotBudget(s SPISpec, xzPath string) (budget int64, exact bool, limit string, err error) {
	return slotBudgetCtx(context.Background(), s, xzPath)
}

func slotBudgetCtx(ctx context.Context, s SPISpec, xzPath string) (budget int64, exact bool, limit string, err error) {
	p, err := planSPI(s)
	if err != nil {
		return 0, false, "", err
	}
	// The results are read only once fn has returned: an abandoned run
	// (fianoCtx) may still be writing them.
	var res struct {
		budget int64
		exact  bool
		limit  string
	}
	err = fianoCtx(ctx, xzPath, func(l *fianoLogger) error {
		t, err := openSlot(p, l)
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		res.budget, res.exact, res.limit, err = t.budget()
		return err
	})
	if cerr := ctx.Err(); cerr != nil && errors.Is(err, cerr) {
		return 0, false, "", err
	}
	budget, exact, limit = res.budget, res.exact, res.limit
	if err != nil && errors.Is(err, errFiano) {
		err = fmt.Errorf("image: base firmware: %w", err)
	}
	return budget, exact, limit, err
}

// assembleFV runs fiano's Assemble on one volume; split out so the budget
// probes and the build share it.
func assembleFV(fv *uefi.FirmwareVolume) error {
	return (&visitors.Assemble{}).Run(fv)
}
