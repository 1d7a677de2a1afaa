package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fwbuild/fwbuild/boardcfg"
	"github.com/fwbuild/fwbuild/contract/bundle"
	"github.com/fwbuild/fwbuild/image"
	"github.com/fwbuild/fwbuild/launcher"
)

// SPISpec maps a board's SPI output to the image stage's inputs, with
// payload as the flash payload and guests (a bundle.Encode) as the
// content of the guests region, if the board has one. A board whose
// payload is started by the launcher gets it built (with the payload's
// SHA-256 pinned) and inserted; tmp is its scratch space.
func SPISpec(ctx context.Context, b *boardcfg.Board, comps Components, payload, guests []byte, tmp string) (image.SPISpec, error) {
	s := b.Outputs.SPI
	if s == nil {
		return image.SPISpec{}, fmt.Errorf("spi: board %s has no outputs.spi", b.Name)
	}
	spec := image.SPISpec{ChipSize: uint64(s.ChipSize), Regions: s.Regions, Fills: map[string][]byte{},
		GrowFV: string(s.GrowVolume), SlotFile: string(s.PayloadFile), Payload: payload, Remove: s.Remove}
	var err error
	if spec.BaseFirmware, err = baseFirmware(b, comps); err != nil {
		return spec, err
	}
	if s.Descriptor == boardcfg.DescriptorImage {
		// A full-chip image: its descriptor gives the layout, and every
		// byte outside the BIOS region stays as it is.
		chip := spec.BaseFirmware
		if uint64(len(chip)) != uint64(s.ChipSize) {
			return spec, fmt.Errorf("spi: base firmware (%s) is a %d-byte image, the chip %v (outputs.spi.chip_size): give the full-chip image or the chip's size",
				b.Loc("outputs.spi.firmware"), len(chip), s.ChipSize)
		}
		if spec.Regions, err = image.ChipLayout(chip, s.Regions); err != nil {
			return spec, fmt.Errorf("spi: layout from the flash descriptor of the base firmware (%s): %w", b.Loc("outputs.spi.firmware"), err)
		}
		i := slices.IndexFunc(spec.Regions, func(r boardcfg.Region) bool { return r.Firmware })
		bios := spec.Regions[i]
		spec.Base, spec.BaseFirmware = chip, chip[bios.Start:bios.Start+bios.Size]
	}
	for i, reg := range s.Regions {
		if reg.Guests {
			spec.Fills[reg.Name] = guests
		}
		if reg.Fill != "" {
			c, role, _ := strings.Cut(reg.Fill, ":")
			if spec.Fills[reg.Name], err = comps.Read(c, role, b); err != nil {
				return spec, fmt.Errorf("spi: region %s fill (%s): %w", reg.Name, b.Loc(fmt.Sprintf("outputs.spi.regions[%d].fill", i)), err)
			}
		}
	}
	if s.Descriptor == boardcfg.DescriptorGenerate {
		if spec.Base, err = descriptorChip(s); err != nil {
			return spec, fmt.Errorf("spi: %s: %w", b.Loc("outputs.spi.descriptor"), err)
		}
	}
	if s.Payload == "" {
		return spec, nil
	}
	pin := launcher.Pin{Size: uint64(len(payload)), SHA256: launcher.PayloadHash(payload), Description: "fwbuild " + b.Name}
	switch s.Payload {
	case boardcfg.PayloadRegion:
		reg, _ := s.PayloadRegion()
		spec.PayloadRegion = reg.Name
		if uint64(len(payload)) > uint64(reg.Size) {
			// No launcher for a payload that cannot fit: the size table says why.
			return spec, nil
		}
		if pin.Address, err = s.CPUAddress(reg); err != nil {
			return spec, fmt.Errorf("spi: payload region: %w", err)
		}
		pin.Source = launcher.FromRegion
		if slots := s.PayloadSlots(); len(slots) == 2 {
			// The factory writes the same payload into both slots, so
			// either boots; the launcher pins one hash for both.
			sb := slots[1]
			if uint64(len(payload)) > uint64(sb.Size) {
				return spec, fmt.Errorf("spi: the payload's %d bytes do not fit payload slot b, region %s (%#x bytes, %s): give both slots the same size",
					len(payload), sb.Name, uint64(sb.Size), b.Loc("outputs.spi.regions"))
			}
			if pin.AddressB, err = s.CPUAddress(sb); err != nil {
				return spec, fmt.Errorf("spi: payload slot b: %w", err)
			}
			spec.Fills[sb.Name] = payload
		}
	case boardcfg.PayloadVolume:
		pin.Source = launcher.FromFile
		if pin.File, err = launcher.GUIDBytes(launcher.PayloadFileGUID); err != nil {
			return spec, err
		}
		ffs, err := launcher.PayloadFFS(payload)
		if err != nil {
			return spec, fmt.Errorf("spi: %w", err)
		}
		spec.Insert = append(spec.Insert, ffs)
		spec.Payload = nil
	}
	gnuefi, ok := comps[s.LauncherComponent()]
	if !ok {
		return spec, fmt.Errorf("spi: launcher: the board has no component %q to build the launcher with (%s): pin Debian's gnu-efi in components (name: %s) or name its component in outputs.spi.launcher",
			s.LauncherComponent(), b.Loc("outputs.spi.payload"), boardcfg.DefaultLauncher)
	}
	pe, err := launcher.Build(ctx, launcher.Spec{Pin: pin, GnuEFI: gnuefi.Root, TempDir: tmp})
	if err != nil {
		return spec, fmt.Errorf("spi: %w", err)
	}
	ffs, err := launcher.FFS(pe)
	if err != nil {
		return spec, fmt.Errorf("spi: %w", err)
	}
	spec.Insert = append([][]byte{ffs}, spec.Insert...)
	return spec, nil
}

// baseFirmware reads the board's firmware: a component file, or a user's
// image checked against its pinned SHA-256.
func baseFirmware(b *boardcfg.Board, comps Components) ([]byte, error) {
	fw := b.Outputs.SPI.Firmware
	if fw.IsFile() {
		data, err := fw.Read()
		if err != nil {
			return nil, fmt.Errorf("spi: base firmware (%s): %w", b.Loc("outputs.spi.firmware"), err)
		}
		return data, nil
	}
	comp, role, _ := strings.Cut(fw.Ref, ":")
	data, err := comps.Read(comp, role, b)
	if err != nil {
		return nil, fmt.Errorf("spi: base firmware (%s): %w", b.Loc("outputs.spi.firmware"), err)
	}
	return data, nil
}

// descriptorChip is an erased chip with an Intel flash descriptor at 0
// whose region table comes from the regions' kinds (a kind's extent is
// the union of its regions).
func descriptorChip(s *boardcfg.SPI) ([]byte, error) {
	ext := map[string][2]uint64{}
	for _, r := range s.Regions {
		if r.Kind == "" {
			continue
		}
		e, ok := ext[r.Kind]
		lo, hi := uint64(r.Start), uint64(r.Start)+uint64(r.Size)
		if ok {
			lo, hi = min(lo, e[0]), max(hi, e[1])
		}
		ext[r.Kind] = [2]uint64{lo, hi}
	}
	var regs []image.DescriptorRegion
	for _, k := range boardcfg.RegionKinds {
		if e, ok := ext[k]; ok {
			regs = append(regs, image.DescriptorRegion{Kind: k, Start: e[0], Size: e[1] - e[0]})
		}
	}
	fd, err := image.WriteDescriptor(uint64(s.ChipSize), regs)
	if err != nil {
		return nil, err
	}
	chip := bytes.Repeat([]byte{0xFF}, int(s.ChipSize))
	copy(chip, fd)
	return chip, nil
}

func (r *run) spiSpec(ctx context.Context, pay, gst stageResult, tmp string) (image.SPISpec, error) {
	payload, err := pay.read("payload-flash.efi")
	if err != nil {
		return image.SPISpec{}, err
	}
	var region []byte
	if guestsParam(r.Board) != "" {
		archive, err := gst.read("guests.cpio")
		if err != nil {
			return image.SPISpec{}, err
		}
		region = bundle.Encode(archive)
	}
	return SPISpec(ctx, r.Board, r.comps, payload, region, tmp)
}

func (r *run) spi(ctx context.Context, pay stageResult, k kernelOut, ird, gst stageResult) (stageResult, error) {
	b := r.Board
	s := b.Outputs.SPI
	var fwID string
	if s.Firmware.IsFile() {
		fwID = string(s.Firmware.SHA256)
	} else {
		comp, _, _ := strings.Cut(s.Firmware.Ref, ":")
		fw, _ := b.Component(comp)
		fwID = string(fw.SHA256)
	}
	var fills []string
	for _, reg := range s.Regions {
		if reg.Fill != "" {
			c, _, _ := strings.Cut(reg.Fill, ":")
			fc, _ := b.Component(c)
			fills = append(fills, string(fc.SHA256))
		}
	}
	var launcherID []string
	if s.Payload != "" {
		gnuefi, _ := b.Component(s.LauncherComponent())
		launcherID = append(launcherID, string(gnuefi.SHA256), jsonKey(launcher.Sources()), jsonKey(toolVersions(ctx, "gcc", "ld", "objcopy")))
	}
	sk := key("spi/3", r.tool, pay.Key, gst.Key, fwID, jsonKey(s), jsonKey(fills), jsonKey(launcherID))
	return r.stage(ctx, "spi", sk, func(dir string) error {
		tmp, err := os.MkdirTemp(dir, ".launcher-")
		if err != nil {
			return fmt.Errorf("spi: %w", err)
		}
		defer os.RemoveAll(tmp)
		spec, err := r.spiSpec(ctx, pay, gst, tmp)
		if err != nil {
			return err
		}
		// fiano takes no context: image's Context variants end the wait.
		table, berr := r.sizeTable(ctx, spec, k, ird, pay)
		// Errors about the firmware name the component and file the profile chose.
		fwDesc := fmt.Sprintf("base firmware %s (%s)", s.Firmware, b.Loc("outputs.spi.firmware"))
		if berr != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%s: %w", fwDesc, berr)
		}
		if table.Headroom < 0 {
			where := fmt.Sprintf("slot %s (%s)", s.PayloadFile, b.Loc("outputs.spi.payload_file"))
			if spec.PayloadRegion != "" {
				where = fmt.Sprintf("region %s (%s)", spec.PayloadRegion, b.Loc("outputs.spi.regions"))
			}
			return &BudgetError{Table: table, Err: errors.New(where)}
		}
		if g := table.Guests; g != nil && g.Bytes > g.Size {
			i := slices.IndexFunc(s.Regions, func(r boardcfg.Region) bool { return r.Guests })
			field := fmt.Sprintf("outputs.spi.regions[%d]", i)
			return fmt.Errorf("spi: the guests take %d bytes (bundle header included), %d more than region %s holds (%s at %s): make the region larger or the guests fewer or smaller",
				g.Bytes, g.Bytes-g.Size, g.Region, field, b.Loc(field))
		}
		var chip []byte
		var rep *image.EditReport
		if spec.SlotFile != "" {
			chip, err = image.BuildSPI(ctx, spec)
		} else {
			chip, rep, err = image.BuildSPIReport(ctx, spec)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			var be *image.BudgetError
			if errors.As(err, &be) {
				table.Budget, table.Headroom = be.Budget, be.Budget-table.Payload
				return &BudgetError{Table: table, Err: err}
			}
			return fmt.Errorf("spi: %s: %w", fwDesc, err)
		}
		if err := os.WriteFile(filepath.Join(dir, "spi.bin"), chip, 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "spi.layout"), []byte(boardcfg.FlashromLayout(spec.Regions)), 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "flash-map.svg"), image.FlashMapSVG(flashMap(b, spec, rep, table)), 0o644); err != nil {
			return err
		}
		if rep != nil {
			table.Volumes = rep.Volumes
		}
		return writeSizeTable(filepath.Join(dir, "sizes.json"), table)
	})
}

// flashMap is the picture of the chip the build writes next to spi.layout.
func flashMap(b *boardcfg.Board, spec image.SPISpec, rep *image.EditReport, t SizeTable) image.FlashMap {
	m := image.FlashMap{Board: b.Name, ChipSize: spec.ChipSize}
	var fw boardcfg.Region
	for _, reg := range spec.Regions {
		mr := image.MapRegion{Name: reg.Name, Start: uint64(reg.Start), Size: uint64(reg.Size), Used: -1}
		switch {
		case reg.Firmware:
			mr.Kind, fw = "firmware", reg
		case reg.Payload:
			mr.Kind, mr.Used = "payload", t.Payload
			mr.Note = fmt.Sprintf("payload %d bytes, headroom %.0f%%", t.Payload, 100*float64(t.Headroom)/float64(max(t.Budget, 1)))
			if reg.Slot != "" {
				// Each slot's own headroom (the size table's is slot a's).
				mr.Note = fmt.Sprintf("slot %s: payload %d bytes, headroom %.0f%%", reg.Slot, t.Payload,
					100*float64(int64(reg.Size)-t.Payload)/float64(max(int64(reg.Size), 1)))
			}
		case reg.Guests:
			mr.Kind = "guests"
			if t.Guests != nil {
				mr.Used = t.Guests.Bytes
			}
		case reg.Unit:
			mr.Kind = "unit"
			mr.Note = "per-unit record, written by fwbuild provision"
		case reg.Kind != "":
			mr.Kind = reg.Kind
		case reg.Preserve:
			mr.Kind = "preserved"
		}
		if reg.Preserve && reg.Kind != "" {
			mr.Note = "preserved"
		}
		m.Regions = append(m.Regions, mr)
	}
	if rep != nil {
		base := uint64(fw.Start)
		for _, v := range rep.Volumes {
			if v.TopLevel {
				m.Volumes = append(m.Volumes, image.MapVolume{Name: v.Name, Start: base + v.Offset, Size: v.Length, Free: v.FreeAfter, Changed: v.Changed})
			}
		}
	}
	return m
}

func (r *run) sizeTable(ctx context.Context, spec image.SPISpec, k kernelOut, ird, pay stageResult) (SizeTable, error) {
	// The slot's budget does not depend on the guests region, which is
	// checked against its own size after the payload.
	greg, hasRegion := guestsRegion(r.Board)
	bspec := spec
	bspec.Fills = maps.Clone(spec.Fills)
	if hasRegion {
		delete(bspec.Fills, greg.Name)
	}
	var budget int64
	var limit string
	// A payload in the DXE volume travels in spec.Insert, not spec.Payload.
	payloadSize := int64(len(spec.Payload))
	if fi, err := os.Stat(pay.path("payload-flash.efi")); err == nil && payloadSize == 0 {
		payloadSize = fi.Size()
	}
	switch {
	case spec.PayloadRegion != "":
		// The payload's own region bounds it, nothing else.
		i := slices.IndexFunc(spec.Regions, func(r boardcfg.Region) bool { return r.Name == spec.PayloadRegion })
		budget = int64(spec.Regions[i].Size)
		limit = fmt.Sprintf("region %s holds %#x bytes", spec.PayloadRegion, budget)
	case spec.SlotFile == "":
		// An FFS file in the DXE volume: assembling the volume checks it.
		budget, limit = payloadSize, "free space of the DXE volume (checked when the volume is assembled)"
	default:
		var err error
		budget, err = image.SlotBudget(ctx, bspec)
		var be *image.BudgetError
		if errors.As(err, &be) {
			budget, limit = be.Budget, be.Limit
		} else if err != nil {
			return SizeTable{}, fmt.Errorf("spi: size budget: %w", err)
		}
	}
	var members map[string]int64
	data, err := pay.read("flash-members.json")
	if err == nil {
		err = json.Unmarshal(data, &members)
	}
	if err != nil {
		return SizeTable{}, fmt.Errorf("spi: flash payload contents: %w", err)
	}
	xen, _ := r.Board.Component(r.Board.Hypervisor.Xen)
	var parts []SizeRow
	for name, size := range members {
		if strings.HasPrefix(name, "xen.") {
			parts = append(parts, SizeRow{Component: "Xen (" + xen.Version + ", " + name + ")", Bytes: size})
		}
	}
	cd := members["initrd"]
	if fi, err := os.Stat(ird.path("initramfs")); err == nil && fi.Size() < cd {
		cd = fi.Size()
	}
	parts = append(parts,
		SizeRow{Component: "dom0 kernel (" + k.from + ")", Bytes: members["vmlinuz"]},
		SizeRow{Component: "control domain (initramfs, " + string(r.Board.ControlDomain.Compression) + ")", Bytes: cd},
	)
	if g := members["initrd"] - cd; g > 0 {
		what := fmt.Sprintf("guests (%d, appended to the control domain)", len(r.Board.Guests))
		switch {
		case len(r.Board.GuestImages) > 0 && guestsParam(r.Board) != "":
			what = "guest-images manifest (appended to the control domain)"
		case len(r.Board.GuestImages) > 0:
			what = fmt.Sprintf("guests (%d) and guest-images manifest, appended to the control domain", len(r.Board.Guests))
		}
		parts = append(parts, SizeRow{Component: what, Bytes: g})
	}
	t := newSizeTable(parts, payloadSize, budget, limit)
	if hasRegion {
		t.Guests = &RegionUse{Region: greg.Name, Guests: len(r.Board.Guests), Bytes: int64(len(spec.Fills[greg.Name])), Size: int64(greg.Size)}
	}
	return t, nil
}
