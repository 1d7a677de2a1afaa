package pipeline

import (
	"strings"
	"testing"

	"github.com/fwbuild/fwbuild/boardcfg"
)

// A guest's disks and NICs become xl disk and vif specs naming ctld as the
// hotplug script, the disk's target last (xl reads the rest of the spec as
// the path).
func TestXLConfigDevices(t *testing.T) {
	g := boardcfg.Guest{Name: "store", Memory: 64 << 20, Kernel: boardcfg.GuestKernel{Ref: boardcfg.GuestKernelDom0},
		Disks: []boardcfg.GuestDisk{{Name: "root", Size: 64 << 20}, {Name: "scratch", Size: 8 << 20}},
		NICs:  []boardcfg.GuestNIC{{MAC: "00:16:3E:00:00:01"}, {}},
	}
	cfg := string(xlConfig(g, nil, "pv", "xenbr0"))
	for _, want := range []string{
		`disk = [ "format=raw, vdev=xvda, access=rw, backendtype=phy, script=/bbin/ctld, target=/var/lib/fwbuild/data/guests/store/root.img", ` +
			`"format=raw, vdev=xvdb, access=rw, backendtype=phy, script=/bbin/ctld, target=/var/lib/fwbuild/data/guests/store/scratch.img" ]`,
		`vif = [ "bridge=xenbr0, mac=00:16:3e:00:00:01, script=/bbin/ctld", "bridge=xenbr0, script=/bbin/ctld" ]`,
	} {
		if !strings.Contains(cfg, want+"\n") {
			t.Errorf("xl config lacks\n  %s\ngot\n%s", want, cfg)
		}
	}
	if cfg := string(xlConfig(boardcfg.Guest{Name: "demo", Memory: 64 << 20, Kernel: boardcfg.GuestKernel{Ref: boardcfg.GuestKernelDom0}}, nil, "pv", "")); strings.Contains(cfg, "\ndisk =") || strings.Contains(cfg, "\nvif =") {
		t.Errorf("a guest without devices got device lines:\n%q", cfg)
	}
}

// On a board with a guest network a NIC joins the guest bridge unless it
// names the management bridge.
func TestXLConfigGuestBridge(t *testing.T) {
	b := &boardcfg.Board{Network: &boardcfg.Network{NICs: []string{"pci:0000:00:03.0"}, Guests: &boardcfg.GuestNetwork{NICs: []string{"pci:0000:00:04.0"}}}}
	g := boardcfg.Guest{Name: "web", Memory: 64 << 20, Kernel: boardcfg.GuestKernel{Ref: boardcfg.GuestKernelDom0}, NICs: []boardcfg.GuestNIC{{}, {Bridge: "xenbr0"}}}
	want := `vif = [ "bridge=xenbr1, script=/bbin/ctld", "bridge=xenbr0, script=/bbin/ctld" ]`
	if cfg := string(xlConfig(g, nil, "pv", b.GuestBridge())); !strings.Contains(cfg, want+"\n") {
		t.Errorf("xl config lacks\n  %s\ngot\n%s", want, cfg)
	}
	b.Network.Guests = nil
	if got := b.GuestBridge(); got != "xenbr0" {
		t.Errorf("without a guest network the guests' bridge is %q, want xenbr0", got)
	}
}
