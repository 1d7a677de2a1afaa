package boardcfg

import (
	"fmt"
	"strings"
)

// validateSPI checks the SPI fields besides chip_size and the regions:
// descriptor, payload placement, mapped window and the removal list.
func (b *Board) validateSPI(s *SPI) []error {
	var errs []error
	add := func(err error) { errs = append(errs, err) }
	switch s.Descriptor {
	case "", DescriptorGenerate:
	case DescriptorImage:
		// The image's descriptor gives the descriptor regions and the BIOS
		// region; the profile adds fwbuild's regions inside it (checked at
		// build time, against the descriptor) or overrides a region by name.
		for i, r := range s.Regions {
			if r.Firmware || r.Kind != "" {
				add(b.errAt(fmt.Sprintf("outputs.spi.regions[%d]", i), "region %q: with descriptor: image the firmware's own descriptor gives the BIOS region and every kind: drop firmware and kind (name a region like the descriptor's to override it: fd, bios, me, gbe, pd, ec)", r.Name))
			}
		}
	default:
		add(b.errAt("outputs.spi.descriptor", "%q: want generate (fwbuild writes an Intel flash descriptor from the regions' kind), image (the firmware is a full-chip image: its descriptor gives the layout), or leave it out (no descriptor)", s.Descriptor))
	}
	switch s.Payload {
	case "":
		if s.PayloadFile == "" {
			add(b.errAt("outputs.spi.payload_file", "required field is missing: give the GUID of the FFS file whose PE32 the payload replaces, or set outputs.spi.payload to region or volume (the launcher)"))
		}
	case PayloadRegion, PayloadVolume:
		// The launcher DXE driver starts the payload from where it is:
		// nothing in the firmware is replaced or grown for it.
		if s.PayloadFile != "" {
			add(b.errAt("outputs.spi.payload_file", "payload: %s: the launcher does not replace a file: remove payload_file", s.Payload))
		}
		if s.GrowVolume != "" {
			add(b.errAt("outputs.spi.grow_volume", "payload: %s: the launcher does not replace a file, so no volume grows for it: remove grow_volume (use remove: to make room)", s.Payload))
		}
	default:
		add(b.errAt("outputs.spi.payload", "%q: want region (in the region marked payload: true), volume (an FFS file in the DXE volume), or leave it out (replace the PE32 of payload_file)", s.Payload))
	}
	if m := s.Mapped; m != 0 {
		switch {
		case m%4096 != 0:
			add(b.errAt("outputs.spi.mapped", "%v is not a multiple of 4KiB: give the size of the window the chipset maps below 4 GiB, e.g. 16MiB", m))
		case s.ChipSize != 0 && m > s.ChipSize:
			add(b.errAt("outputs.spi.mapped", "%v is more than the %v chip: at most the whole chip is mapped (give chip_size or less, or leave it out for %v)", m, s.ChipSize, Size(MappedWindow)))
		}
	}
	seen := map[string]int{}
	for i, e := range s.Remove {
		f := fmt.Sprintf("outputs.spi.remove[%d]", i)
		key := e
		if looksLikeGUID(e) {
			if !guidRE.MatchString(e) {
				add(b.errAt(f, "%q looks like a file GUID but is not one: want XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX, or the file's UI name", e))
				continue
			}
			// Canonical, as GUID fields are, so later stages compare
			// strings and duplicates in other cases are caught here.
			key = strings.ToUpper(e)
			s.Remove[i] = key
		} else if err := checkUIName(e); err != nil {
			add(b.errAt(f, "%v", err))
			continue
		}
		if j, dup := seen[key]; dup {
			add(b.errAt(f, "%q is already listed at outputs.spi.remove[%d]: list each file once", e, j))
			continue
		}
		seen[key] = i
		if s.Payload == "" && key == string(s.PayloadFile) {
			add(b.errAt(f, "%q is payload_file, whose PE32 the payload replaces: it cannot be removed too", e))
		}
	}
	return errs
}

// looksLikeGUID reports whether a remove entry was meant as a GUID: only
// hex digits and dashes, with the dashes of one. A UI name such as "Shell"
// has other letters; a mistyped GUID must not pass as a name that matches
// nothing.
func looksLikeGUID(s string) bool {
	if strings.Count(s, "-") < 3 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == '-') {
			return false
		}
	}
	return true
}

// maxUIName bounds a UI section name: EDK II's are short identifiers
// ("Shell", "PlatformDxe").
const maxUIName = 128

// checkUIName is the rule for a firmware file named by its UI section:
// 1 to 128 printable ASCII characters, which is what names in firmware
// look like and what goes into reports unchanged.
func checkUIName(s string) error {
	if s == "" {
		return fmt.Errorf("empty name: give a file GUID or UI name, e.g. Shell")
	}
	if len(s) > maxUIName {
		return fmt.Errorf("UI name is %d bytes long: at most %d", len(s), maxUIName)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e {
			return fmt.Errorf("UI name %q has byte %#x at %d: only printable ASCII is allowed (or give the file's GUID)", s, c, i)
		}
	}
	return nil
}
