package boardcfg

import (
	"strings"
	"testing"

	"github.com/fwbuild/fwbuild/contract"
)

// host is appended to valid (which ends with qemu.memory at line 40, so host starts at 41): a
// network, a data disk and a guest with a disk and a NIC.
const host = `network:
  bridge: xenbr0
  nics: ["pci:0000:00:03.0"]
storage:
  data: {id: "serial:FWDATA0"}
guests:
  - name: store
    memory: 64MiB
    kernel: dom0
    autostart: true
    disks:
      - {name: root, size: 64MiB}
    nics:
      - {mac: "00:16:3e:00:00:01"}
`

func TestHostProfile(t *testing.T) {
	dir := t.TempDir()
	b, err := Load(writeProfile(t, dir, "t1.yaml", valid+host), dir)
	if err != nil {
		t.Fatal(err)
	}
	hc := b.HostConfig()
	if err := hc.Validate(); err != nil {
		t.Fatal(err)
	}
	if hc.Network.Bridge != "xenbr0" || hc.Network.Address != "" || hc.Storage.Data.ID != "serial:FWDATA0" ||
		len(hc.Guests) != 1 || hc.Guests[0].Disks[0] != (contract.GuestDisk{Name: "root", Size: 64 << 20}) {
		t.Errorf("host config %+v", hc)
	}
}

func TestBadHostProfiles(t *testing.T) {
	cases := []struct{ name, old, new, want string }{
		{"nic kind", `nics: ["pci:0000:00:03.0"]`, `nics: ["slot:3"]`, `t1.yaml:42:10: network.nics[0]: nic "slot:3": unknown kind "slot"`},
		{"nic pci", `nics: ["pci:0000:00:03.0"]`, `nics: ["pci:00:03.0"]`, `t1.yaml:42:10: network.nics[0]: nic "pci:00:03.0": "00:03.0" is not a PCI address`},
		{"nic mac", `nics: ["pci:0000:00:03.0"]`, `nics: ["mac:52:54:00:12:34"]`, `network.nics[0]: nic "mac:52:54:00:12:34": "52:54:00:12:34" is not a MAC address`},
		{"no nics", `  nics: ["pci:0000:00:03.0"]`, `  nics: []`, `t1.yaml:42:9: network.nics: name at least one NIC`},
		{"bridge name", "  bridge: xenbr0", "  bridge: a-very-long-bridge-name", `t1.yaml:41:11: network.bridge: "a-very-long-bridge-name": an interface name is 1-15`},
		{"static bad", "  bridge: xenbr0", "  bridge: xenbr0\n  address: 10.0.0.1", `t1.yaml:42:12: network.address: "10.0.0.1": want dhcp or an address with its prefix length`},
		{"gateway with dhcp", "  bridge: xenbr0", "  bridge: xenbr0\n  gateway: 10.0.0.1", `t1.yaml:42:12: network.gateway: a gateway goes with a static address`},
		{"dns bad", "  bridge: xenbr0", "  bridge: xenbr0\n  address: 10.0.0.2/24\n  dns: [ten]", `t1.yaml:43:9: network.dns[0]: "ten" is not an IP address`},
		{"disk id kind", `id: "serial:FWDATA0"`, `id: "uuid:1234"`, `t1.yaml:44:14: storage.data.id: disk "uuid:1234": unknown kind "uuid": want serial, wwn or path`},
		{"disk id slash", `id: "serial:FWDATA0"`, `id: "path:/dev/sdb"`, `storage.data.id: disk "path:/dev/sdb": "/dev/sdb" has a space, '/'`},
		{"disk size", "{name: root, size: 64MiB}", "{name: root, size: 1000}", `t1.yaml:51:28: guests[0].disks[0].size: 1000: give whole MiB`},
		{"disk name", "{name: root, size: 64MiB}", "{name: Root, size: 64MiB}", `t1.yaml:51:16: guests[0].disks[0].name: "Root": a disk name is lower-case`},
		{"disk missing size", "{name: root, size: 64MiB}", "{name: root}", `guests[0].disks[0].size: required field is missing`},
		{"disk twice", "      - {name: root, size: 64MiB}", "      - {name: root, size: 64MiB}\n      - {name: root, size: 8MiB}", `t1.yaml:52:16: guests[0].disks[1].name: disk "root" is declared twice for guest store`},
		{"disks without data disk", "storage:\n  data: {id: \"serial:FWDATA0\"}\n", "", `guests[0].disks: guest disks live on the data disk: add storage:`},
		{"nic other bridge", `{mac: "00:16:3e:00:00:01"}`, `{bridge: br9}`, `t1.yaml:53:18: guests[0].nics[0].bridge: "br9": ctld creates only the management bridge (xenbr0)`},
		{"nic multicast", `{mac: "00:16:3e:00:00:01"}`, `{mac: "01:16:3e:00:00:01"}`, `guests[0].nics[0].mac: "01:16:3e:00:00:01" is a multicast address`},
		{"nic without network", "network:\n  bridge: xenbr0\n  nics: [\"pci:0000:00:03.0\"]\n", "", `guests[0].nics[0].bridge: no bridge named and no management network`},
		{"unknown storage key", `  data: {id: "serial:FWDATA0"}`, `  data: {id: "serial:FWDATA0", format: true}`, `storage.data.format: unknown field`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(host, c.old) {
				t.Fatalf("test bug: %q not in host", c.old)
			}
			dir := t.TempDir()
			_, err := Load(writeProfile(t, dir, "t1.yaml", valid+strings.Replace(host, c.old, c.new, 1)), dir)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error\n  %v\nwant it to contain\n  %s", err, c.want)
			}
		})
	}
}

// guestNet is host with a guest network (lines 43-45 of the profile).
var guestNet = strings.Replace(host, "  nics: [\"pci:0000:00:03.0\"]\n",
	"  nics: [\"pci:0000:00:03.0\"]\n  guests:\n    bridge: xenbr1\n    nics: [\"pci:0000:00:04.0\"]\n", 1)

func TestGuestNetworkProfile(t *testing.T) {
	dir := t.TempDir()
	b, err := Load(writeProfile(t, dir, "t1.yaml", valid+guestNet), dir)
	if err != nil {
		t.Fatal(err)
	}
	hc := b.HostConfig()
	if err := hc.Validate(); err != nil {
		t.Fatal(err)
	}
	if g := hc.Network.Guests; g == nil || g.Bridge != "xenbr1" || len(g.NICs) != 1 || g.NICs[0] != "pci:0000:00:04.0" || hc.Network.Bridge != "xenbr0" {
		t.Errorf("host config network %+v, guests %+v", hc.Network, hc.Network.Guests)
	}
	if got := b.GuestBridge(); got != "xenbr1" {
		t.Errorf("guests' default bridge %q, want the guest bridge xenbr1", got)
	}
	// No NICs: a bridge the guests share with each other only; the name defaults.
	b, err = Load(writeProfile(t, dir, "t2.yaml", valid+strings.Replace(guestNet, "    bridge: xenbr1\n    nics: [\"pci:0000:00:04.0\"]\n", "    {}\n", 1)), dir)
	if err != nil {
		t.Fatal(err)
	}
	if g := b.HostConfig().Network.Guests; g == nil || g.Bridge != DefaultGuestBridge || len(g.NICs) != 0 {
		t.Errorf("guest network without NICs: %+v", g)
	}
	// Without network.guests the guests join the management bridge.
	b, err = Load(writeProfile(t, dir, "t3.yaml", valid+host), dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := b.GuestBridge(); got != "xenbr0" || b.HostConfig().Network.Guests != nil {
		t.Errorf("no guest network: guests' bridge %q, host config %+v", got, b.HostConfig().Network.Guests)
	}
}

func TestBadGuestNetworks(t *testing.T) {
	cases := []struct{ name, old, new, want string }{
		{"same bridge", "    bridge: xenbr1", "    bridge: xenbr0", `t1.yaml:44:13: network.guests.bridge: "xenbr0" is the management bridge (network.bridge)`},
		{"default is management", "  bridge: xenbr0\n", "  bridge: xenbr1\n", `network.guests.bridge: "xenbr1" is the management bridge`},
		{"bridge name", "    bridge: xenbr1", "    bridge: guests/1", `t1.yaml:44:13: network.guests.bridge: "guests/1": an interface name is 1-15`},
		{"nic on both", `nics: ["pci:0000:00:04.0"]`, `nics: ["pci:0000:00:03.0"]`, `t1.yaml:45:12: network.guests.nics[0]: "pci:0000:00:03.0" is a management NIC (network.nics[0])`},
		{"nic on both, other case", `nics: ["pci:0000:00:04.0"]`, `nics: ["PCI:0000:00:03.0"]`, `network.guests.nics[0]: nic "PCI:0000:00:03.0": unknown kind "PCI"`},
		{"nic twice", `nics: ["pci:0000:00:04.0"]`, `nics: ["mac:52:54:00:00:00:04", "mac:52:54:00:00:00:04"]`, `network.guests.nics[1]: "mac:52:54:00:00:00:04" is listed twice`},
		{"nic bad", `nics: ["pci:0000:00:04.0"]`, `nics: ["pci:04.0"]`, `t1.yaml:45:12: network.guests.nics[0]: nic "pci:04.0": "04.0" is not a PCI address`},
		{"unknown key", "    bridge: xenbr1", "    bridge: xenbr1\n    address: dhcp", `network.guests.address: unknown field`},
		{"guest nic on a third bridge", `{mac: "00:16:3e:00:00:01"}`, `{bridge: br9}`, `guests[0].nics[0].bridge: "br9": ctld creates only the management bridge (xenbr0) and the guest bridge (xenbr1): leave bridge out (the guests' default, xenbr1)`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(guestNet, c.old) {
				t.Fatalf("test bug: %q not in guestNet", c.old)
			}
			dir := t.TempDir()
			_, err := Load(writeProfile(t, dir, "t1.yaml", valid+strings.Replace(guestNet, c.old, c.new, 1)), dir)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error\n  %v\nwant it to contain\n  %s", err, c.want)
			}
		})
	}
	// A guest NIC may name the management bridge explicitly.
	dir := t.TempDir()
	if _, err := Load(writeProfile(t, dir, "t1.yaml", valid+strings.Replace(guestNet, `{mac: "00:16:3e:00:00:01"}`, `{bridge: xenbr0}`, 1)), dir); err != nil {
		t.Errorf("a guest NIC on the management bridge, named: %v", err)
	}
}
