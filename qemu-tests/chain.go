package qemutests

import (
	"fmt"
	"time"

	"github.com/fwbuild/fwbuild/contract"
)

// Boot chain kinds for BootChain.
const (
	ChainUSB = "usb" // stock OVMF boots usb.img: unified xen.efi on the ESP
	ChainSPI = "spi" // spi.bin: fwbuild's launcher starts GRUB standalone from its flash region, which boots xen.gz
)

// Base timeouts of the chain's markers, before scaling (×3 under TCG by
// default, so 60-120 s). Each counts from the previous marker. Measured here
// under TCG on 2 shared cores: OVMF reaches BDS 6-14 s after QEMU starts, Xen
// prints its banner 0.1-3 s after BDS starts it (GRUB unpacking xen.gz takes
// the longer), the dom0 kernel's banner follows 8 s later (Xen builds dom0),
// and a Debian kernel reaches init some 20 s after that.
const (
	TimeoutFirmware = 30 * time.Second // QEMU start -> BDS boots our payload
	TimeoutGRUB     = 20 * time.Second // BDS -> GRUB's banner
	TimeoutXen      = 20 * time.Second // BDS or GRUB -> Xen's banner
	TimeoutLinux    = 30 * time.Second // Xen's banner -> dom0 kernel's banner
	TimeoutReady    = 40 * time.Second // dom0 banner -> ctld ready (init, xenstored, ...)
)

// BootChain returns the serial markers of fwbuild's boot chain (DESIGN.md,
// "The boot chain and its serial markers"), in order, for ChainUSB or
// ChainSPI. Their values: "bds" captures the boot option's description,
// "xen" and "linux" their versions (compare them with the board's pins),
// "ctld-ready" the fields of contract.ReadyPattern (contract.ParseReady reads its line). Guests' markers are the caller's
// to append.
//
// What each link prints (verified with Debian's OVMF 2022.11, GRUB 2.06 and
// Xen 4.17 under QEMU 7.2):
//
//	BdsDxe: starting Boot0002 "UEFI QEMU QEMU USB HARDDRIVE 1-0000:00:02.0-1" from PciRoot(0x0)/Pci(0x2,0x0)/USB(0x0,0x0)
//	fwbuild-launcher: starting payload at 0xff000000 (7819264 bytes) sha256 260ae1...
//	BdsDxe: starting Boot0000 "fwbuild qemu-q35" from VenHw(6F2A1C1E-...)
//	Welcome to GRUB!
//	(XEN) Xen version 4.17.7 (Debian 4.17.7+13-g2445b30a44-0+deb12u1) (...)
//	[    0.000000] Linux version 6.1.0-47-amd64 (debian-kernel@lists.debian.org) (...)
//	<ctld's ready line: contract.Ready>
//
// Debian's Xen prints no "Latest ChangeSet:" line at boot (its changeset is
// empty), so the chain does not wait for one.
func BootChain(kind string) ([]Marker, error) {
	var first []Marker
	switch kind {
	case ChainUSB:
		first = []Marker{
			Regexp("bds", `BdsDxe: starting Boot[0-9A-F]{4} "([^"]*USB[^"]*)"`, TimeoutFirmware),
		}
	case ChainSPI:
		first = []Marker{
			Regexp("launcher", contract.LauncherStartingPattern, TimeoutFirmware),
			Regexp("bds", `BdsDxe: starting Boot[0-9A-F]{4} "(fwbuild [^"]*)"`, TimeoutFirmware),
			Substring("grub", "Welcome to GRUB!", TimeoutGRUB),
		}
	default:
		return nil, fmt.Errorf("qemu-tests: unknown boot chain %q; want %q or %q", kind, ChainUSB, ChainSPI)
	}
	return append(first,
		Regexp("xen", `\(XEN\) Xen version (\d+\.\d+\S*)`, TimeoutXen),
		Regexp("linux", `Linux version (\d+\.\d+\S*)`, TimeoutLinux),
		Regexp("ctld-ready", contract.ReadyPattern, TimeoutReady),
	), nil
}
