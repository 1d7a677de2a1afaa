package hvcore

import (
	"bytes"
	"debug/pe"
	"errors"
	"fmt"

	pew "github.com/fwbuild/fwbuild/hvcore/pe"
)

// SectionAlign is where the unified image's added sections start: Xen
// requires them above .pad, and 2 MiB (Xen's own SectionAlignment) keeps
// them on large-page boundaries.
const SectionAlign = 2 << 20

// Sections are the payloads embedded in a unified xen.efi.
type Sections struct {
	Config  []byte // xen.cfg (see XenConfig); required
	Kernel  []byte // dom0 kernel (bzImage); required
	Ramdisk []byte // control domain initramfs; required
	Ucode   []byte // CPU microcode; optional
	XSM     []byte // XSM/FLASK policy; optional
}

// UnifiedEFI returns Xen's EFI loader (Debian's xen-4.17-amd64.efi) with
// the sections appended as .config, .kernel, .ramdisk [.ucode, .xsm], each
// at a 2 MiB-aligned address after the image's last section (.pad).
// Xen's own sections keep their bytes.
func UnifiedEFI(xenEFI []byte, s Sections) ([]byte, error) {
	f, err := pe.NewFile(bytes.NewReader(xenEFI))
	if err != nil {
		return nil, fmt.Errorf("hvcore: xen.efi is not a PE image: %w", err)
	}
	oh, ok := f.OptionalHeader.(*pe.OptionalHeader64)
	if f.Machine != pe.IMAGE_FILE_MACHINE_AMD64 || !ok || oh.Subsystem != pe.IMAGE_SUBSYSTEM_EFI_APPLICATION {
		return nil, fmt.Errorf("hvcore: xen.efi is not an x86-64 EFI application (machine 0x%x); use /boot/xen-*-amd64.efi from xen-hypervisor-*-amd64", f.Machine)
	}
	for _, name := range []string{".config", ".kernel", ".ramdisk"} {
		if f.Section(name) != nil {
			return nil, fmt.Errorf("hvcore: xen.efi already has a %s section: it is already a unified image; start from the plain xen.efi", name)
		}
	}
	var secs []pew.Section
	add := func(name string, data []byte, required bool) error {
		if len(data) == 0 {
			if required {
				return fmt.Errorf("hvcore: unified xen.efi: %s is empty", name)
			}
			return nil
		}
		secs = append(secs, pew.Section{Name: name, Data: data})
		return nil
	}
	err = errors.Join(
		add(".config", s.Config, true),
		add(".kernel", s.Kernel, true),
		add(".ramdisk", s.Ramdisk, true),
		add(".ucode", s.Ucode, false),
		add(".xsm", s.XSM, false),
	)
	if err != nil {
		return nil, err
	}
	// Xen's COFF symbol table would end up between its sections and ours,
	// outside what an Authenticode signature covers (pew.StripSymbols).
	base, err := pew.StripSymbols(xenEFI)
	if err != nil {
		return nil, fmt.Errorf("hvcore: unified xen.efi: %w", err)
	}
	out, err := pew.AddSections(base, SectionAlign, secs...)
	if err != nil {
		return nil, fmt.Errorf("hvcore: unified xen.efi: %w", err)
	}
	return out, nil
}
