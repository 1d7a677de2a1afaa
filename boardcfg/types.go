package boardcfg

import (
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Board is a merged, validated board profile.
type Board struct {
	Name          string        `yaml:"name"`
	Description   string        `yaml:"description"`
	Arch          string        `yaml:"arch"`
	Extends       string        `yaml:"extends,omitempty"`
	Components    []Component   `yaml:"components"`
	Hypervisor    Hypervisor    `yaml:"hypervisor"`
	ControlDomain ControlDomain `yaml:"control_domain"`
	Outputs       Outputs       `yaml:"outputs"`
	QEMU          QEMU          `yaml:"qemu"`
	Guests        []Guest       `yaml:"guests,omitempty"`
	// GuestImages are guest operating systems fwbuild assembles from
	// pinned packages (guestimage.go); they travel on the install media or
	// behind GuestImagesURL, never in the flash.
	GuestImages []GuestImage `yaml:"guest_images,omitempty"`
	// GuestImagesURL is the base URL the guest images' files are served
	// from (the build's guest-* artefacts, by name); empty: install media only.
	GuestImagesURL string `yaml:"guest_images_url,omitempty"`
	// Network is the management network ctld brings up; nil for none.
	Network *Network `yaml:"network,omitempty"`
	// Storage is the data disk ctld keeps guests on; nil for none.
	Storage *Storage `yaml:"storage,omitempty"`
	// Version is the board's release version (MAJOR.MINOR.PATCH; default
	// DefaultVersion); every payload carries it with the build's content hash.
	Version string `yaml:"version,omitempty"`
	// Update says how the payload is released in the field (release.go).
	Update *Update `yaml:"update,omitempty"`

	// File is the profile the board was loaded from; Files lists it and every profile it extends.
	File  string   `yaml:"-" json:"-"`
	Files []string `yaml:"-" json:"-"`
	locs  map[string]Loc
}

// Component is one pinned Debian package.
type Component struct {
	Name    string `yaml:"name"`
	Package string `yaml:"package"`
	Version string `yaml:"version"`
	SHA256  Hash   `yaml:"sha256"`
	// Files maps a role ("efi", "bzimage", ...) to a path inside the package.
	Files map[string]string `yaml:"files,omitempty"`
}

type Hypervisor struct {
	Xen     string `yaml:"xen"`
	Options string `yaml:"options"`
	Dom0    Dom0   `yaml:"dom0"`
}

type Dom0 struct {
	Memory  Size   `yaml:"memory"`
	VCPUs   int    `yaml:"vcpus,omitempty"`
	Cmdline string `yaml:"cmdline"`
	Kernel  Kernel `yaml:"kernel"`
}

// Kernel selects the dom0 kernel: exactly one of Component (a Debian kernel
// package), Source (a linux-source component built with Fragment) or Path.
type Kernel struct {
	Component string `yaml:"component,omitempty"`
	Source    string `yaml:"source,omitempty"`
	Base      string `yaml:"base,omitempty"`
	// Fragment is a Kconfig fragment, relative to the boards directory.
	Fragment string `yaml:"fragment,omitempty"`
	// Patches are unified diffs (-p1) applied in order to the source
	// before it is configured, relative to the boards directory.
	Patches []string `yaml:"patches,omitempty"`
	// Path is a kernel file, relative to the profile that sets it.
	Path string `yaml:"path,omitempty"`

	// FragmentFile, PathFile and PatchFiles are Fragment, Path and Patches as Load resolved and
	// checked them (see paths.go): what the build reads.
	FragmentFile string   `yaml:"-" json:"-"`
	PathFile     string   `yaml:"-" json:"-"`
	PatchFiles   []string `yaml:"-" json:"-"`
}

type ControlDomain struct {
	Compression Compression `yaml:"compression"`
	Commands    []string    `yaml:"commands"`
	Toolstack   Toolstack   `yaml:"toolstack"`
}

type Toolstack struct {
	// Packages are component names searched for Files and their shared libraries.
	Packages []string `yaml:"packages"`
	Files    []string `yaml:"files,omitempty"`
	// Symlinks are extra links in the archive: path -> target.
	Symlinks map[string]string `yaml:"symlinks,omitempty"`
	// Modules are kernel modules inside Packages that ctld loads at boot
	// (for a dom0 kernel that builds the Xen drivers as modules).
	Modules []string `yaml:"modules,omitempty"`
}

type Outputs struct {
	USB USB  `yaml:"usb"`
	SPI *SPI `yaml:"spi"`
	// SecureBoot, if set, makes the build write the firmware's variable
	// store with the owner's keys enrolled (secboot); its keys come from
	// the command line (fwbuild build --keys DIR), never from the profile.
	SecureBoot *SecureBoot `yaml:"secure_boot"`
}

// SecureBoot names the board firmware's empty variable store (component:role,
// e.g. ovmf:vars), into which the owner's PK, KEK and db are enrolled, and
// the firmware code that enforces them (e.g. ovmf:code-secboot), which the
// USB boot test runs with the enrolled store.
type SecureBoot struct {
	Variables string `yaml:"variables"`
	Code      string `yaml:"code"`
}

type USB struct {
	Size Size `yaml:"size"`
}

type SPI struct {
	// Firmware is the base firmware: a component file ("ovmf:code") or an
	// image given by path and pinned by SHA-256 (see Firmware).
	Firmware Firmware `yaml:"firmware,omitempty"`
	ChipSize Size     `yaml:"chip_size"`
	// PayloadFile is the FFS file whose PE32 the payload replaces (the
	// legacy placement, Payload ""); GrowVolume the volume enlarged to make
	// room for it.
	PayloadFile GUID     `yaml:"payload_file,omitempty"`
	GrowVolume  GUID     `yaml:"grow_volume,omitempty"`
	Regions     []Region `yaml:"regions"`
	// Descriptor is "" (no Intel flash descriptor, or the one inside a
	// full-chip firmware image) or "generate": fwbuild writes one from the
	// regions' kinds.
	Descriptor string `yaml:"descriptor,omitempty"`
	// Payload is where the flash payload goes: PayloadRegion (the region
	// marked payload: true, started by the launcher DXE driver),
	// PayloadVolume (an FFS file in the firmware's DXE volume, ditto), or
	// "" (replace the PE32 of PayloadFile).
	Payload string `yaml:"payload,omitempty"`
	// Mapped is how many bytes at the top of the chip the CPU sees below
	// 4 GiB; 0 means MappedWindow (see MappedSize).
	Mapped Size `yaml:"mapped,omitempty"`
	// Launcher names the component (Debian's gnu-efi) the launcher DXE
	// driver is built with, for Payload region or volume; "" means the
	// component named DefaultLauncher.
	Launcher string `yaml:"launcher,omitempty"`
	// Remove lists firmware files dropped to make room: FFS file GUIDs
	// (upper case after Load) or UI section names such as "Shell".
	Remove []string `yaml:"remove,omitempty"`
}

// DefaultLauncher is the component the launcher is built with when
// SPI.Launcher is empty.
const DefaultLauncher = "gnu-efi"

// LauncherComponent is the component the launcher is built with.
func (s *SPI) LauncherComponent() string {
	if s.Launcher == "" {
		return DefaultLauncher
	}
	return s.Launcher
}

// Payload placements (SPI.Payload).
const (
	PayloadRegion = "region"
	PayloadVolume = "volume"
)

// DescriptorGenerate is the SPI.Descriptor value that makes fwbuild write
// an Intel flash descriptor.
const DescriptorGenerate = "generate"

// DescriptorImage is the SPI.Descriptor value for a full-chip firmware
// image: the layout comes from the image's own Intel flash descriptor.
const DescriptorImage = "image"

// Region kinds: the Intel flash descriptor regions (FLREG0-5) a layout
// region belongs to.
const (
	KindDescriptor = "descriptor"
	KindBIOS       = "bios"
	KindME         = "me"
	KindGbE        = "gbe"
	KindPD         = "pd"
	KindEC         = "ec"
)

// RegionKinds lists the valid Region.Kind values in descriptor order.
var RegionKinds = []string{KindDescriptor, KindBIOS, KindME, KindGbE, KindPD, KindEC}

// Region is a flashrom layout region of the chip.
type Region struct {
	Name  string `yaml:"name"`
	Start Size   `yaml:"start"`
	Size  Size   `yaml:"size"`
	// Preserve marks a region fwbuild never fills or writes (factory data, variables).
	Preserve bool `yaml:"preserve,omitempty"`
	// Firmware marks the region that holds the base firmware and the payload.
	Firmware bool `yaml:"firmware,omitempty"`
	// Fill is optional "component:role" content placed at the start of the region.
	Fill string `yaml:"fill,omitempty"`
	// Guests marks the region that holds the guests (kernels, initramfs, xl
	// configs) instead of the flash payload, whose slot is too small for
	// them. ctld reads it from the memory-mapped chip at boot. It may lie
	// inside the firmware region (see Nested).
	Guests bool `yaml:"guests,omitempty"`
	// Kind is the Intel flash descriptor region (one of RegionKinds) this
	// region belongs to; "" for none.
	Kind string `yaml:"kind,omitempty"`
	// Payload marks the region that holds the flash payload (SPI.Payload
	// PayloadRegion), outside every firmware volume: the launcher reads it
	// from the memory-mapped chip. It may lie inside the firmware region.
	Payload bool `yaml:"payload,omitempty"`
	// Unit marks the region that holds the unit's credential record
	// (contract/unit), written per unit by `fwbuild provision`, never by
	// the build. It nests in the firmware region, where the CPU can read
	// it (Intel chipsets map only the BIOS region), and `fwbuild flash spi`
	// keeps the chip's bytes there when it rewrites the firmware region,
	// so re-flashing never erases a unit's identity.
	Unit bool `yaml:"unit,omitempty"`
	// Slot makes a payload region one of two payload slots, "a" or "b"
	// (contract.SlotA/SlotB): the build writes the payload into both, and
	// the launcher starts one, falling back to the other (contract's
	// SPISlots). Both payload regions carry a slot, or neither.
	Slot string `yaml:"slot,omitempty"`
}

// Nests reports whether r is the kind of region that may lie inside the
// firmware region: the guests, payload or unit region. They are read from
// the memory-mapped BIOS region, where there is room once the firmware
// volumes are smaller than the region; a write of the firmware region then
// covers them too, which is why no other region may nest.
func (r Region) Nests() bool { return r.Guests || r.Payload || r.Unit }

// Contains reports whether o lies entirely inside r.
func (r Region) Contains(o Region) bool {
	return o.Start >= r.Start && o.Size <= r.Size && o.Start-r.Start <= r.Size-o.Size
}

type QEMU struct {
	Machine string `yaml:"machine"`
	CPU     string `yaml:"cpu"`
	Memory  Size   `yaml:"memory"`
	SMP     int    `yaml:"smp,omitempty"`
	SPIMode string `yaml:"spi_mode,omitempty"`
	OVMF    string `yaml:"ovmf,omitempty"`
}

// Guest is a VM the control domain starts at first boot.
type Guest struct {
	Name   string `yaml:"name"`
	Memory Size   `yaml:"memory"`
	VCPUs  int    `yaml:"vcpus,omitempty"`
	// Kernel is the guest's own kernel (see GuestKernel); Image instead
	// names a guest image (GuestImages), whose files ctld keeps on the data
	// disk.
	Kernel GuestKernel `yaml:"kernel,omitempty"`
	Image  string      `yaml:"image,omitempty"`
	// Type is the virtualization mode: GuestTypeAuto (the default: PVH when
	// the kernel supports it, else PV), GuestTypePV or GuestTypePVH.
	Type    string `yaml:"type,omitempty"`
	Cmdline string `yaml:"cmdline,omitempty"`
	// After is what the guest's init does once it has reported: "poweroff" or "run".
	After     string `yaml:"after,omitempty"`
	Autostart bool   `yaml:"autostart"`
	// Disks are virtual disks on the data disk (xvda, xvdb, ... in order).
	Disks []GuestDisk `yaml:"disks,omitempty"`
	// NICs are vifs on the guest bridge (network.guests), else on the
	// management bridge.
	NICs []GuestNIC `yaml:"nics,omitempty"`
}

// Component returns the component with the given name.
func (b *Board) Component(name string) (Component, bool) {
	for _, c := range b.Components {
		if c.Name == name {
			return c, true
		}
	}
	return Component{}, false
}

// Loc returns where a field (e.g. "outputs.spi.chip_size") was set.
func (b *Board) Loc(field string) Loc {
	if l, ok := b.locs[field]; ok {
		return l
	}
	return Loc{File: b.File}
}

// FirmwareRegion returns the SPI region that holds the firmware.
func (s *SPI) FirmwareRegion() (Region, bool) {
	for _, r := range s.Regions {
		if r.Firmware {
			return r, true
		}
	}
	return Region{}, false
}

// GuestsRegion returns the SPI region that holds the guests, if there is one.
func (s *SPI) GuestsRegion() (Region, bool) {
	for _, r := range s.Regions {
		if r.Guests {
			return r, true
		}
	}
	return Region{}, false
}

// UnitRegion returns the region marked unit: true, if there is one.
func (s *SPI) UnitRegion() (Region, bool) {
	for _, r := range s.Regions {
		if r.Unit {
			return r, true
		}
	}
	return Region{}, false
}

// Unit region sizes: room for a record of a few accounts (contract/unit's
// MaxBody is 64 KiB) in whole erase blocks.
const (
	MinUnitRegion = 4 << 10
	MaxUnitRegion = 64 << 10
)

// PayloadRegion returns the region marked payload: true, if there is one;
// on a board with two payload slots, slot a's.
func (s *SPI) PayloadRegion() (Region, bool) {
	if slots := s.PayloadSlots(); len(slots) > 0 {
		return slots[0], true
	}
	for _, r := range s.Regions {
		if r.Payload {
			return r, true
		}
	}
	return Region{}, false
}

// PayloadSlots returns the payload regions that carry a slot, slot a's
// first; none on a board with one payload region.
func (s *SPI) PayloadSlots() []Region {
	var out []Region
	for _, r := range s.Regions {
		if r.Payload && r.Slot != "" {
			out = append(out, r)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Slot < out[j].Slot })
	return out
}

// MappedWindow is how much of the top of an SPI chip an Intel chipset maps
// below 4 GiB (the top 16 MiB of the BIOS region), and the default of
// SPI.Mapped.
const MappedWindow = 16 << 20

// MappedSize is how many bytes at the top of the chip the CPU sees below
// 4 GiB: Mapped, or MappedWindow if it is 0, but never more than the chip.
func (s *SPI) MappedSize() uint64 {
	m := uint64(s.Mapped)
	if m == 0 {
		m = MappedWindow
	}
	return min(m, uint64(s.ChipSize))
}

// MappedAddress is where a chip offset appears in the CPU's address space:
// the chip's end sits at 4 GiB (no flash descriptor remapping it).
func (s *SPI) MappedAddress(offset uint64) uint64 {
	return 1<<32 - uint64(s.ChipSize) + offset
}

// CPUAddress is the physical address where the CPU sees region r's first
// byte: the chip's end sits at 4 GiB. It is an error if r is not entirely in
// the top MappedSize bytes, where nothing is mapped (or, past the window,
// something else is).
func (s *SPI) CPUAddress(r Region) (uint64, error) {
	chip, mapped := uint64(s.ChipSize), s.MappedSize()
	start, size := uint64(r.Start), uint64(r.Size)
	if size > chip || start > chip-size || start < chip-mapped {
		return 0, fmt.Errorf("region %q (%#x, %#x bytes) is not inside the memory-mapped top %v of the %v chip (outputs.spi.mapped)",
			r.Name, start, size, Size(mapped), s.ChipSize)
	}
	return 1<<32 - chip + start, nil
}

// Size is a byte count written as plain bytes, hex ("0x800000") or with a binary unit ("8MiB").
type Size uint64

// ParseSize reads a Size as a profile spells it (a flag's value, say).
func ParseSize(v string) (Size, error) {
	var s Size
	err := s.decodeScalar(v)
	return s, err
}

var sizeRE = regexp.MustCompile(`^(\d+)\s*(B|KiB|MiB|GiB|K|M|G)?$`)

func (s *Size) decodeScalar(v string) error {
	v = strings.TrimSpace(v)
	if strings.HasPrefix(v, "0x") || strings.HasPrefix(v, "0X") {
		n, err := strconv.ParseUint(v[2:], 16, 64)
		if errors.Is(err, strconv.ErrRange) {
			return fmt.Errorf("%q is too large: a size is below 2^64", v)
		}
		if err != nil {
			return fmt.Errorf("%q is not a size (use bytes, 0x hex, or KiB/MiB/GiB)", v)
		}
		*s = Size(n)
		return nil
	}
	m := sizeRE.FindStringSubmatch(v)
	if m == nil {
		return fmt.Errorf("%q is not a size (use bytes, 0x hex, or KiB/MiB/GiB)", v)
	}
	n, err := strconv.ParseUint(m[1], 10, 64)
	if err != nil {
		return fmt.Errorf("%q is too large: a size is below 2^64", v)
	}
	shift := map[string]uint{"": 0, "B": 0, "K": 10, "KiB": 10, "M": 20, "MiB": 20, "G": 30, "GiB": 30}[m[2]]
	if n > (^uint64(0))>>shift {
		return fmt.Errorf("%q is too large: a size is below 2^64", v)
	}
	*s = Size(n << shift)
	return nil
}

func (s Size) String() string {
	switch {
	case s != 0 && s%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", s>>30)
	case s != 0 && s%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", s>>20)
	case s != 0 && s%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", s>>10)
	}
	return fmt.Sprintf("%d", uint64(s))
}

func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// GUID is an EFI GUID in its canonical text form, upper case.
type GUID string

var guidRE = regexp.MustCompile(`^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$`)

func (g *GUID) decodeScalar(v string) error {
	if v == "" {
		// An empty value (`payload_file: ""` or a bare key) clears the
		// field: a board that extends a legacy one and switches to the
		// launcher (payload: region) must drop the base's payload_file and
		// grow_volume. Where a GUID is required, validation says so.
		*g = ""
		return nil
	}
	if !guidRE.MatchString(v) {
		return fmt.Errorf("%q is not a GUID (want XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX)", v)
	}
	*g = GUID(strings.ToUpper(v))
	return nil
}

// Hash is a hex SHA-256 digest.
type Hash string

func (h *Hash) decodeScalar(v string) error {
	b, err := hex.DecodeString(v)
	if err != nil || len(b) != 32 {
		return fmt.Errorf("%q is not a SHA-256 (want 64 hex digits)", v)
	}
	*h = Hash(strings.ToLower(v))
	return nil
}
