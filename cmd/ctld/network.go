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
	var nics []linkInfo
	deadline := time.Now().Add(wait)
	for _, id := range cfg.NICs {
		for {
			links, err := n.links()
			if err != nil {
				return fail(fmt.Errorf("list interfaces: %w", err))
			}
			l, err := matchNIC(id, links)
			if err == nil {
				nics = append(nics, l)
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fail(err)
			}
			time.Sleep(a.cfg.Poll)
		}
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
