package boottest

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/fwbuild/fwbuild/boardcfg"
	"github.com/fwbuild/fwbuild/internal/testdeps"
	qemutests "github.com/fwbuild/fwbuild/qemu-tests"
)

// qemu-q35-host's boots get the management NIC at 00:03.0 on QEMU's
// default user network and the guest uplink at 00:04.0 on a user network
// of its own (10.0.3.0/24); the data disk takes a slot neither asks for.
func TestHostDevicesGuestUplink(t *testing.T) {
	boards := filepath.Join(testdeps.RepoRoot(t), "boards")
	b, err := boardcfg.Load(filepath.Join(boards, "qemu-q35-host.yaml"), boards)
	if err != nil {
		t.Fatal(err)
	}
	var m qemutests.Machine
	if err := hostDevices(b, &m, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	args := strings.Join(m.Args, " ")
	for _, want := range []string{
		"-netdev user,id=fwnet0 -device virtio-net-pci,netdev=fwnet0,addr=03.0",
		"-netdev user,id=fwguest0,net=10.0.3.0/24 -device virtio-net-pci,netdev=fwguest0,addr=04.0",
	} {
		if !strings.Contains(args, want) {
			t.Errorf("QEMU arguments lack %q:\n%s", want, args)
		}
	}
	if len(m.Disks) != 1 {
		t.Fatalf("disks %+v, want the data disk", m.Disks)
	}

	// Two NICs on one slot, and a name QEMU cannot promise, are errors
	// naming the field.
	b.Network.Guests.NICs = []string{"pci:0000:00:03.0"}
	if err := hostDevices(b, &qemutests.Machine{}, t.TempDir()); err == nil || !strings.Contains(err.Error(), "network.guests.nics[0]") || !strings.Contains(err.Error(), "taken") {
		t.Errorf("guest uplink on the management NIC's slot: %v", err)
	}
	b.Network.Guests.NICs = []string{"name:eth1"}
	if err := hostDevices(b, &qemutests.Machine{}, t.TempDir()); err == nil || !strings.Contains(err.Error(), "pci: or mac:") {
		t.Errorf("guest uplink by name: %v", err)
	}
}
