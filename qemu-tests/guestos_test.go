package qemutests_test

// The stock guest images qemu-q35 builds (guest_images), booted in QEMU
// directly (TCG, SeaBIOS, -kernel/-initrd): the image carries the virtio
// drivers beside Xen's blkfront and netfront for this. Under Xen, on the
// control domain's bridge and data disk, the images are booted by
// TestHostDataDiskPersists (host_test.go), which holds the stock image's
// assertions; here the installer's first screen, which under Xen's slower
// TCG path is only checked to its low-memory notice.

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/contract"
	qemutests "github.com/fwbuild/fwbuild/qemu-tests"
)

// guestOSMachine boots a guest image's kernel and initrd with disk as its
// virtio disk and a virtio NIC on QEMU's user network.
func guestOSMachine(out, image, disk, cmdline string, memMiB int) qemutests.Machine {
	return qemutests.Machine{
		MemoryMiB: memMiB, SMP: 1, CPU: "qemu64",
		Args: []string{
			"-kernel", filepath.Join(out, contract.GuestImageArtefact(image, contract.GuestImageKernel)),
			"-initrd", filepath.Join(out, contract.GuestImageArtefact(image, contract.GuestImageInitrd)),
			"-append", cmdline,
			"-drive", "if=virtio,format=raw,file=" + disk,
			"-netdev", "user,id=fwnet0", "-device", "virtio-net-pci,netdev=fwnet0",
		},
	}
}

// The stock debian image's own assertions (root from its disk, a DHCP lease,
// a fetched file with its SHA-256, a marker found again on the next boot of
// the same disk) are TestHostDataDiskPersists's, under Xen where it runs in
// the field; booting it here too cost the suite a QEMU run for the same
// lines. BenchmarkStockGuestBootToDHCP still boots it directly.

// Debian's installer, as the debian-installer guest image carries it,
// sees its virtual disk (fwbuild's startup hook loaded the driver) and
// reaches its first screen on the serial console.
func TestInstallerImageFirstScreen(t *testing.T) {
	bl := buildQ35(t)
	disk := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(disk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, 1<<30); err != nil {
		t.Fatal(err)
	}
	m := guestOSMachine(bl.out, "debian-installer", disk, "console=ttyS0", 1024)
	res, err := qemutests.Run(context.Background(), m, []qemutests.Marker{
		qemutests.Substring("kernel", "Linux version", 60*time.Second),
		qemutests.Regexp("disk", contract.GuestOSDiskPattern("debian-installer"), 120*time.Second),
		qemutests.Substring("first-screen", "Select a language", 120*time.Second),
	}, qemutests.Options{
		LogPath:  filepath.Join(t.TempDir(), "console.log"),
		OnMarker: func(m qemutests.Match) { t.Logf("%6.1fs %-12s %s", m.At.Seconds(), m.Marker.Name, m.Line) },
	})
	if err != nil {
		t.Fatal(err)
	}
	d, err := contract.ParseGuestOSDisk(res.Matches[1].Line)
	if err != nil || d.Device != "vda" || d.Bytes != 1<<30 {
		t.Errorf("disk line %q: %+v, %v; want vda of 1 GiB", res.Matches[1].Line, d, err)
	}
	t.Logf("installer's first screen after %.1fs", res.Elapsed.Seconds())
}

// BenchmarkStockGuestBootToDHCP times QEMU start to the guest's DHCP line
// (TCG, QEMU directly).
func BenchmarkStockGuestBootToDHCP(b *testing.B) {
	bl := buildQ35(b)
	root, err := os.ReadFile(filepath.Join(bl.out, contract.GuestImageArtefact("debian", contract.GuestImageRoot)))
	if err != nil {
		b.Fatal(err)
	}
	var total time.Duration
	for i := 0; i < b.N; i++ {
		disk := filepath.Join(b.TempDir(), "disk.img")
		if err := os.WriteFile(disk, root, 0o644); err != nil {
			b.Fatal(err)
		}
		m := guestOSMachine(bl.out, "debian", disk, "console=ttyS0 root=/dev/vda quiet", 256)
		res, err := qemutests.Run(context.Background(), m, []qemutests.Marker{
			qemutests.Regexp("dhcp", contract.GuestOSDHCPPattern("debian"), 60*time.Second),
		}, qemutests.Options{LogPath: filepath.Join(b.TempDir(), "console.log"), Abort: regexp.MustCompile(contract.GuestOSFailurePattern)})
		if err != nil {
			b.Fatal(err)
		}
		total += res.Matches[0].At
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s-to-dhcp")
}
