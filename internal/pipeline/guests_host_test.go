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
	g := boardcfg.Guest{Name: "store", Memory: 64 << 20, Kernel: "dom0",
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
	if cfg := string(xlConfig(boardcfg.Guest{Name: "demo", Memory: 64 << 20, Kernel: "dom0"}, nil, "pv", "")); strings.Contains(cfg, "\ndisk =") || strings.Contains(cfg, "\nvif =") {
		t.Errorf("a guest without devices got device lines:\n%q", cfg)
	}
}
