package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"

	"github.com/fwbuild/fwbuild/boardcfg"
	"github.com/fwbuild/fwbuild/launcher"
)

// defaultLauncherSize is the launcher file Fit tries when FitSpec gives
// none: the bound the launcher package holds its built file to.
const defaultLauncherSize = launcher.MaxFFSSize

// fitMaxTries bounds the removal sets Fit tries: each one recompresses
// the volume holding the DXE volume (seconds for OVMF).
const fitMaxTries = 6

// FitSpec is the question Fit answers: does fwbuild's launcher (and the
// flash payload) fit this firmware, and what would have to go if not.
type FitSpec struct {
	// Firmware is a BIOS-region image or a full chip image; of a chip with
	// an Intel flash descriptor only the BIOS region is looked at.
	Firmware []byte
	// LauncherSize is the size of the launcher FFS file to try; 0 picks
	// a default above what the built launcher needs.
	LauncherSize int
	// PayloadSize is the flash payload's size in bytes (0: unknown).
	PayloadSize int64
	// ChipSize, Regions and PayloadRegion are the board's chip layout, to
	// check the payload against its region; without them Fit looks for
	// erased space in the firmware region.
	ChipSize      uint64
	Regions       []boardcfg.Region
	PayloadRegion string
	// Remove are files (GUIDs or UI names) the board drops already.
	Remove []string
}

// FitReport is Fit's answer, for a person (Text) or a program (JSON).
type FitReport struct {
	Size       int    `json:"size"`        // bytes of the firmware given
	Descriptor bool   `json:"descriptor"`  // it has an Intel flash descriptor
	BIOSOffset uint64 `json:"bios_offset"` // where its BIOS region starts
	BIOSSize   uint64 `json:"bios_size"`
	// Volumes are every firmware volume, nested ones too, with their free
	// space before and after the edit that fits (as now if none does).
	Volumes   []FitVolume `json:"volumes"`
	DXEVolume string      `json:"dxe_volume"`
	Launcher  FitLauncher `json:"launcher"`
	Payload   *FitPayload `json:"payload,omitempty"`
	// Removed are the files FitSpec.Remove dropped.
	Removed []FitFile `json:"removed,omitempty"`
	// Candidates are the DXE volume's files whose UI names say they are
	// optional features, largest first.
	Candidates []FitFile `json:"removal_candidates"`
	// Fits: the launcher fits with FitSpec.Remove and, with a chip
	// layout and a payload size, the payload fits its region. Without a
	// layout the payload's place is only a suggestion (the board's layout
	// can give it a region of its own), so it does not count.
	Fits    bool     `json:"fits"`
	Verdict []string `json:"verdict"`
}

// FitVolume is one firmware volume in a FitReport.
type FitVolume struct {
	Name       string `json:"name"`
	Path       string `json:"path,omitempty"` // enclosing volumes, outermost first
	Offset     uint64 `json:"offset"`         // in the BIOS region (top-level volumes)
	Length     uint64 `json:"length"`
	FreeBefore uint64 `json:"free_before"`
	FreeAfter  uint64 `json:"free_after"`
	Compressed bool   `json:"compressed"` // inside a compressed section
	TopLevel   bool   `json:"top_level"`
	DXE        bool   `json:"dxe"` // holds the DXE core: the launcher goes here
}

// FitLauncher says whether the launcher fits.
type FitLauncher struct {
	Size int  `json:"size"`
	Fits bool `json:"fits"` // with FitSpec.Remove and nothing else
	// Where is the volume that receives it (with its enclosing volumes).
	Where string `json:"where"`
	// When it does not fit: the volume that ran out of room and by how
	// many bytes (for a compressed volume, compressed bytes).
	FullVolume string `json:"full_volume,omitempty"`
	ShortBy    uint64 `json:"short_by,omitempty"`
	// Remove are the candidates (GUIDs) whose removal made it fit, tried
	// largest first; empty if it fits as it is or no tried set fits.
	Remove []string `json:"remove,omitempty"`
}

// FitPayload says whether the flash payload fits its place.
type FitPayload struct {
	Region     string `json:"region,omitempty"` // layout region, or "" for free space of the firmware region
	Start      uint64 `json:"start"`            // in the chip (layout) or in the image given
	RegionSize uint64 `json:"region_size"`
	Size       int64  `json:"size"` // 0: unknown
	Headroom   int64  `json:"headroom"`
	Fits       bool   `json:"fits"`
	Note       string `json:"note,omitempty"`
}

// FitFile is a firmware file in a FitReport.
type FitFile struct {
	GUID   string `json:"guid"`
	Name   string `json:"name,omitempty"`
	Size   uint64 `json:"size"`
	Reason string `json:"reason,omitempty"`
}

// optionalFiles names, by UI name, the features a server firmware can
// usually do without. Anything else in the DXE volume may be needed to
// boot, so Fit never suggests it.
var optionalFiles = []struct {
	re     *regexp.Regexp
	reason string
}{
	{regexp.MustCompile(`(?i)^(shell|shellfull|shellmin|uefishell)$`), "UEFI Shell"},
	{regexp.MustCompile(`(?i)dynamiccommand$`), "UEFI Shell command"},
	{regexp.MustCompile(`(?i)^(snp|mnp|arp|dhcp[46]?|ip[46]|udp[46]|tcp|tcp[46]|mtftp[46]|dns|http|httpboot|httputilities|tls|iscsi|pxebc|uefipxebc|vlanconfig|wificonnectionmanager)(dxe)?$`), "network stack"},
	{regexp.MustCompile(`(?i)^(uiapp|setupbrowser|displayengine|bootmanagermenuapp|drivermanager|drivermanagerdxe|devicemanager|frontpage|setup|setupdxe|driversample|driversampledxe|secureboot(config)?dxe)$`), "setup UI"},
	{regexp.MustCompile(`(?i)logo`), "boot logo"},
	// Not every "Legacy" prefix: LegacySioDxe drives the Super I/O
	// (serial console, PS/2 keyboard).
	{regexp.MustCompile(`(?i)^(csm|legacybios|legacyregion|biosvideo)`), "legacy BIOS (CSM)"},
}

func optionalReason(f FileUse) string {
	if f.GUID == "7C04A583-9E3E-4F1C-AD65-E05268D0B4D1" {
		return "UEFI Shell"
	}
	for _, o := range optionalFiles {
		if f.Name != "" && o.re.MatchString(f.Name) {
			return o.reason
		}
	}
	return ""
}

// Fit tries fwbuild's edit on a copy of the firmware and reports whether
// the launcher fits its DXE volume, where the payload would go and which
// optional files would make room. It writes nothing. A firmware without
// room is a report that says so; a firmware fwbuild cannot edit
// (unsupported volume formats or compression, no DXE core) is an error.
func Fit(ctx context.Context, s FitSpec) (*FitReport, error) {
	if len(s.Firmware) == 0 {
		return nil, errors.New("image: fit: the firmware is empty")
	}
	if s.LauncherSize < 0 || s.PayloadSize < 0 {
		return nil, fmt.Errorf("image: fit: launcher size %d and payload size %d must not be negative", s.LauncherSize, s.PayloadSize)
	}
	if s.LauncherSize == 0 {
		s.LauncherSize = defaultLauncherSize
	}
	region, off, desc, err := biosRegion(s.Firmware)
	if err != nil {
		return nil, err
	}
	ffs, err := fitLauncherFFS(s.LauncherSize)
	if err != nil {
		return nil, err
	}
	r := &FitReport{Size: len(s.Firmware), Descriptor: desc, BIOSOffset: off, BIOSSize: uint64(len(region)), Launcher: FitLauncher{Size: len(ffs)}}
	if r.Payload, err = fitPayload(s, region, off); err != nil {
		return nil, err
	}

	// One fianoCtx for every try: the results are read only after it
	// returns, since an abandoned run may still be writing them.
	var res struct {
		base, fit *EditReport
		removed   []FileUse // what s.Remove dropped
		noRoom    *NoRoomError
		cands     []FitFile
		remove    []string
	}
	err = fianoCtx(ctx, pinnedXZ, func(l *fianoLogger) error {
		try := func(remove []string) (*EditReport, error) {
			resetErasePolarity()
			_, rep, err := editFirmware(bytes.Clone(region), [][]byte{ffs}, remove, l)
			return rep, err
		}
		// Parsing alone (nothing to insert or remove rebuilds nothing)
		// gives the volumes and files as they are.
		_, base, err := editFirmware(bytes.Clone(region), nil, nil, l)
		if err != nil {
			return err
		}
		res.base = base
		rep, err := try(s.Remove)
		if rep != nil {
			res.removed = rep.Removed
		}
		if err == nil {
			res.fit = rep
			return nil
		}
		if !errors.As(err, &res.noRoom) {
			return err
		}
		res.cands = candidates(base.DXEFiles, s.Remove)
		// Removing less than the shortfall cannot help where sizes are
		// exact (an uncompressed volume); in a compressed one a file
		// frees less than its size, so larger sets are tried after it.
		k, sum := 0, uint64(0)
		for k < len(res.cands) && sum < res.noRoom.Need-res.noRoom.Have {
			sum += res.cands[k].Size
			k++
		}
		for tries := 0; k <= len(res.cands) && k > 0 && tries < fitMaxTries; k, tries = k+1, tries+1 {
			if err := ctx.Err(); err != nil {
				return err
			}
			var set []string
			for _, c := range res.cands[:k] {
				set = append(set, c.GUID)
			}
			rep, err := try(append(slices.Clone(s.Remove), set...))
			if err == nil {
				res.fit, res.remove = rep, set
				return nil
			}
			if !errors.As(err, new(*NoRoomError)) {
				return err
			}
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, errFiano) {
			return nil, fmt.Errorf("image: fit: the firmware: %w", err)
		}
		return nil, err
	}
	vols := res.base.Volumes
	if res.fit != nil {
		vols = res.fit.Volumes
	}
	for _, v := range vols {
		r.Volumes = append(r.Volumes, FitVolume{Name: v.Name, Path: v.Path, Offset: v.Offset, Length: v.Length, FreeBefore: v.FreeBefore,
			FreeAfter: v.FreeAfter, Compressed: v.Compressed, TopLevel: v.TopLevel, DXE: v.DXE})
		if v.DXE {
			r.DXEVolume = v.Name
			r.Launcher.Where = strings.TrimPrefix(v.Path+"/"+v.Name, "/")
		}
	}
	for _, f := range res.removed {
		r.Removed = append(r.Removed, fitFile(f))
	}
	r.Candidates = candidates(res.base.DXEFiles, s.Remove)
	if res.noRoom == nil {
		r.Launcher.Fits = true
	} else {
		r.Launcher.FullVolume, r.Launcher.ShortBy = res.noRoom.Volume, res.noRoom.Need-res.noRoom.Have
		r.Launcher.Remove = res.remove
	}
	r.Fits = r.Launcher.Fits && (r.Payload == nil || r.Payload.Region == "" || r.Payload.Size == 0 || r.Payload.Fits)
	r.Verdict = r.verdict(res.cands, len(res.remove) == 0 && res.noRoom != nil)
	return r, nil
}

func fitFile(f FileUse) FitFile {
	return FitFile{GUID: f.GUID, Name: f.Name, Size: f.Size, Reason: optionalReason(f)}
}

// candidates are the optional files of dxe (largest first, as dxe is)
// that remove does not drop already.
func candidates(dxe []FileUse, remove []string) []FitFile {
	var out []FitFile
	for _, f := range dxe {
		gone := slices.ContainsFunc(remove, func(n string) bool {
			return strings.EqualFold(n, f.GUID) || f.Name != "" && strings.EqualFold(n, f.Name)
		})
		if ff := fitFile(f); ff.Reason != "" && !gone {
			out = append(out, ff)
		}
	}
	return out
}

func (r *FitReport) verdict(cands []FitFile, noSet bool) []string {
	var v []string
	l := r.Launcher
	switch {
	case l.Fits:
		v = append(v, fmt.Sprintf("the launcher (%d bytes) fits in DXE volume %s", l.Size, l.Where))
	case len(l.Remove) > 0:
		var names []string
		for _, g := range l.Remove {
			for _, c := range r.Candidates {
				if c.GUID == g {
					names = append(names, fileLabel(c))
				}
			}
		}
		v = append(v, fmt.Sprintf("the launcher (%d bytes) does not fit: volume %s is %d bytes short", l.Size, l.FullVolume, l.ShortBy),
			fmt.Sprintf("removing %s makes it fit: list them in outputs.spi.remove (or try `fwbuild fit --remove`)", strings.Join(names, ", ")))
	default:
		msg := fmt.Sprintf("the launcher (%d bytes) does not fit: volume %s is %d bytes short", l.Size, l.FullVolume, l.ShortBy)
		v = append(v, msg)
		switch {
		case len(cands) == 0:
			v = append(v, "the DXE volume has no file known to be optional: remove drivers the board does not need with --remove, after checking what they do")
		case noSet:
			v = append(v, fmt.Sprintf("removing up to %d of the optional files below does not make room: remove more with --remove, after checking what they do", min(len(cands), fitMaxTries)))
		}
	}
	if p := r.Payload; p != nil {
		where := "region " + p.Region
		if p.Region == "" {
			where = fmt.Sprintf("the erased space at %#x of the firmware region", p.Start)
		}
		switch {
		case p.RegionSize == 0:
			v = append(v, "the payload has no place: "+p.Note)
		case p.Size == 0:
			v = append(v, fmt.Sprintf("the payload can take up to %d bytes in %s", p.RegionSize, where))
		case p.Fits:
			v = append(v, fmt.Sprintf("the payload (%d bytes) fits in %s with %d bytes to spare", p.Size, where, p.Headroom))
		default:
			v = append(v, fmt.Sprintf("the payload (%d bytes) does not fit in %s: %d bytes over", p.Size, where, -p.Headroom))
		}
		if p.Note != "" && p.RegionSize != 0 {
			v = append(v, "payload: "+p.Note)
		}
	}
	return v
}

func fileLabel(f FitFile) string {
	n := f.Name
	if n == "" {
		n = f.GUID
	}
	return fmt.Sprintf("%s (%s, %d bytes)", n, f.Reason, f.Size)
}

// fitLauncherFFS is a stand-in for the launcher of size bytes: its file
// GUID, type, depex and UI name, with a PE32 section of random bytes, so
// that a compressed volume is charged the most the real one could cost.
func fitLauncherFFS(size int) ([]byte, error) {
	g, err := launcher.GUIDBytes(launcher.FileGUID)
	if err != nil {
		return nil, err
	}
	var ui []byte
	for _, c := range launcher.Name + "\x00" {
		ui = append(ui, byte(c), 0)
	}
	depex := []byte{0x06, 0x08} // TRUE END
	build := func(pe []byte) ([]byte, error) {
		return launcher.File(g, 0x07, [][2][]byte{{{0x13}, depex}, {{0x10}, pe}, {{0x15}, ui}})
	}
	empty, err := build(nil)
	if err != nil {
		return nil, err
	}
	if size < len(empty)+64 {
		return nil, fmt.Errorf("image: fit: launcher size %d is smaller than a launcher file can be (%d bytes)", size, len(empty)+64)
	}
	pe := make([]byte, size-len(empty))
	// A fixed seed: the same firmware gets the same answer every time.
	_, _ = rand.NewChaCha8([32]byte{'f', 'w', 'b', 'u', 'i', 'l', 'd'}).Read(pe)
	copy(pe, "MZ")
	return build(pe)
}

// fitPayload places the payload: in its layout region if the spec has a
// layout, else in the largest erased, 4 KiB-aligned stretch of the
// firmware region outside its volumes (where a nested region can go).
func fitPayload(s FitSpec, region []byte, off uint64) (*FitPayload, error) {
	if len(s.Regions) == 0 {
		if s.PayloadRegion != "" {
			return nil, fmt.Errorf("image: fit: payload region %q given without the chip layout (regions) it is in", s.PayloadRegion)
		}
		if s.PayloadSize == 0 {
			return nil, nil
		}
		p := &FitPayload{Size: s.PayloadSize}
		start, n := erasedGap(region)
		if n == 0 {
			p.Note = "the firmware region has no erased space outside its volumes: give the payload a region of its own in the chip layout"
		} else {
			p.Start, p.RegionSize = off+start, n
			p.Note = "no layout given: this is the largest erased space in the firmware region, where a nested payload region can go"
		}
		p.Headroom = int64(p.RegionSize) - p.Size
		p.Fits = p.RegionSize > 0 && p.Headroom >= 0
		return p, nil
	}
	rs, fw, err := checkLayout(s.ChipSize, s.Regions, nil)
	if err != nil {
		return nil, fmt.Errorf("image: fit: %w", err)
	}
	if s.PayloadRegion == "" {
		if s.PayloadSize == 0 {
			return nil, nil
		}
		return nil, errors.New("image: fit: a payload size with a chip layout needs the payload region's name")
	}
	i := slices.IndexFunc(rs, func(r boardcfg.Region) bool { return r.Name == s.PayloadRegion })
	if i < 0 {
		var names []string
		for _, r := range rs {
			names = append(names, r.Name)
		}
		return nil, fmt.Errorf("image: fit: payload region %q is not in the layout (regions: %s)", s.PayloadRegion, strings.Join(names, ", "))
	}
	pr := rs[i]
	if pr.Preserve || pr.Firmware {
		return nil, fmt.Errorf("image: fit: payload region %q is the firmware region or preserved: give the payload a region of its own", pr.Name)
	}
	p := &FitPayload{Region: pr.Name, Start: uint64(pr.Start), RegionSize: uint64(pr.Size), Size: s.PayloadSize}
	p.Headroom = int64(p.RegionSize) - p.Size
	p.Fits = p.Headroom >= 0
	// Intel chipsets map only the top 16 MiB of the BIOS region below
	// 4 GiB, where the launcher reads the payload.
	if top := uint64(rs[fw].End()) + 1; uint64(pr.Start)+boardcfg.MappedWindow < top {
		p.Note = fmt.Sprintf("region %q starts more than 16 MiB below the end of firmware region %q: Intel chipsets map only the top 16 MiB, so the launcher may not read it", pr.Name, rs[fw].Name)
	}
	return p, nil
}

// erasedGap returns the largest run of erased (0xFF) 4 KiB blocks of
// region that lies outside every top-level volume.
func erasedGap(region []byte) (start, n uint64) {
	used := make([]bool, (len(region)+eraseBlock-1)/eraseBlock)
	for _, v := range topLevelFVs(region) {
		for b := v.Offset / eraseBlock; b < len(used) && uint64(b*eraseBlock) < uint64(v.Offset)+v.Length; b++ {
			used[b] = true
		}
	}
	erased := func(b int) bool {
		blk := region[b*eraseBlock : min((b+1)*eraseBlock, len(region))]
		return len(blk) == eraseBlock && bytes.Count(blk, []byte{0xFF}) == len(blk)
	}
	var runStart, runLen uint64
	for b := range used {
		if used[b] || !erased(b) {
			runLen = 0
			continue
		}
		if runLen == 0 {
			runStart = uint64(b) * eraseBlock
		}
		runLen += eraseBlock
		if runLen > n {
			start, n = runStart, runLen
		}
	}
	return start, n
}

// biosRegion returns the BIOS region of a chip image with an Intel flash
// descriptor and its offset, or b itself when there is no descriptor.
func biosRegion(b []byte) (region []byte, off uint64, desc bool, err error) {
	if !HasDescriptor(b) {
		return b, 0, false, nil
	}
	regions, err := ReadDescriptor(b)
	if err != nil {
		return nil, 0, true, fmt.Errorf("image: fit: %w", err)
	}
	for _, r := range regions {
		if r.Index == ifdBIOS {
			return b[r.Start:r.end()], r.Start, true, nil
		}
	}
	// ReadDescriptor refuses a descriptor without a BIOS region.
	return nil, 0, true, errors.New("image: fit: the flash descriptor has no BIOS region: this chip image has no UEFI firmware to fit into")
}

// Text renders the report for a person.
func (r *FitReport) Text() string {
	var b strings.Builder
	if r.Descriptor {
		fmt.Fprintf(&b, "firmware: %d bytes, Intel flash descriptor, BIOS region at %#x (%d bytes)\n", r.Size, r.BIOSOffset, r.BIOSSize)
	} else {
		fmt.Fprintf(&b, "firmware: %d bytes (a BIOS region)\n", r.Size)
	}
	if len(r.Launcher.Remove) > 0 {
		b.WriteString("volumes (free bytes now -> with the launcher and the removals the verdict suggests):\n")
	} else {
		b.WriteString("volumes (free bytes now -> with the launcher):\n")
	}
	for _, v := range r.Volumes {
		depth := 1
		if v.Path != "" {
			depth += strings.Count(v.Path, "/") + 1
		}
		at := fmt.Sprintf("offset %#x ", v.Offset)
		if !v.TopLevel {
			at = ""
		}
		var tags []string
		if v.Compressed {
			tags = append(tags, "compressed")
		}
		if v.DXE {
			tags = append(tags, "DXE")
		}
		tag := ""
		if len(tags) > 0 {
			tag = " [" + strings.Join(tags, ", ") + "]"
		}
		fmt.Fprintf(&b, "%s%s %slength %#x free %d -> %d%s\n", strings.Repeat("  ", depth), v.Name, at, v.Length, v.FreeBefore, v.FreeAfter, tag)
	}
	for _, f := range r.Removed {
		fmt.Fprintf(&b, "removed: %s %s (%d bytes)\n", f.Name, f.GUID, f.Size)
	}
	if len(r.Candidates) > 0 {
		b.WriteString("removal candidates (largest first):\n")
		for _, f := range r.Candidates {
			fmt.Fprintf(&b, "  %-24s %s %8d bytes  %s\n", f.Name, f.GUID, f.Size, f.Reason)
		}
	}
	if r.Fits {
		b.WriteString("verdict: fits\n")
	} else {
		b.WriteString("verdict: does not fit\n")
	}
	for _, v := range r.Verdict {
		fmt.Fprintf(&b, "  %s\n", v)
	}
	return b.String()
}
