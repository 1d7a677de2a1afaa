package contract

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
)

// HostConfig is what the profile says about the control domain as a host:
// its management network, its data disk and the disks of its guests. The
// build writes it into the initramfs (so it is inside the signed payload);
// ctld reads it at boot.
type HostConfig struct {
	Network *Network     `json:"network,omitempty"`
	Storage *Storage     `json:"storage,omitempty"`
	Guests  []GuestDisks `json:"guests,omitempty"`
}

// GuestBridge is the bridge guests' NICs join when they name none: the
// guest network's if there is one, else the management bridge; "" without
// a network. The build writes it into the profile's guests' xl configs and
// ctld gives it to VMs made through the management API.
func (h *HostConfig) GuestBridge() string {
	switch {
	case h == nil || h.Network == nil:
		return ""
	case h.Network.Guests != nil:
		return h.Network.Guests.Bridge
	}
	return h.Network.Bridge
}

// HostConfigPath is where HostConfig lives in the control domain.
const HostConfigPath = "/etc/fwbuild/host.json"

// CtldPath is ctld inside the u-root busybox. Guests' xl configs name it as
// the hotplug script of their vifs and vbds: the control domain has no bash
// for Xen's own scripts, so ctld does their work (see cmd/ctld/hotplug.go).
const CtldPath = "/bbin/ctld"

// Network is the management network: NICs enslaved to one bridge that
// carries the host's address and that guests' vifs attach to.
type Network struct {
	Bridge string `json:"bridge"`
	// NICs name the physical interfaces by a stable identifier (see
	// ParseNICID): "mac:52:54:00:12:34:56", "pci:0000:00:03.0" or
	// "name:eth0".
	NICs []string `json:"nics"`
	// Address is "" for DHCP, else a static address with its prefix
	// length ("192.0.2.10/24"); Gateway and DNS go with it.
	Address string   `json:"address,omitempty"`
	Gateway string   `json:"gateway,omitempty"`
	DNS     []string `json:"dns,omitempty"`
	// Guests, if set, is the guest network: a bridge of its own that
	// guests' vifs join by default, apart from the management segment.
	Guests *GuestNetwork `json:"guests,omitempty"`
}

// GuestNetwork is a bridge for guests' vifs with its uplink NICs (none:
// the guests reach only each other). ctld gives the control domain no
// address on it, so nothing of the control domain's (the Redfish and SSH
// services among it) answers there.
type GuestNetwork struct {
	Bridge string   `json:"bridge"`
	NICs   []string `json:"nics,omitempty"`
}

// Storage is the host's local storage.
type Storage struct {
	Data DataDisk `json:"data"`
}

// DataDisk names the data disk by a stable identifier (see ParseDiskID).
// Wipe allows ctld to overwrite a disk that holds foreign partitions or
// file systems; without it such a disk is never written.
type DataDisk struct {
	ID   string `json:"id"`
	Wipe bool   `json:"wipe,omitempty"`
}

// GuestDisks are the virtual disks ctld creates for one guest on the data
// disk (at DataGuestDisk) the first time it sees the guest.
type GuestDisks struct {
	Name  string      `json:"name"`
	Disks []GuestDisk `json:"disks"`
}

// GuestDisk is one virtual disk: a sparse file of Size bytes, or, with
// From, a copy of that guest image's root file system (DataImageFile(From,
// GuestRootFile)) grown to Size.
type GuestDisk struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
	From string `json:"from,omitempty"`
}

// GuestRootFile is the name of a guest image's root file system in the
// guest-images manifest.
const GuestRootFile = "root.img"

// DataPartitionName is the GPT partition name of fwbuild's data partition;
// DataPartitionType its type GUID (Linux file system data). A disk is
// fwbuild's when its GPT has exactly one partition, of this name and type.
const (
	DataPartitionName = "fwbuild-data"
	DataPartitionType = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
)

// NIC identifier kinds and disk identifier kinds.
const (
	IDMAC    = "mac"
	IDPCI    = "pci"
	IDName   = "name"
	IDSerial = "serial"
	IDWWN    = "wwn"
	IDPath   = "path"
)

// ParseNICID splits a NIC identifier into its kind and value and checks it.
func ParseNICID(id string) (kind, value string, err error) {
	kind, value, ok := strings.Cut(id, ":")
	if !ok || value == "" {
		return "", "", fmt.Errorf("nic %q: want mac:<address>, pci:<domain:bus:dev.fn> or name:<interface>", id)
	}
	switch kind {
	case IDMAC:
		if !isMAC(value) {
			return "", "", fmt.Errorf("nic %q: %q is not a MAC address (six hex pairs separated by ':')", id, value)
		}
		value = strings.ToLower(value)
	case IDPCI:
		if !isPCIAddr(value) {
			return "", "", fmt.Errorf("nic %q: %q is not a PCI address like 0000:00:03.0", id, value)
		}
		value = strings.ToLower(value)
	case IDName:
		if !ValidIfName(value) {
			return "", "", fmt.Errorf("nic %q: %q is not an interface name (1-15 letters, digits, '-', '_', '.')", id, value)
		}
	default:
		return "", "", fmt.Errorf("nic %q: unknown kind %q: want mac, pci or name", id, kind)
	}
	return kind, value, nil
}

// ParseDiskID splits a disk identifier into its kind and value and checks
// it: "serial:<as in /sys/block/X/serial or device/serial>", "wwn:<as in
// /sys/block/X/device/wwid or wwid>" or "path:<as a name in
// /dev/disk/by-path, e.g. pci-0000:00:05.0>".
func ParseDiskID(id string) (kind, value string, err error) {
	kind, value, ok := strings.Cut(id, ":")
	if !ok || value == "" {
		return "", "", fmt.Errorf("disk %q: want serial:<serial>, wwn:<wwn> or path:<by-path name>", id)
	}
	switch kind {
	case IDSerial, IDWWN, IDPath:
	default:
		return "", "", fmt.Errorf("disk %q: unknown kind %q: want serial, wwn or path", id, kind)
	}
	for _, r := range value {
		if r <= ' ' || r == '/' || r > '~' {
			return "", "", fmt.Errorf("disk %q: %q has a space, '/' or a non-ASCII character", id, value)
		}
	}
	return kind, value, nil
}

// ValidIfName says whether s can be a Linux interface name (IFNAMSIZ 16
// with the NUL).
func ValidIfName(s string) bool {
	if s == "" || len(s) > 15 || s == "." || s == ".." {
		return false
	}
	for _, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.'
		if !ok {
			return false
		}
	}
	return true
}

func isHex(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f' || r >= 'A' && r <= 'F') {
			return false
		}
	}
	return true
}

func isMAC(s string) bool {
	p := strings.Split(s, ":")
	if len(p) != 6 {
		return false
	}
	for _, x := range p {
		if len(x) != 2 || !isHex(x) {
			return false
		}
	}
	return true
}

// ValidMAC says whether s is a MAC address written as six hex pairs.
func ValidMAC(s string) bool { return isMAC(s) }

func isPCIAddr(s string) bool {
	// dddd:bb:dd.f
	dom, rest, ok := strings.Cut(s, ":")
	if !ok || len(dom) != 4 || !isHex(dom) {
		return false
	}
	bus, rest, ok := strings.Cut(rest, ":")
	if !ok || len(bus) != 2 || !isHex(bus) {
		return false
	}
	dev, fn, ok := strings.Cut(rest, ".")
	return ok && len(dev) == 2 && isHex(dev) && len(fn) == 1 && fn[0] >= '0' && fn[0] <= '7'
}

// Validate checks what ctld relies on.
func (h HostConfig) Validate() error {
	if n := h.Network; n != nil {
		if !ValidIfName(n.Bridge) {
			return fmt.Errorf("host config: network.bridge %q is not an interface name", n.Bridge)
		}
		if len(n.NICs) == 0 {
			return fmt.Errorf("host config: network.nics is empty")
		}
		for _, id := range n.NICs {
			if _, _, err := ParseNICID(id); err != nil {
				return fmt.Errorf("host config: network: %w", err)
			}
		}
		if n.Address == "" && (n.Gateway != "" || len(n.DNS) > 0) {
			return fmt.Errorf("host config: network: gateway and dns go with a static address")
		}
		if n.Address != "" {
			if _, err := netip.ParsePrefix(n.Address); err != nil {
				return fmt.Errorf("host config: network.address %q: want an address with its prefix length (192.0.2.10/24)", n.Address)
			}
		}
		if n.Gateway != "" {
			if _, err := netip.ParseAddr(n.Gateway); err != nil {
				return fmt.Errorf("host config: network.gateway %q is not an IP address", n.Gateway)
			}
		}
		for _, d := range n.DNS {
			if _, err := netip.ParseAddr(d); err != nil {
				return fmt.Errorf("host config: network.dns %q is not an IP address", d)
			}
		}
		if g := n.Guests; g != nil {
			if !ValidIfName(g.Bridge) || g.Bridge == n.Bridge {
				return fmt.Errorf("host config: network.guests.bridge %q is not an interface name other than the management bridge's", g.Bridge)
			}
			mgmt := map[string]bool{}
			for _, id := range n.NICs {
				k, v, _ := ParseNICID(id)
				mgmt[k+":"+v] = true
			}
			for _, id := range g.NICs {
				k, v, err := ParseNICID(id)
				if err != nil {
					return fmt.Errorf("host config: network.guests: %w", err)
				}
				if mgmt[k+":"+v] {
					return fmt.Errorf("host config: network.guests: nic %s is a management NIC too", id)
				}
			}
		}
	}
	if s := h.Storage; s != nil {
		if _, _, err := ParseDiskID(s.Data.ID); err != nil {
			return fmt.Errorf("host config: storage.data.id: %w", err)
		}
	}
	if len(h.Guests) > 0 && h.Storage == nil {
		return fmt.Errorf("host config: guests have disks but there is no data disk (storage.data)")
	}
	for _, g := range h.Guests {
		if !ValidGuestName(g.Name) {
			return fmt.Errorf("host config: guest %q: bad name", g.Name)
		}
		seen := map[string]bool{}
		for _, d := range g.Disks {
			switch {
			case !ValidGuestName(d.Name) || seen[d.Name]:
				return fmt.Errorf("host config: guest %s: disk name %q bad or repeated", g.Name, d.Name)
			case d.Size <= 0:
				return fmt.Errorf("host config: guest %s: disk %s: size %d", g.Name, d.Name, d.Size)
			case d.From != "" && !ValidGuestName(d.From):
				return fmt.Errorf("host config: guest %s: disk %s: image %q bad", g.Name, d.Name, d.From)
			}
			seen[d.Name] = true
		}
	}
	return nil
}

// Encode writes the host config (validated).
func (h HostConfig) Encode() ([]byte, error) {
	if err := h.Validate(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(h, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// ParseHostConfig reads and validates a host config.
func ParseHostConfig(b []byte) (HostConfig, error) {
	var h HostConfig
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return HostConfig{}, fmt.Errorf("host config: %w", err)
	}
	if err := h.Validate(); err != nil {
		return HostConfig{}, err
	}
	return h, nil
}
