package boardcfg

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"golang.org/x/mod/module"
)

// errAt builds an error for field, located at the field itself or, for a
// missing field, at the nearest enclosing value that exists.
func (b *Board) errAt(field, format string, args ...any) error {
	p := field
	for {
		if l, ok := b.locs[p]; ok {
			return &Error{Loc: l, Field: field, Msg: fmt.Sprintf(format, args...)}
		}
		if p == "" {
			return &Error{Loc: Loc{File: b.File}, Field: field, Msg: fmt.Sprintf(format, args...)}
		}
		if i := strings.LastIndexAny(p, ".["); i >= 0 {
			p = p[:i]
		} else {
			p = ""
		}
	}
}

func (b *Board) missing(field string) error {
	return b.errAt(field, "required field is missing")
}

// Upper bounds for sizes with a physical meaning. Besides catching typos
// they keep every later sum and conversion (int64 for file sizes, MiB
// counts in xl configs) far from overflow: a profile is at most 1 MiB, so
// even thousands of guests at maxMemory sum far below 2^64.
const (
	maxMemory   = 1 << 40   // RAM of a board, dom0 or a guest: 1 TiB
	maxChipSize = 256 << 20 // the largest SPI NOR chips
	maxUSBSize  = 64 << 30  // the image is written out whole
	maxVCPUs    = 512
)

// addSat adds sizes, saturating instead of wrapping past 2^64.
func addSat(a, b Size) Size {
	if a > ^Size(0)-b {
		return ^Size(0)
	}
	return a + b
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._+-]*$`)

// maxDescription bounds the one-line description shown by boards and
// written into manifests.
const maxDescription = 256

// checkCmdline applies what every command line of a profile goes through:
// printable ASCII only (hvcore's rule for GRUB and Xen), no quotes or
// backslashes (GRUB and xl configs would change them), at most max bytes.
func checkCmdline(s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("%d bytes long: at most %d", len(s), max)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e {
			return fmt.Errorf("byte %d is %#x: only printable ASCII is allowed", i, c)
		}
	}
	if i := strings.IndexAny(s, `'"\`); i >= 0 {
		return fmt.Errorf("%q at byte %d: quotes and backslashes cannot be passed through GRUB and xl configs unchanged", s[i], i)
	}
	return nil
}

// packagePath reports whether p names a file inside the unpacked packages:
// not empty, no ".." element (it is joined to a package root).
func packagePath(p string) bool {
	if p == "" {
		return false
	}
	for _, e := range strings.Split(p, "/") {
		if e == ".." {
			return false
		}
	}
	return true
}

// maxName bounds board and component names: they name cache entries,
// output files and log lines.
const maxName = 64

// validate checks what decoding cannot: required fields, references between
// sections, and the SPI layout. All problems are reported, not just the first.
func (b *Board) validate() error {
	var errs []error
	add := func(err error) { errs = append(errs, err) }
	req := func(field, v string) {
		if strings.TrimSpace(v) == "" {
			add(b.missing(field))
		}
	}
	cmdline := func(field, v string, max int) {
		if err := checkCmdline(v, max); err != nil {
			add(b.errAt(field, "%v", err))
		}
	}
	req("name", b.Name)
	if b.Name != "" && (!nameRE.MatchString(b.Name) || len(b.Name) > maxName) {
		add(b.errAt("name", "%q: use lower-case letters, digits and - . _ +, at most %d", b.Name, maxName))
	}
	req("description", b.Description)
	if len(b.Description) > maxDescription {
		add(b.errAt("description", "%d bytes long: at most %d (one line)", len(b.Description), maxDescription))
	}
	errs = append(errs, b.validateRelease()...)
	req("arch", b.Arch)
	if b.Arch != "" && b.Arch != "amd64" {
		add(b.errAt("arch", "%q is not supported (only amd64)", b.Arch))
	}

	comps := map[string]Component{}
	if len(b.Components) == 0 {
		add(b.missing("components"))
	}
	for i, c := range b.Components {
		f := fmt.Sprintf("components[%d]", i)
		req(f+".name", c.Name)
		req(f+".package", c.Package)
		req(f+".version", c.Version)
		req(f+".sha256", string(c.SHA256))
		if c.Name != "" && (!nameRE.MatchString(c.Name) || len(c.Name) > maxName) {
			add(b.errAt(f+".name", "%q: a component name is lower-case letters, digits and - . _ +, starting with a letter or digit, at most %d", c.Name, maxName))
		} else if _, dup := comps[c.Name]; dup && c.Name != "" {
			add(b.errAt(f+".name", "component %q is defined twice", c.Name))
		}
		if c.Package != "" {
			if err := CheckPackageName(c.Package); err != nil {
				add(b.errAt(f+".package", "%v", err))
			}
		}
		if c.Version != "" {
			if err := CheckVersion(c.Version); err != nil {
				add(b.errAt(f+".version", "%v", err))
			}
		}
		for _, role := range sortedKeys(c.Files) {
			if !nameRE.MatchString(role) || len(role) > maxName {
				add(b.errAt(f+".files."+role, "role %q: use lower-case letters, digits and - . _ +", role))
			}
			if p := c.Files[role]; strings.HasPrefix(p, "/") || strings.Contains(p, "..") || p == "" {
				add(b.errAt(f+".files."+role, "%q: give a relative path inside the package, without ..", p))
			}
		}
		comps[c.Name] = c
	}
	ref := func(field, name string) {
		if name == "" {
			add(b.missing(field))
		} else if _, ok := comps[name]; !ok {
			add(b.errAt(field, "no component named %q (components: %s)", name, strings.Join(sortedKeys(comps), ", ")))
		}
	}
	refFile := func(field, v string) {
		if v == "" {
			add(b.missing(field))
			return
		}
		name, role, ok := strings.Cut(v, ":")
		if !ok {
			add(b.errAt(field, "%q: want component:role, e.g. ovmf:code", v))
			return
		}
		c, ok := comps[name]
		if !ok {
			add(b.errAt(field, "no component named %q", name))
			return
		}
		if _, ok := c.Files[role]; !ok {
			add(b.errAt(field, "component %q has no file with role %q (add it under its files:)", name, role))
		}
	}

	h := b.Hypervisor
	ref("hypervisor.xen", h.Xen)
	if c, ok := comps[h.Xen]; ok {
		for _, role := range []string{"efi", "gz"} {
			if _, ok := c.Files[role]; !ok {
				add(b.errAt("hypervisor.xen", "component %q needs files.%s (the Xen %s image)", h.Xen, role, role))
			}
		}
	}
	req("hypervisor.options", h.Options)
	// The Xen and dom0 command lines go through GRUB's parser (hvcore
	// refuses the same at build time; here check says so first), and Xen
	// and Linux truncate what is longer than their buffers.
	cmdline("hypervisor.options", h.Options, 1024)
	cmdline("hypervisor.dom0.cmdline", h.Dom0.Cmdline, 2048)
	if h.Dom0.Memory == 0 {
		add(b.missing("hypervisor.dom0.memory"))
	} else if h.Dom0.Memory%(1<<20) != 0 {
		add(b.errAt("hypervisor.dom0.memory", "must be whole MiB"))
	} else if h.Dom0.Memory > maxMemory {
		add(b.errAt("hypervisor.dom0.memory", "%v is more than %v: give dom0 a real amount of RAM, below qemu.memory", h.Dom0.Memory, Size(maxMemory)))
	}
	if h.Dom0.VCPUs < 0 || h.Dom0.VCPUs > maxVCPUs {
		add(b.errAt("hypervisor.dom0.vcpus", "%d: want 0 (the default) to %d", h.Dom0.VCPUs, maxVCPUs))
	}
	k := h.Dom0.Kernel
	kinds := 0
	for _, s := range []string{k.Component, k.Source, k.Path} {
		if s != "" {
			kinds++
		}
	}
	switch {
	case kinds != 1:
		add(b.errAt("hypervisor.dom0.kernel", "give exactly one of component (a Debian kernel package), source (a linux-source component + fragment) or path"))
	case k.Component != "":
		ref("hypervisor.dom0.kernel.component", k.Component)
		if c, ok := comps[k.Component]; ok {
			if _, ok := c.Files["bzimage"]; !ok {
				add(b.errAt("hypervisor.dom0.kernel.component", "component %q needs files.bzimage (and files.config to check Xen dom0 support)", k.Component))
			}
		}
	case k.Source != "":
		for _, err := range b.checkSourceKernel("hypervisor.dom0.kernel", k, comps) {
			add(err)
		}
	}

	cd := b.ControlDomain
	// An uncompressed control domain would not fit any flash payload.
	switch cd.Compression {
	case "":
		add(b.missing("control_domain.compression"))
	case XZ, XZX86, Zstd:
	default:
		add(b.errAt("control_domain.compression", "%q: want xz, xz-x86 (xz with the x86 BCJ filter: smaller, needs CONFIG_XZ_DEC_X86) or zstd", cd.Compression))
	}
	if len(cd.Commands) == 0 {
		add(b.missing("control_domain.commands"))
	}
	// Commands go onto `go list` and the busybox build's command lines: an
	// import path cannot start with '-', so none becomes an option.
	for i, c := range cd.Commands {
		if err := module.CheckImportPath(c); err != nil {
			add(b.errAt(fmt.Sprintf("control_domain.commands[%d]", i), "%q: want the Go import path of a command, e.g. github.com/u-root/u-root/cmds/core/init (%v)", c, err))
		}
	}
	for i, p := range cd.Toolstack.Files {
		if !packagePath(p) {
			add(b.errAt(fmt.Sprintf("control_domain.toolstack.files[%d]", i), "%q: give a path inside the packages, without ..", p))
		}
	}
	for i, p := range cd.Toolstack.Modules {
		if !packagePath(p) {
			add(b.errAt(fmt.Sprintf("control_domain.toolstack.modules[%d]", i), "%q: give a path inside the packages, without ..", p))
		}
	}
	for _, p := range sortedKeys(cd.Toolstack.Symlinks) {
		if !packagePath(p) || cd.Toolstack.Symlinks[p] == "" {
			add(b.errAt("control_domain.toolstack.symlinks."+p, "%q -> %q: give a path in the archive, without .., and a target", p, cd.Toolstack.Symlinks[p]))
		}
	}
	for i, p := range cd.Toolstack.Packages {
		ref(fmt.Sprintf("control_domain.toolstack.packages[%d]", i), p)
	}
	if len(cd.Toolstack.Files) > 0 && len(cd.Toolstack.Packages) == 0 {
		add(b.missing("control_domain.toolstack.packages"))
	}

	if b.Outputs.USB.Size == 0 {
		add(b.missing("outputs.usb.size"))
	} else if b.Outputs.USB.Size < 40<<20 {
		add(b.errAt("outputs.usb.size", "%v is too small: the FAT32 ESP needs at least 34 MiB plus GPT (use 64MiB)", b.Outputs.USB.Size))
	} else if b.Outputs.USB.Size > maxUSBSize {
		add(b.errAt("outputs.usb.size", "%v is more than %v: the image is written out whole (use 64MiB; the key may be larger)", b.Outputs.USB.Size, Size(maxUSBSize)))
	}
	if sb := b.Outputs.SecureBoot; sb != nil {
		refFile("outputs.secure_boot.variables", sb.Variables)
		refFile("outputs.secure_boot.code", sb.Code)
	}
	if s := b.Outputs.SPI; s != nil {
		switch fw := s.Firmware; {
		case fw.Ref != "" && fw.Path != "":
			// Only a Board built in Go can have both; decoding takes one shape.
			add(b.errAt("outputs.spi.firmware", "give either component:role or {path, sha256}, not both"))
		case fw.Path != "":
			// A file: checked with the host files (paths.go).
		default:
			refFile("outputs.spi.firmware", fw.Ref)
		}
		switch {
		case s.ChipSize == 0:
			add(b.missing("outputs.spi.chip_size"))
		case s.ChipSize > maxChipSize:
			add(b.errAt("outputs.spi.chip_size", "%v is more than %v, the largest SPI NOR chips: give the chip's real size", s.ChipSize, Size(maxChipSize)))
		case s.ChipSize%4096 != 0:
			add(b.errAt("outputs.spi.chip_size", "%v is not a multiple of 4KiB (the erase block)", s.ChipSize))
		}
		errs = append(errs, b.validateSPI(s)...)
		errs = append(errs, b.validateRegions(s)...)
	}

	q := b.QEMU
	req("qemu.machine", q.Machine)
	req("qemu.cpu", q.CPU)
	// Both become QEMU option values (-machine, -cpu): a machine type is one
	// name (its comma sub-options are fwbuild's to set), a CPU a model with
	// comma-separated features.
	if q.Machine != "" && (!qemuMachineRE.MatchString(q.Machine) || len(q.Machine) > maxName) {
		add(b.errAt("qemu.machine", "%q: want a QEMU machine type, e.g. q35 (letters, digits, . _ -)", q.Machine))
	}
	if q.CPU != "" && (!qemuCPURE.MatchString(q.CPU) || len(q.CPU) > 256) {
		add(b.errAt("qemu.cpu", "%q: want a QEMU CPU model with optional ,+feature,-feature,key=value parts", q.CPU))
	}
	if q.Memory == 0 {
		add(b.missing("qemu.memory"))
	} else if q.Memory > maxMemory {
		add(b.errAt("qemu.memory", "%v is more than %v", q.Memory, Size(maxMemory)))
	} else if h.Dom0.Memory != 0 && q.Memory <= h.Dom0.Memory {
		add(b.errAt("qemu.memory", "%v leaves nothing for Xen beside dom0's %v", q.Memory, h.Dom0.Memory))
	}
	if q.SMP < 0 || q.SMP > maxVCPUs {
		add(b.errAt("qemu.smp", "%d: want 0 (the default) to %d", q.SMP, maxVCPUs))
	}
	switch q.SPIMode {
	case "", "bios", "pflash":
	default:
		add(b.errAt("qemu.spi_mode", "%q: want bios or pflash", q.SPIMode))
	}
	if q.OVMF != "" {
		ref("qemu.ovmf", q.OVMF)
	}
	errs = append(errs, b.validateGuests(comps)...)
	errs = append(errs, b.validateGuestImages(comps)...)
	errs = append(errs, b.validateHost()...)
	return errors.Join(errs...)
}

var (
	qemuMachineRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	qemuCPURE     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*(,[+-]?[A-Za-z0-9._-]+(=[A-Za-z0-9._-]+)?)*$`)
)

var guestNameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)

func (b *Board) validateGuests(comps map[string]Component) []error {
	var errs []error
	names := map[string]bool{}
	var total Size
	tooBig := false // a guest alone exceeds the RAM: the sum says nothing more
	for i, g := range b.Guests {
		f := fmt.Sprintf("guests[%d]", i)
		switch {
		case g.Name == "":
			errs = append(errs, b.missing(f+".name"))
		case !guestNameRE.MatchString(g.Name):
			errs = append(errs, b.errAt(f+".name", "%q: a guest name is lower-case letters, digits and -, starting with a letter, at most 32", g.Name))
		case names[g.Name]:
			errs = append(errs, b.errAt(f+".name", "guest %q is declared twice", g.Name))
		}
		names[g.Name] = true
		switch {
		case g.Memory == 0:
			errs = append(errs, b.missing(f+".memory"))
		case g.Memory%(1<<20) != 0 || g.Memory < 32<<20:
			errs = append(errs, b.errAt(f+".memory", "%v: give whole MiB, at least 32MiB (a PV Linux guest needs that much)", g.Memory))
		case g.Memory > maxMemory || b.QEMU.Memory != 0 && g.Memory > b.QEMU.Memory:
			errs = append(errs, b.errAt(f+".memory", "%v is more than the board's RAM (qemu.memory %v)", g.Memory, b.QEMU.Memory))
			tooBig = true
		}
		total = addSat(total, g.Memory)
		if g.VCPUs < 0 || g.VCPUs > maxVCPUs {
			errs = append(errs, b.errAt(f+".vcpus", "%d: want 0 (the default) to %d", g.VCPUs, maxVCPUs))
		}
		switch {
		case !g.Kernel.IsZero() && g.Image != "":
			errs = append(errs, b.errAt(f+".image", "give kernel or image, not both: an image brings its own kernel"))
		case g.Image != "":
			if _, ok := b.GuestImage(g.Image); !ok {
				errs = append(errs, b.errAt(f+".image", "no guest image named %q (declare it under guest_images)", g.Image))
			}
		case g.Kernel.IsZero():
			errs = append(errs, b.missing(f+".kernel"))
		case g.Kernel.IsDom0():
			if g.Type == GuestTypePVH {
				errs = append(errs, b.errAt(f+".type", "the dom0 kernel boots only as a PV guest: use type pv or auto"))
			}
		case g.Kernel.Build != nil:
			errs = append(errs, b.checkSourceKernel(f+".kernel", *g.Kernel.Build, comps)...)
		default:
			if c, ok := comps[g.Kernel.Ref]; !ok || c.Files["bzimage"] == "" {
				errs = append(errs, b.errAt(f+".kernel", "%q: want \"dom0\", a component with files.bzimage or {source, base, fragment}", g.Kernel.Ref))
			}
		}
		switch g.Type {
		case "", GuestTypeAuto, GuestTypePV, GuestTypePVH:
		default:
			errs = append(errs, b.errAt(f+".type", "%q: want auto, pv or pvh", g.Type))
		}
		switch g.After {
		case "", "poweroff", "run":
		default:
			errs = append(errs, b.errAt(f+".after", "%q: want poweroff or run", g.After))
		}
		if strings.ContainsAny(g.Cmdline, "\"\n\\") {
			errs = append(errs, b.errAt(f+".cmdline", "quotes, backslashes and newlines cannot go into an xl config"))
		} else if err := checkCmdline(g.Cmdline, 2048); err != nil {
			errs = append(errs, b.errAt(f+".cmdline", "%v", err))
		}
	}
	// Xen itself and its heap need room beside dom0 and the guests.
	const xenReserve = 128 << 20
	if ram := b.QEMU.Memory; len(b.Guests) > 0 && ram != 0 && !tooBig && addSat(addSat(total, b.Hypervisor.Dom0.Memory), xenReserve) > ram {
		errs = append(errs, b.errAt("guests", "guests need %v and dom0 %v, plus %v for Xen: more than the board's %v RAM (qemu.memory)",
			total, b.Hypervisor.Dom0.Memory, Size(xenReserve), ram))
	}
	return errs
}

// span is a region's valid byte range [start, end) and its index.
type span struct {
	i          int
	start, end uint64
}

func (b *Board) validateRegions(s *SPI) []error {
	var errs []error
	if len(s.Regions) == 0 && s.Descriptor != DescriptorImage {
		return []error{b.missing("outputs.spi.regions")}
	}
	firmware, guests, payload, units, slotted := 0, 0, 0, 0, 0
	slotAt := map[string]string{}
	names := map[string]bool{}
	var spans []span
	for i, r := range s.Regions {
		f := fmt.Sprintf("outputs.spi.regions[%d]", i)
		switch err := CheckRegionName(r.Name); {
		case r.Name == "":
			errs = append(errs, b.missing(f+".name"))
		case err != nil:
			errs = append(errs, b.errAt(f+".name", "%v", err))
		case names[r.Name]:
			errs = append(errs, b.errAt(f+".name", "region %q is defined twice", r.Name))
		}
		names[r.Name] = true
		if r.Kind != "" && !slices.Contains(RegionKinds, r.Kind) {
			errs = append(errs, b.errAt(f+".kind", "%q is not an Intel flash descriptor region: want one of %s", r.Kind, strings.Join(RegionKinds, ", ")))
		}
		if r.Size == 0 {
			errs = append(errs, b.missing(f+".size"))
			continue
		}
		if r.Start%4096 != 0 || r.Size%4096 != 0 {
			errs = append(errs, b.errAt(f, "region %q start and size must be multiples of 4KiB (the erase block)", r.Name))
		}
		// start+size is computed only once it cannot wrap past 2^64: a
		// wrapped end would pass both the chip bound and the overlap check.
		if r.Size > ^Size(0)-r.Start {
			errs = append(errs, b.errAt(f+".size", "region %q start %#x plus size %#x wraps past 2^64: give the region's real start and size", r.Name, uint64(r.Start), uint64(r.Size)))
			continue
		}
		end := uint64(r.Start) + uint64(r.Size)
		if s.ChipSize != 0 && end > uint64(s.ChipSize) {
			errs = append(errs, b.errAt(f+".size", "region %q ends at %#x, past the %v chip", r.Name, end, s.ChipSize))
		}
		// Below the chip's end by: how far into the chip's top the region
		// starts (0 if it starts past the end, reported above).
		var below uint64
		if s.ChipSize != 0 && r.Start <= s.ChipSize {
			below = uint64(s.ChipSize) - uint64(r.Start)
		}
		if r.Firmware {
			firmware++
			if r.Preserve {
				errs = append(errs, b.errAt(f+".preserve", "the firmware region %q cannot be preserved", r.Name))
			}
		}
		if r.Guests {
			guests++
			switch {
			case r.Preserve || r.Firmware || r.Fill != "":
				errs = append(errs, b.errAt(f+".guests", "region %q holds the guests: it cannot also be preserve, firmware or fill", r.Name))
			case below > s.MappedSize():
				errs = append(errs, b.errAt(f+".start", "guests region %q starts %#x below the chip's end: only the top %v of the chip is memory-mapped, where ctld reads it: move the region up, or set outputs.spi.mapped if the board maps more", r.Name, below, Size(s.MappedSize())))
			}
		}
		if r.Unit {
			units++
			fwr, hasFW := s.FirmwareRegion()
			switch {
			case r.Preserve || r.Firmware || r.Fill != "" || r.Guests || r.Payload:
				errs = append(errs, b.errAt(f+".unit", "region %q holds the unit's credential record: it cannot also be preserve, firmware, fill, guests or payload (it is kept across flashes without preserve)", r.Name))
			case r.Size < MinUnitRegion || r.Size > MaxUnitRegion:
				errs = append(errs, b.errAt(f+".size", "unit region %q is %v: give it %v to %v (a record of a few accounts is well under 1 KiB)", r.Name, r.Size, Size(MinUnitRegion), Size(MaxUnitRegion)))
			case below > s.MappedSize():
				errs = append(errs, b.errAt(f+".start", "unit region %q starts %#x below the chip's end: only the top %v of the chip is memory-mapped, where ctld reads it: move the region up, or set outputs.spi.mapped if the board maps more", r.Name, below, Size(s.MappedSize())))
			case s.Descriptor != DescriptorImage && (!hasFW || !fwr.Contains(r)):
				// Outside the BIOS region an Intel chipset does not map it.
				errs = append(errs, b.errAt(f+".start", "unit region %q must lie inside the firmware region (the only region the CPU sees): move it into %q's free space", r.Name, fwr.Name))
			}
		}
		if r.Slot != "" {
			switch {
			case !r.Payload:
				errs = append(errs, b.errAt(f+".slot", "region %q has slot %q but is not a payload region: slots are for the two regions marked payload: true", r.Name, r.Slot))
			case r.Slot != "a" && r.Slot != "b":
				errs = append(errs, b.errAt(f+".slot", "%q: want a or b (the two payload slots)", r.Slot))
			case slotAt[r.Slot] != "":
				errs = append(errs, b.errAt(f+".slot", "region %q is slot %s, as is %s: give one payload region slot a and the other slot b", r.Name, r.Slot, slotAt[r.Slot]))
			default:
				slotAt[r.Slot] = fmt.Sprintf("region %q (%s)", r.Name, f)
			}
		}
		if r.Payload {
			payload++
			if r.Slot != "" {
				slotted++
			}
			window := min(uint64(MappedWindow), s.MappedSize())
			if s.Descriptor == "" {
				// No Intel flash descriptor, so not an Intel chipset's
				// layout: the board's mapped window is the one.
				window = s.MappedSize()
			}
			switch {
			case r.Preserve || r.Firmware || r.Fill != "" || r.Guests:
				errs = append(errs, b.errAt(f+".payload", "region %q holds the flash payload: it cannot also be preserve, firmware, fill or guests", r.Name))
			case s.Payload != PayloadRegion:
				errs = append(errs, b.errAt(f+".payload", "region %q is marked payload: true, but outputs.spi.payload is %q: set payload: region to place the payload there, or remove the mark", r.Name, s.Payload))
			case below > window:
				// Intel's window, whatever QEMU maps: the board's launcher
				// must find the payload on real chipsets too.
				errs = append(errs, b.errAt(f+".start", "payload region %q starts %#x below the chip's end: the launcher reads it through the memory-mapped window, which on Intel chipsets is the top %v of the BIOS region (outputs.spi.mapped does not widen it): move the region up", r.Name, below, Size(window)))
			}
		}
		if r.Fill != "" {
			name, role, _ := strings.Cut(r.Fill, ":")
			if c, ok := b.Component(name); !ok || c.Files[role] == "" {
				errs = append(errs, b.errAt(f+".fill", "%q: want component:role of a component file", r.Fill))
			}
		}
		spans = append(spans, span{i, uint64(r.Start), end})
	}

	// Nesting: the guests and payload regions may lie inside the firmware
	// (BIOS) region, which flashrom accepts as long as one write does not
	// include both. Every other pair of regions must be disjoint, and so
	// must the nested regions among themselves: each set is swept apart.
	fw := slices.IndexFunc(s.Regions, func(r Region) bool { return r.Firmware })
	// Only a firmware region with a valid span can hold others.
	fwOK := fw >= 0 && slices.ContainsFunc(spans, func(o span) bool { return o.i == fw })
	var top, nested []span
	for _, sp := range spans {
		r := s.Regions[sp.i]
		if fwOK && sp.i != fw && r.Nests() && s.Regions[fw].Contains(r) {
			nested = append(nested, sp)
		} else {
			top = append(top, sp)
		}
	}
	const hint = "regions may not share bytes, except that a guests, payload or unit region may lie entirely inside the firmware region"
	errs = append(errs, b.overlaps(s, top, hint)...)
	errs = append(errs, b.overlaps(s, nested, "the guests, payload and unit regions inside the firmware region must not overlap each other")...)
	if s.GrowVolume != "" {
		// The grown volume fills the whole firmware region.
		for _, sp := range nested {
			errs = append(errs, b.errAt(fmt.Sprintf("outputs.spi.regions[%d]", sp.i), "region %q lies inside the firmware region %q, which grow_volume fills entirely: move it out, or drop grow_volume", s.Regions[sp.i].Name, s.Regions[fw].Name))
		}
	}

	if firmware != 1 && s.Descriptor != DescriptorImage {
		errs = append(errs, b.errAt("outputs.spi.regions", "exactly one region must be marked firmware: true (found %d)", firmware))
	}
	if guests > 1 {
		errs = append(errs, b.errAt("outputs.spi.regions", "at most one region may be marked guests: true (found %d)", guests))
	}
	if units > 1 {
		errs = append(errs, b.errAt("outputs.spi.regions", "at most one region may be marked unit: true (found %d)", units))
	}
	switch {
	case slotted > 0 && (payload != 2 || slotted != 2):
		errs = append(errs, b.errAt("outputs.spi.regions", "payload slots need exactly two regions marked payload: true, one with slot: a and one with slot: b (found %d payload regions, %d with a slot)", payload, slotted))
	case slotted == 0 && s.Payload == PayloadRegion && payload != 1:
		errs = append(errs, b.errAt("outputs.spi.regions", "payload: region needs exactly one region marked payload: true (found %d), or two with slot: a and slot: b", payload))
	}
	if s.Descriptor == DescriptorGenerate {
		errs = append(errs, b.validateDescriptor(s, spans)...)
	}
	switch {
	case s.Launcher != "" && s.Payload == "":
		errs = append(errs, b.errAt("outputs.spi.launcher", "the launcher starts a payload placed with payload: region or payload: volume; the legacy payload_file placement needs none"))
	case s.Launcher != "":
		if _, ok := b.Component(s.Launcher); !ok {
			errs = append(errs, b.errAt("outputs.spi.launcher", "no component named %q (want the gnu-efi package pinned in components)", s.Launcher))
		}
	}
	return errs
}

// overlaps reports every region in set that starts before the previous one
// (by start) ends. Sorted, a set without such a pair is disjoint.
func (b *Board) overlaps(s *SPI, set []span, hint string) []error {
	var errs []error
	set = slices.Clone(set)
	sort.SliceStable(set, func(a, c int) bool { return set[a].start < set[c].start })
	for j := 1; j < len(set); j++ {
		if set[j].start < set[j-1].end {
			a, c := s.Regions[set[j-1].i], s.Regions[set[j].i]
			errs = append(errs, b.errAt(fmt.Sprintf("outputs.spi.regions[%d]", set[j].i),
				"region %q (%#x-%#x) overlaps region %q (%#x-%#x): %s", c.Name, set[j].start, set[j].end-1, a.Name, set[j-1].start, set[j-1].end-1, hint))
		}
	}
	return errs
}

// validateDescriptor checks that the regions' kinds describe an Intel flash
// descriptor fwbuild can write (descriptor: generate): its region table has
// one base and limit per kind, so kinded regions are disjoint and, but for
// the BIOS region, unique.
func (b *Board) validateDescriptor(s *SPI, spans []span) []error {
	var errs []error
	const field = "outputs.spi.regions"
	var kinded []span
	first := map[string]int{}
	biosStart, biosEnd := ^uint64(0), uint64(0)
	for _, sp := range spans {
		r := s.Regions[sp.i]
		if r.Kind == "" || !slices.Contains(RegionKinds, r.Kind) {
			continue
		}
		f := fmt.Sprintf("%s[%d]", field, sp.i)
		kinded = append(kinded, sp)
		if j, dup := first[r.Kind]; dup && r.Kind != KindBIOS {
			errs = append(errs, b.errAt(f+".kind", "region %q is kind %s, as is region %q: a descriptor has one %s region, so give this kind once", r.Name, r.Kind, s.Regions[j].Name, r.Kind))
		} else if !dup {
			first[r.Kind] = sp.i
		}
		switch r.Kind {
		case KindDescriptor:
			if r.Start != 0 || r.Size != 4096 {
				errs = append(errs, b.errAt(f, "descriptor region %q is at %#x, %v: it must start at 0 and be 4KiB, where the chipset reads the descriptor fwbuild writes", r.Name, uint64(r.Start), r.Size))
			}
		case KindBIOS:
			biosStart, biosEnd = min(biosStart, sp.start), max(biosEnd, sp.end)
		}
	}
	if _, ok := first[KindDescriptor]; !ok {
		errs = append(errs, b.errAt(field, "descriptor: generate needs a region of kind descriptor (start 0, size 4KiB)"))
	}
	if _, ok := first[KindBIOS]; !ok {
		errs = append(errs, b.errAt(field, "descriptor: generate needs a region of kind bios (the firmware region)"))
	} else {
		// One base and limit: what lies between bios regions is BIOS too.
		for _, sp := range kinded {
			if r := s.Regions[sp.i]; r.Kind != KindBIOS && sp.start < biosEnd && sp.end > biosStart {
				errs = append(errs, b.errAt(fmt.Sprintf("%s[%d]", field, sp.i), "region %q (kind %s) lies within the BIOS region %#x-%#x the descriptor would give: the descriptor has one BIOS range, so keep the bios regions together", r.Name, r.Kind, biosStart, biosEnd-1))
			}
		}
		// The chipset maps the BIOS region's top below 4 GiB; CPUAddress
		// and the reset vector assume that top is the chip's end.
		if s.ChipSize != 0 && biosEnd != uint64(s.ChipSize) {
			errs = append(errs, b.errAt(field, "the bios regions end at %#x, not at the end of the %v chip: the chipset maps the BIOS region's top at 4 GiB, so put it at the chip's end", biosEnd, s.ChipSize))
		}
	}
	if fw := slices.IndexFunc(s.Regions, func(r Region) bool { return r.Firmware }); fw >= 0 && s.Regions[fw].Kind != KindBIOS {
		errs = append(errs, b.errAt(fmt.Sprintf("%s[%d].kind", field, fw), "the firmware region %q is kind %q: with descriptor: generate it is the BIOS region, give it kind: bios", s.Regions[fw].Name, s.Regions[fw].Kind))
	}
	errs = append(errs, b.overlaps(s, kinded, "regions of the descriptor (those with a kind) must be disjoint")...)
	return errs
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// checkSourceKernel checks a kernel built from source (dom0's, a guest's)
// at field: a source component with the tarball, a fragment, a known base.
func (b *Board) checkSourceKernel(field string, k Kernel, comps map[string]Component) []error {
	var errs []error
	switch c, ok := comps[k.Source]; {
	case k.Source == "":
		errs = append(errs, b.missing(field+".source"))
	case !ok:
		errs = append(errs, b.errAt(field+".source", "no component named %q (components: %s)", k.Source, strings.Join(sortedKeys(comps), ", ")))
	case c.Files["tarball"] == "":
		errs = append(errs, b.errAt(field+".source", "component %q needs files.tarball (the kernel source tarball)", k.Source))
	}
	if strings.TrimSpace(k.Fragment) == "" {
		errs = append(errs, b.missing(field+".fragment"))
	}
	if k.Base != "" && k.Base != "tinyconfig" && k.Base != "allnoconfig" {
		errs = append(errs, b.errAt(field+".base", "%q: want tinyconfig or allnoconfig", k.Base))
	}
	return errs
}
