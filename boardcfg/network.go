package boardcfg

import (
	"fmt"
	"net/netip"

	"github.com/fwbuild/fwbuild/contract"
)

// Network is the control domain's management network (contract.Network):
// the NICs it enslaves to Bridge, which carries the host's address and
// which guests' vifs attach to by default unless Guests names a guest
// network.
type Network struct {
	// Bridge is the bridge's interface name; default DefaultBridge.
	Bridge string `yaml:"bridge,omitempty"`
	// NICs name the physical interfaces by a stable identifier:
	// "mac:52:54:00:12:34:56", "pci:0000:00:03.0" or "name:eth0".
	NICs []string `yaml:"nics"`
	// Address is "dhcp" (the default) or a static address with its prefix
	// length; Gateway and DNS go with a static address.
	Address string   `yaml:"address,omitempty"`
	Gateway string   `yaml:"gateway,omitempty"`
	DNS     []string `yaml:"dns,omitempty"`
	// Guests, if set, is a network for the guests apart from management:
	// their vifs join its bridge by default, and the control domain has
	// no address there, so its services (Redfish, SSH) cannot be reached
	// from it.
	Guests *GuestNetwork `yaml:"guests,omitempty"`
}

// GuestNetwork is the guests' bridge and its uplink NICs (identifiers as in
// Network.NICs, none of them a management NIC). Without NICs the bridge
// connects the guests with each other only.
type GuestNetwork struct {
	// Bridge is the bridge's interface name; default DefaultGuestBridge.
	Bridge string   `yaml:"bridge,omitempty"`
	NICs   []string `yaml:"nics,omitempty"`
}

// DefaultBridge is the management bridge's name when the profile names none.
const DefaultBridge = "xenbr0"

// DefaultGuestBridge is the guest bridge's name when network.guests names none.
const DefaultGuestBridge = "xenbr1"

// BridgeName is the guest bridge's name with the default applied.
func (g *GuestNetwork) BridgeName() string {
	if g.Bridge == "" {
		return DefaultGuestBridge
	}
	return g.Bridge
}

// GuestBridge is the bridge guests' NICs join when they name none
// (contract.HostConfig.GuestBridge, the rule ctld applies too).
func (b *Board) GuestBridge() string {
	h := b.HostConfig()
	return h.GuestBridge()
}

// BridgeName is the bridge's name with the default applied.
func (n *Network) BridgeName() string {
	if n.Bridge == "" {
		return DefaultBridge
	}
	return n.Bridge
}

// Storage is the host's local storage.
type Storage struct {
	Data *DataDisk `yaml:"data"`
}

// DataDisk is the disk ctld keeps guest definitions and disks on, named by
// a stable identifier ("serial:...", "wwn:..." or "path:pci-..."). Wipe lets
// ctld overwrite a disk that holds foreign partitions or file systems.
type DataDisk struct {
	ID   string `yaml:"id"`
	Wipe bool   `yaml:"wipe,omitempty"`
}

// GuestDisk is a guest's virtual disk on the data disk: empty (sparse), or a
// copy of a guest image's root file system (From).
type GuestDisk struct {
	Name string `yaml:"name"`
	Size Size   `yaml:"size"`
	From string `yaml:"from,omitempty"`
}

// GuestNIC is a guest's virtual NIC: a vif on Bridge (default: the guest
// bridge, or the management bridge on a board without a guest network),
// with a fixed MAC or one Xen picks. Bridge may name the management bridge
// on a board with a guest network: that guest is then on the management
// segment and can reach the control domain's services like any host there.
type GuestNIC struct {
	Bridge string `yaml:"bridge,omitempty"`
	MAC    string `yaml:"mac,omitempty"`
}

// Bounds for guest devices: xvda..xvdz, and a disk size far from overflow.
const (
	maxGuestDisks   = 26
	maxGuestNICs    = 8
	maxGuestDiskLen = 1 << 50 // 1 PiB
)

// HostConfig is what ctld needs to know about the network, the data disk
// and the guests' disks (written into the initramfs by the build).
func (b *Board) HostConfig() contract.HostConfig {
	var h contract.HostConfig
	if n := b.Network; n != nil {
		h.Network = &contract.Network{Bridge: n.BridgeName(), NICs: n.NICs, Gateway: n.Gateway, DNS: n.DNS}
		if n.Address != "dhcp" {
			h.Network.Address = n.Address
		}
		if g := n.Guests; g != nil {
			h.Network.Guests = &contract.GuestNetwork{Bridge: g.BridgeName(), NICs: g.NICs}
		}
	}
	if s := b.Storage; s != nil && s.Data != nil {
		h.Storage = &contract.Storage{Data: contract.DataDisk{ID: s.Data.ID, Wipe: s.Data.Wipe}}
	}
	for _, g := range b.Guests {
		if len(g.Disks) == 0 {
			continue
		}
		gd := contract.GuestDisks{Name: g.Name}
		for _, d := range g.Disks {
			gd.Disks = append(gd.Disks, contract.GuestDisk{Name: d.Name, Size: int64(d.Size), From: d.From})
		}
		h.Guests = append(h.Guests, gd)
	}
	return h
}

func (b *Board) validateHost() []error {
	var errs []error
	add := func(e error) { errs = append(errs, e) }
	if n := b.Network; n != nil {
		if n.Bridge != "" && !contract.ValidIfName(n.Bridge) {
			add(b.errAt("network.bridge", "%q: an interface name is 1-15 letters, digits, '-', '_' or '.'", n.Bridge))
		}
		if len(n.NICs) == 0 {
			add(b.errAt("network.nics", "name at least one NIC (mac:<address>, pci:<0000:00:03.0> or name:<eth0>)"))
		}
		seen := map[string]bool{}
		for i, id := range n.NICs {
			f := fmt.Sprintf("network.nics[%d]", i)
			if _, _, err := contract.ParseNICID(id); err != nil {
				add(b.errAt(f, "%v", err))
			} else if seen[id] {
				add(b.errAt(f, "%q is listed twice", id))
			}
			seen[id] = true
		}
		switch n.Address {
		case "", "dhcp":
			if n.Gateway != "" {
				add(b.errAt("network.gateway", "a gateway goes with a static address (network.address), not DHCP"))
			}
			if len(n.DNS) > 0 {
				add(b.errAt("network.dns", "DNS servers go with a static address (network.address), not DHCP"))
			}
		default:
			if p, err := netip.ParsePrefix(n.Address); err != nil || !p.Addr().Is4() && !p.Addr().Is6() {
				add(b.errAt("network.address", "%q: want dhcp or an address with its prefix length, e.g. 192.0.2.10/24", n.Address))
			}
		}
		if n.Gateway != "" {
			if _, err := netip.ParseAddr(n.Gateway); err != nil {
				add(b.errAt("network.gateway", "%q is not an IP address", n.Gateway))
			}
		}
		for i, d := range n.DNS {
			if _, err := netip.ParseAddr(d); err != nil {
				add(b.errAt(fmt.Sprintf("network.dns[%d]", i), "%q is not an IP address", d))
			}
		}
		if g := n.Guests; g != nil {
			errs = append(errs, b.validateGuestNetwork(n, g)...)
		}
	}
	hasData := b.Storage != nil && b.Storage.Data != nil
	if s := b.Storage; s != nil {
		if s.Data == nil {
			add(b.errAt("storage.data", "required field is missing (storage: {data: {id: serial:...}})"))
		} else if s.Data.ID == "" {
			add(b.missing("storage.data.id"))
		} else if _, _, err := contract.ParseDiskID(s.Data.ID); err != nil {
			add(b.errAt("storage.data.id", "%v", err))
		}
	}
	for i, g := range b.Guests {
		f := fmt.Sprintf("guests[%d]", i)
		if len(g.Disks) > maxGuestDisks {
			add(b.errAt(f+".disks", "%d disks: at most %d (xvda to xvdz)", len(g.Disks), maxGuestDisks))
		}
		if len(g.Disks) > 0 && !hasData {
			add(b.errAt(f+".disks", "guest disks live on the data disk: add storage: {data: {id: ...}} to the profile"))
		}
		names := map[string]bool{}
		for j, d := range g.Disks {
			df := fmt.Sprintf("%s.disks[%d]", f, j)
			switch {
			case d.Name == "":
				add(b.missing(df + ".name"))
			case !guestNameRE.MatchString(d.Name):
				add(b.errAt(df+".name", "%q: a disk name is lower-case letters, digits and -, starting with a letter", d.Name))
			case names[d.Name]:
				add(b.errAt(df+".name", "disk %q is declared twice for guest %s", d.Name, g.Name))
			}
			names[d.Name] = true
			switch {
			case d.Size == 0:
				add(b.missing(df + ".size"))
			case d.Size%(1<<20) != 0:
				add(b.errAt(df+".size", "%v: give whole MiB", d.Size))
			case d.Size > maxGuestDiskLen:
				add(b.errAt(df+".size", "%v: at most 1PiB", d.Size))
			}
			if d.From != "" && !contract.ValidGuestName(d.From) {
				add(b.errAt(df+".from", "%q: want the name of a guest image", d.From))
			}
		}
		if len(g.NICs) > maxGuestNICs {
			add(b.errAt(f+".nics", "%d NICs: at most %d", len(g.NICs), maxGuestNICs))
		}
		for j, n := range g.NICs {
			nf := fmt.Sprintf("%s.nics[%d]", f, j)
			switch {
			case n.Bridge == "" && b.Network == nil:
				add(b.errAt(nf+".bridge", "no bridge named and no management network (network:) whose bridge the NIC could join"))
			case n.Bridge != "" && !contract.ValidIfName(n.Bridge):
				add(b.errAt(nf+".bridge", "%q: an interface name is 1-15 letters, digits, '-', '_' or '.'", n.Bridge))
			case n.Bridge != "" && !b.knownBridge(n.Bridge):
				add(b.errAt(nf+".bridge", "%q: ctld creates only %s: leave bridge out (the guests' default, %s) or name one of them", n.Bridge, b.networkBridges(), b.GuestBridge()))
			}
			if n.MAC != "" && !contract.ValidMAC(n.MAC) {
				add(b.errAt(nf+".mac", "%q: want six hex pairs separated by ':'", n.MAC))
			} else if n.MAC != "" && mustHex(n.MAC[:2])&1 != 0 {
				add(b.errAt(nf+".mac", "%q is a multicast address: the first octet must be even (Xen's own prefix is 00:16:3e)", n.MAC))
			}
		}
	}
	return errs
}

// validateGuestNetwork checks network.guests: its bridge is not the
// management bridge, and no NIC is on both (a NIC in two bridges is not
// possible, and a management NIC on the guest bridge would put the guests
// on the management segment, the thing the guest network keeps apart).
// Two identifiers of different kinds may still name one NIC: ctld refuses
// that when it finds them.
func (b *Board) validateGuestNetwork(n *Network, g *GuestNetwork) []error {
	var errs []error
	add := func(e error) { errs = append(errs, e) }
	switch {
	case g.Bridge != "" && !contract.ValidIfName(g.Bridge):
		add(b.errAt("network.guests.bridge", "%q: an interface name is 1-15 letters, digits, '-', '_' or '.'", g.Bridge))
	case g.BridgeName() == n.BridgeName():
		add(b.errAt("network.guests.bridge", "%q is the management bridge (network.bridge): the guest network needs a bridge of its own", g.BridgeName()))
	}
	mgmt := map[string]int{}
	for i, id := range n.NICs {
		if k, v, err := contract.ParseNICID(id); err == nil {
			mgmt[k+":"+v] = i
		}
	}
	seen := map[string]bool{}
	for i, id := range g.NICs {
		f := fmt.Sprintf("network.guests.nics[%d]", i)
		k, v, err := contract.ParseNICID(id)
		if err != nil {
			add(b.errAt(f, "%v", err))
			continue
		}
		norm := k + ":" + v
		if j, ok := mgmt[norm]; ok {
			add(b.errAt(f, "%q is a management NIC (network.nics[%d]): a NIC joins one bridge, and the guest network is kept off the management segment", id, j))
		} else if seen[norm] {
			add(b.errAt(f, "%q is listed twice", id))
		}
		seen[norm] = true
	}
	return errs
}

// knownBridge says whether br is a bridge ctld creates.
func (b *Board) knownBridge(br string) bool {
	n := b.Network
	return n != nil && (br == n.BridgeName() || n.Guests != nil && br == n.Guests.BridgeName())
}

func (b *Board) networkBridges() string {
	switch {
	case b.Network == nil:
		return "no bridge (no network: section)"
	case b.Network.Guests != nil:
		return fmt.Sprintf("the management bridge (%s) and the guest bridge (%s)", b.Network.BridgeName(), b.Network.Guests.BridgeName())
	}
	return fmt.Sprintf("the management bridge (%s)", b.Network.BridgeName())
}

func mustHex(s string) int {
	var v int
	fmt.Sscanf(s, "%x", &v)
	return v
}
