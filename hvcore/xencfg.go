// Package hvcore turns Xen, a dom0 kernel and the control-domain initramfs
// into one UEFI payload: a unified xen.efi for an ESP, or a standalone GRUB
// image with a memdisk for flash (Xen 4.17's EFI loader cannot start from a
// firmware volume).
package hvcore

import (
	"bytes"
	"fmt"
)

// File names written into xen.cfg. In a unified image Xen takes the files
// from PE sections and ignores these names, but the kernel= line needs a
// first word before dom0's command line, and the same config also works
// next to a loose xen.efi.
const (
	cfgKernel  = "vmlinuz"
	cfgRamdisk = "initrd.img"
	cfgUcode   = "ucode.bin"
	cfgXSM     = "xsm.cfg"
)

// XenConfigSpec is the input for XenConfig.
type XenConfigSpec struct {
	XenOptions  string // Xen's command line
	Dom0Cmdline string // dom0 kernel's command line
	Ucode, XSM  bool   // add ucode= / xsm= lines
}

// XenConfig renders the xen.cfg read by Xen's EFI loader.
func XenConfig(c XenConfigSpec) ([]byte, error) {
	if err := checkCmdline("Xen options", c.XenOptions); err != nil {
		return nil, err
	}
	if err := checkCmdline("dom0 command line", c.Dom0Cmdline); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteString("[global]\ndefault=xen\n\n[xen]\n")
	fmt.Fprintf(&b, "options=%s\n", c.XenOptions)
	// Without a kernel= line dom0 gets no command line at all.
	if c.Dom0Cmdline == "" {
		fmt.Fprintf(&b, "kernel=%s\n", cfgKernel)
	} else {
		fmt.Fprintf(&b, "kernel=%s %s\n", cfgKernel, c.Dom0Cmdline)
	}
	fmt.Fprintf(&b, "ramdisk=%s\n", cfgRamdisk)
	if c.Ucode {
		fmt.Fprintf(&b, "ucode=%s\n", cfgUcode)
	}
	if c.XSM {
		fmt.Fprintf(&b, "xsm=%s\n", cfgXSM)
	}
	return b.Bytes(), nil
}

// checkCmdline accepts printable ASCII only: a newline would start a new
// config line, and Xen's and GRUB's parsers know nothing of other encodings.
func checkCmdline(field, s string) error {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e {
			return fmt.Errorf("hvcore: %s: byte %d is %q; only printable ASCII is allowed (no newlines or tabs)", field, i, c)
		}
	}
	return nil
}
