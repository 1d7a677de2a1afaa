package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/fwbuild/fwbuild/contract"
)

// linkInfo is a network interface as a NIC identifier sees it.
type linkInfo struct {
	Name, MAC, PCI, Type string
}

// netOps is the kernel's network side the management network needs.
type netOps interface {
	links() ([]linkInfo, error)
	// ensureBridge creates the bridge if needed, gives it mac, brings it up.
	ensureBridge(name string, mac net.HardwareAddr) error
	enslave(link, bridge string) error
	setStatic(bridge string, addr *net.IPNet, gw net.IP) error
	// dhcp asks for an IPv4 lease on the bridge, configures it (address,
	// routes, resolv.conf) and returns the address.
	dhcp(ctx context.Context, bridge string) (*net.IPNet, error)
	// addBridge creates the bridge if needed and gives it mac (none: the
	// kernel's), leaving it down, so that its sysctls can be set before
	// the kernel configures anything on it.
	addBridge(name string, mac net.HardwareAddr) error
	// linkUp brings an interface up.
	linkUp(name string) error
	// addrs lists an interface's addresses (any family) as prefixes.
	addrs(name string) ([]string, error)
}

// matchNIC finds the physical interface an identifier names among links.
// Virtual interfaces (bridges, vifs, loopback) never match, so a MAC that a
// bridge has taken over still names its NIC.
func matchNIC(id string, links []linkInfo) (linkInfo, error) {
	kind, value, err := contract.ParseNICID(id)
	if err != nil {
		return linkInfo{}, err
	}
	var found []linkInfo
	for _, l := range links {
		if l.Type != "device" && l.Type != "" {
			continue
		}
		switch {
		case kind == contract.IDMAC && l.MAC == value,
			kind == contract.IDPCI && l.PCI == value,
			kind == contract.IDName && l.Name == value:
			found = append(found, l)
		}
	}
	switch len(found) {
	case 0:
		var have []string
		for _, l := range links {
			if l.Type == "device" || l.Type == "" {
				have = append(have, fmt.Sprintf("%s (mac %s, pci %s)", l.Name, l.MAC, orNone(l.PCI)))
			}
		}
		return linkInfo{}, fmt.Errorf("nic %s: no such interface (have: %s)", id, orNone(strings.Join(have, ", ")))
	case 1:
		return found[0], nil
	}
	return linkInfo{}, fmt.Errorf("nic %s: matches %d interfaces", id, len(found))
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// bringUpNetwork enslaves the profile's NICs to the management bridge and
// gives the bridge its address, by DHCP or statically, and prints the
// management line (or a FAILED network line naming the NIC). The bridge is
// created even when the address cannot be had, so guests' vifs still join
// it. NICs appear when their drivers have probed: wait up to wait for them.
func (a *agent) bringUpNetwork(ctx context.Context, n netOps, cfg *contract.Network, wait time.Duration) error {
	fail := func(err error) error {
		a.say(contract.Failed{Step: "network", Reason: err.Error()})
		return err
	}
	start := time.Now()
	nics, err := a.waitNICs(ctx, n, cfg.NICs, wait)
	if err != nil {
		return fail(err)
	}
	mac, _ := net.ParseMAC(nics[0].MAC)
	if err := n.ensureBridge(cfg.Bridge, mac); err != nil {
		return fail(fmt.Errorf("bridge %s: %w", cfg.Bridge, err))
	}
	for i, l := range nics {
		if err := n.enslave(l.Name, cfg.Bridge); err != nil {
			return fail(fmt.Errorf("nic %s (%s): %w", cfg.NICs[i], l.Name, err))
		}
	}
	names := func() string {
		var s []string
		for i, l := range nics {
			s = append(s, cfg.NICs[i]+" ("+l.Name+")")
		}
		return strings.Join(s, ", ")
	}
	if cfg.Address != "" {
		p, err := netip.ParsePrefix(cfg.Address)
		if err != nil {
			return fail(fmt.Errorf("address %q: %w", cfg.Address, err))
		}
		ipn := &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
		var gw net.IP
		if cfg.Gateway != "" {
			gw = net.ParseIP(cfg.Gateway)
		}
		if err := n.setStatic(cfg.Bridge, ipn, gw); err != nil {
			return fail(fmt.Errorf("nic %s: %w", names(), err))
		}
		if len(cfg.DNS) > 0 {
			var b strings.Builder
			for _, d := range cfg.DNS {
				fmt.Fprintf(&b, "nameserver %s\n", d)
			}
			if err := a.sys.writeFile("/etc/resolv.conf", []byte(b.String()), 0o644); err != nil {
				return fail(err)
			}
		}
		a.mgmt = p.Addr()
		a.say(contract.Management{Addr: p.String(), Bridge: cfg.Bridge, Via: "static", Took: time.Since(start)})
		return nil
	}
	addr, err := n.dhcp(ctx, cfg.Bridge)
	if err != nil {
		return fail(fmt.Errorf("nic %s: DHCP on %s: %w", names(), cfg.Bridge, err))
	}
	ones, _ := addr.Mask.Size()
	a.mgmt, _ = netip.AddrFromSlice(addr.IP)
	a.mgmt = a.mgmt.Unmap()
	a.say(contract.Management{Addr: fmt.Sprintf("%s/%d", addr.IP, ones), Bridge: cfg.Bridge, Via: "dhcp", Took: time.Since(start)})
	return nil
}

// waitNICs finds the interface each identifier names, waiting up to wait
// for drivers still probing.
func (a *agent) waitNICs(ctx context.Context, n netOps, ids []string, wait time.Duration) ([]linkInfo, error) {
	var nics []linkInfo
	deadline := time.Now().Add(wait)
	for _, id := range ids {
		for {
			links, err := n.links()
			if err != nil {
				return nil, fmt.Errorf("list interfaces: %w", err)
			}
			l, err := matchNIC(id, links)
			if err == nil {
				nics = append(nics, l)
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return nil, err
			}
			time.Sleep(a.cfg.Poll)
		}
	}
	return nics, nil
}

// Sysctls of the guest bridge and its ports. The kernel's IPv4 is the weak
// host model: without them a guest could ARP for the management address on
// the guest bridge and reach the Redfish service through it.
const (
	ipv6Sysctls = "/proc/sys/net/ipv6"
	// arp_ignore 8: answer no ARP request on the interface, for any
	// local address.
	arpIgnoreNone = "8\n"
	// rp_filter 1 (strict): drop a packet whose source is not routed back
	// out of the interface it came in on; no route leads to the guest
	// bridge, so every IPv4 packet the guests address to the control
	// domain is dropped.
	rpFilterStrict = "1\n"
)

func ipv6Disable(ifname string) string { return ipv6Sysctls + "/conf/" + ifname + "/disable_ipv6" }
func ipv4Conf(ifname, key string) string {
	return "/proc/sys/net/ipv4/conf/" + ifname + "/" + key
}

// bringUpGuestNetwork makes the guest network's bridge, apart from the
// management bridge, and enslaves its uplink NICs to it. The control
// domain gets no address there: no DHCP, no static address, IPv6 disabled
// on the bridge and its uplinks before they come up (so no link-local
// address either, and no router solicitation leaves on the guests'
// segment), ARP answered for nothing and IPv4 to the control domain
// dropped (rp_filter). It reads the bridge's addresses back and prints
// contract.GuestBridge, or a FAILED guest-network line. mgmtIDs are the
// management NICs: another identifier of one of them must not put it on
// the guest bridge too.
func (a *agent) bringUpGuestNetwork(ctx context.Context, n netOps, g *contract.GuestNetwork, mgmtIDs []string, wait time.Duration) error {
	fail := func(err error) error {
		a.say(contract.Failed{Step: "guest-network", Reason: err.Error()})
		return err
	}
	nics, err := a.waitNICs(ctx, n, g.NICs, wait)
	if err != nil {
		return fail(fmt.Errorf("bridge %s: %w", g.Bridge, err))
	}
	if links, err := n.links(); err == nil {
		for _, id := range mgmtIDs {
			m, err := matchNIC(id, links)
			if err != nil {
				continue
			}
			for i, l := range nics {
				if l.Name == m.Name {
					return fail(fmt.Errorf("bridge %s: nic %s (%s) is the management NIC %s", g.Bridge, g.NICs[i], l.Name, id))
				}
			}
		}
	}
	var mac net.HardwareAddr
	if len(nics) > 0 {
		mac, _ = net.ParseMAC(nics[0].MAC)
	}
	if err := n.addBridge(g.Bridge, mac); err != nil {
		return fail(fmt.Errorf("bridge %s: %w", g.Bridge, err))
	}
	ipv6 := "absent"
	if a.sys.exists(ipv6Sysctls) {
		ipv6 = "disabled"
	}
	quiet := func(ifname string) error {
		if ipv6 == "disabled" {
			if err := a.sys.writeFile(ipv6Disable(ifname), []byte("1\n"), 0o644); err != nil {
				return fmt.Errorf("disable IPv6 on %s: %w", ifname, err)
			}
		}
		return nil
	}
	if err := quiet(g.Bridge); err != nil {
		return fail(err)
	}
	for _, kv := range [][2]string{{"arp_ignore", arpIgnoreNone}, {"rp_filter", rpFilterStrict}} {
		if err := a.sys.writeFile(ipv4Conf(g.Bridge, kv[0]), []byte(kv[1]), 0o644); err != nil {
			return fail(fmt.Errorf("bridge %s: %s: %w", g.Bridge, kv[0], err))
		}
	}
	var uplinks []string
	for i, l := range nics {
		if err := quiet(l.Name); err != nil {
			return fail(fmt.Errorf("nic %s: %w", g.NICs[i], err))
		}
		if err := n.enslave(l.Name, g.Bridge); err != nil {
			return fail(fmt.Errorf("nic %s (%s): %w", g.NICs[i], l.Name, err))
		}
		uplinks = append(uplinks, l.Name)
	}
	if err := n.linkUp(g.Bridge); err != nil {
		return fail(fmt.Errorf("bridge %s: up: %w", g.Bridge, err))
	}
	addrs, err := n.addrs(g.Bridge)
	if err != nil {
		return fail(fmt.Errorf("bridge %s: read its addresses back: %w", g.Bridge, err))
	}
	if len(addrs) > 0 {
		// Someone else's (an earlier run's, an operator's): the control
		// domain would answer the guests there.
		return fail(fmt.Errorf("bridge %s has addresses %s: the control domain must have none on the guest network", g.Bridge, strings.Join(addrs, ", ")))
	}
	a.say(contract.GuestBridge{Bridge: g.Bridge, Uplinks: uplinks, IPv6: ipv6})
	return nil
}
