package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/u-root/u-root/pkg/dhclient"
	"github.com/vishvananda/netlink"
)

// dhcp uses u-root's DHCP client (insomniacslk/dhcp underneath), which
// also sets the default route and writes /etc/resolv.conf.
func (linuxHost) dhcp(ctx context.Context, bridge string) (*net.IPNet, error) {
	l, err := netlink.LinkByName(bridge)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var last error = errors.New("no answer")
	for r := range dhclient.SendRequests(ctx, []netlink.Link{l}, true, false, dhclient.Config{Timeout: 6 * time.Second, Retries: 4}, 10*time.Second) {
		if r.Err != nil {
			last = r.Err
			continue
		}
		if err := r.Lease.Configure(); err != nil {
			return nil, fmt.Errorf("configure lease: %w", err)
		}
		p4, ok := r.Lease.(*dhclient.Packet4)
		if !ok || p4.Lease() == nil {
			return nil, errors.New("lease without an IPv4 address")
		}
		return p4.Lease(), nil
	}
	return nil, last
}
