package hvcore

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
)

// CheckDom0Kernel checks that bzImage is an x86 bzImage and that config
// (the kernel's .config, e.g. /boot/config-<version> from the Debian
// package) enables Xen dom0 support. name identifies the kernel (package or
// file) in errors.
func CheckDom0Kernel(bzImage, config []byte, name string) error {
	// The x86 boot protocol puts "HdrS" at 0x202 and the protocol version
	// after it; bzImages (loaded high) need version 2.00 or later.
	if len(bzImage) < 0x212 || string(bzImage[0x202:0x206]) != "HdrS" {
		return fmt.Errorf("hvcore: dom0 kernel %s is not an x86 bzImage (no \"HdrS\" boot header at 0x202)", name)
	}
	if v := binary.LittleEndian.Uint16(bzImage[0x206:]); v < 0x0200 {
		return fmt.Errorf("hvcore: dom0 kernel %s uses boot protocol %d.%02d; a bzImage (2.00 or later) is required", name, v>>8, v&0xff)
	}
	if bzImage[0x211]&1 == 0 { // loadflags: LOADED_HIGH
		return fmt.Errorf("hvcore: dom0 kernel %s is a zImage, not a bzImage", name)
	}

	opts := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(config))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "="); ok && strings.HasPrefix(k, "CONFIG_") {
			opts[k] = v
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("hvcore: dom0 kernel %s: reading its config: %w", name, err)
	}
	if len(opts) == 0 {
		return fmt.Errorf("hvcore: dom0 kernel %s: the config has no CONFIG_ options; pass the kernel's .config (Debian: /boot/config-<version>)", name)
	}
	if opts["CONFIG_XEN_DOM0"] != "y" {
		return fmt.Errorf("hvcore: dom0 kernel %s has no Xen dom0 support (CONFIG_XEN_DOM0 is not =y; Debian's cloud flavour lacks it): use a kernel with CONFIG_XEN_DOM0=y, e.g. linux-image-<version>-amd64", name)
	}
	return nil
}

// KernelInitSize is the memory an x86 bzImage needs once unpacked: the boot
// header's init_size (boot protocol 2.10 or later).
func KernelInitSize(bzImage []byte) (uint64, error) {
	if len(bzImage) < 0x264 || string(bzImage[0x202:0x206]) != "HdrS" {
		return 0, fmt.Errorf("hvcore: not an x86 bzImage (no \"HdrS\" boot header at 0x202)")
	}
	if v := binary.LittleEndian.Uint16(bzImage[0x206:]); v < 0x020a {
		return 0, fmt.Errorf("hvcore: boot protocol %d.%02d has no init_size (2.10 or later)", v>>8, v&0xff)
	}
	return uint64(binary.LittleEndian.Uint32(bzImage[0x260:])), nil
}
