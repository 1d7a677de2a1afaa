package contract

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestHostLines(t *testing.T) {
	m := Management{Addr: "10.0.2.15/24", Bridge: "xenbr0", Via: "dhcp", Took: 4200 * time.Millisecond}
	line := "~/ # " + m.String()
	if got, err := ParseManagement(line); err != nil || got != m {
		t.Errorf("ParseManagement(%q) = %+v, %v", line, got, err)
	}
	if g := regexp.MustCompile(ManagementPattern).FindStringSubmatch(line); g == nil || g[1] != "10.0.2.15" || g[2] != "24" || g[3] != "xenbr0" || g[4] != "dhcp" || g[5] != "4.2" {
		t.Errorf("ManagementPattern on %q: %q", line, g)
	}
	if _, err := ParseManagement(CtldPrefix + "management 10.0.2.15 on xenbr0 (dhcp, 1.0s)"); err == nil {
		t.Error("an address without a prefix length parsed")
	}
	for _, gb := range []GuestBridge{
		{Bridge: "xenbr1", Uplinks: []string{"eth1"}, IPv6: "absent"},
		{Bridge: "guests", Uplinks: []string{"eth1", "eth2"}, Addrs: []string{"fe80::1/64"}, IPv6: "disabled"},
		{Bridge: "lonely", IPv6: "disabled"},
	} {
		line := "~/ # " + gb.String()
		got, err := ParseGuestBridge(line)
		if err != nil || got.String() != gb.String() {
			t.Errorf("ParseGuestBridge(%q) = %+v, %v", line, got, err)
		}
		if g := regexp.MustCompile(GuestBridgePattern).FindStringSubmatch(line); g == nil || g[1] != gb.Bridge || g[4] != gb.IPv6 {
			t.Errorf("GuestBridgePattern on %q: %q", line, g)
		}
	}
	if got := (GuestBridge{Bridge: "xenbr1", Uplinks: []string{"eth1"}, IPv6: "absent"}).String(); got != CtldPrefix+"guest bridge xenbr1 uplinks=eth1 addresses=none ipv6=absent" {
		t.Errorf("guest bridge line %q", got)
	}
	iso := regexp.MustCompile(GuestBridgeIsolatedPattern)
	if !iso.MatchString(GuestBridge{Bridge: "xenbr1", Uplinks: []string{"eth1"}, IPv6: "absent"}.String()) ||
		iso.MatchString(GuestBridge{Bridge: "xenbr1", Addrs: []string{"10.0.3.9/24"}, IPv6: "absent"}.String()) {
		t.Error("GuestBridgeIsolatedPattern: wrong on a bridge without and with an address")
	}
	if _, err := ParseGuestBridge(CtldPrefix + "guest bridge xenbr1 uplinks=eth1 addresses=none ipv6=on"); err == nil {
		t.Error("a guest bridge line with ipv6=on parsed")
	}
	d := DataDiskReady{ID: "serial:FWDATA0", Dev: "/dev/vda", Action: "prepared"}
	if got, err := ParseDataDiskReady(d.String()); err != nil || got != d {
		t.Errorf("ParseDataDiskReady(%q) = %+v, %v", d, got, err)
	}
	if g := regexp.MustCompile(DataDiskPattern).FindStringSubmatch(d.String()); g == nil || g[1] != d.ID || g[2] != d.Dev || g[3] != "prepared" {
		t.Errorf("DataDiskPattern: %q", g)
	}
	c := GuestDiskCreated{Guest: "store", Disk: "root", Size: 64 << 20}
	if !regexp.MustCompile(GuestDiskCreatedPattern("store", "root")).MatchString(c.String()) {
		t.Errorf("GuestDiskCreatedPattern does not match %q", c)
	}
	f := Failed{Step: "storage", Reason: "data disk serial:X (/dev/vdb) holds a GPT"}
	if !regexp.MustCompile(FailurePattern).MatchString(f.String()) {
		t.Errorf("FailurePattern misses %q", f)
	}
}

func TestIDs(t *testing.T) {
	for _, c := range []struct{ id, kind, value, err string }{
		{"mac:52:54:00:AB:cd:ef", IDMAC, "52:54:00:ab:cd:ef", ""},
		{"pci:0000:00:03.0", IDPCI, "0000:00:03.0", ""},
		{"name:eth0", IDName, "eth0", ""},
		{"pci:0000:00:03.8", "", "", "not a PCI address"},
		{"eth0", "", "", "want mac:"},
		{"name:a/b", "", "", "not an interface name"},
	} {
		k, v, err := ParseNICID(c.id)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseNICID(%q): %v, want %q", c.id, err, c.err)
			}
			continue
		}
		if err != nil || k != c.kind || v != c.value {
			t.Errorf("ParseNICID(%q) = %q %q %v", c.id, k, v, err)
		}
	}
	for _, id := range []string{"serial:FWDATA0", "wwn:naa.5000c500a1b2c3d4", "path:pci-0000:00:05.0"} {
		if _, _, err := ParseDiskID(id); err != nil {
			t.Errorf("ParseDiskID(%q): %v", id, err)
		}
	}
	for _, id := range []string{"serial:", "label:x", "path:../sda", "serial:a b"} {
		if _, _, err := ParseDiskID(id); err == nil {
			t.Errorf("ParseDiskID(%q) accepted", id)
		}
	}
}

func TestHostConfigRoundTrip(t *testing.T) {
	h := HostConfig{
		Network: &Network{Bridge: "xenbr0", NICs: []string{"pci:0000:00:03.0"}},
		Storage: &Storage{Data: DataDisk{ID: "serial:FWDATA0"}},
		Guests:  []GuestDisks{{Name: "store", Disks: []GuestDisk{{Name: "root", Size: 1 << 26}}}},
	}
	b, err := h.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseHostConfig(b)
	if err != nil || got.Network.Bridge != "xenbr0" || got.Guests[0].Disks[0].Size != 1<<26 {
		t.Errorf("round trip: %+v %v", got, err)
	}
	if _, err := ParseHostConfig([]byte(`{"network":{"bridge":"xenbr0","nics":["pci:0000:00:03.0"]},"colour":1}`)); err == nil {
		t.Error("an unknown field parsed")
	}
	h.Network.Guests = &GuestNetwork{Bridge: "xenbr1", NICs: []string{"pci:0000:00:04.0"}}
	if b, err = h.Encode(); err != nil {
		t.Fatal(err)
	}
	if got, err := ParseHostConfig(b); err != nil || got.Network.Guests.Bridge != "xenbr1" || got.Network.Guests.NICs[0] != "pci:0000:00:04.0" {
		t.Errorf("round trip with a guest network: %+v %v", got.Network, err)
	}
	for _, g := range []struct {
		gn   GuestNetwork
		want string
	}{
		{GuestNetwork{Bridge: "xenbr0"}, "network.guests.bridge"},
		{GuestNetwork{Bridge: "xenbr1", NICs: []string{"PCI:0000:00:03.0"}}, "unknown kind"},
		{GuestNetwork{Bridge: "xenbr1", NICs: []string{"pci:0000:00:03.0"}}, "is a management NIC too"},
	} {
		h.Network.Guests = &g.gn
		if _, err := h.Encode(); err == nil || !strings.Contains(err.Error(), g.want) {
			t.Errorf("guest network %+v: %v, want %q", g.gn, err, g.want)
		}
	}
	h.Network.Guests = nil
	h.Storage = nil
	if _, err := h.Encode(); err == nil || !strings.Contains(err.Error(), "no data disk") {
		t.Errorf("guest disks without a data disk: %v", err)
	}
}

// Guests' NICs default to the guest bridge, else the management bridge.
func TestGuestBridge(t *testing.T) {
	mgmt := &Network{Bridge: "xenbr0", NICs: []string{"pci:0000:00:03.0"}}
	withGuests := *mgmt
	withGuests.Guests = &GuestNetwork{Bridge: "guests"}
	for _, c := range []struct {
		h    *HostConfig
		want string
	}{
		{nil, ""}, {&HostConfig{}, ""}, {&HostConfig{Network: mgmt}, "xenbr0"}, {&HostConfig{Network: &withGuests}, "guests"},
	} {
		if got := c.h.GuestBridge(); got != c.want {
			t.Errorf("GuestBridge(%+v) = %q, want %q", c.h, got, c.want)
		}
	}
}
