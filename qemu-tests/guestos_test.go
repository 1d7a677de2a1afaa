package qemutests_test

// The stock guest images qemu-q35 builds (guest_images), booted in QEMU
// directly (TCG, SeaBIOS, -kernel/-initrd): the image carries the virtio
// drivers beside Xen's blkfront and netfront for this. Under Xen, on the
// control domain's bridge and data disk, the same image is booted by
// TestHostDataDiskPersists (host_test.go). The guest gets
// a lease from QEMU's user networking, fetches a file from an HTTP server
// this test runs on the host (10.0.2.2 from inside), and writes a marker to
// its root disk; a second boot of the same disk finds it.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/contract"
	qemutests "github.com/fwbuild/fwbuild/qemu-tests"
)

// serveFile serves body at /<name> on a host port QEMU's user networking
// reaches as 10.0.2.2; it returns the guest's URL.
func serveFile(t testing.TB, name string, body []byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/"+name, func(w http.ResponseWriter, r *http.Request) { w.Write(body) })
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://10.0.2.2:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port) + "/" + name
}

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

// bootGuestOS boots the debian image once and returns its marker line.
func bootGuestOS(t *testing.T, out, disk, url string, sum string) (contract.GuestOSMarker, qemutests.Result) {
	t.Helper()
	const name = "debian"
	m := guestOSMachine(out, name, disk, "console=ttyS0 root=/dev/vda quiet "+contract.GuestFetchParam+"="+url, 256)
	markers := []qemutests.Marker{
		qemutests.Regexp("root", contract.GuestOSRootPattern(name), 60*time.Second),
		qemutests.Regexp("dhcp", contract.GuestOSDHCPPattern(name), 30*time.Second),
		qemutests.Regexp("fetched", contract.GuestOSFetchedPattern(name), 30*time.Second),
		qemutests.Regexp("marker", contract.GuestOSMarkerPattern(name), 30*time.Second),
		qemutests.Substring("poweroff", "reboot: Power down", 30*time.Second),
	}
	res, err := qemutests.Run(context.Background(), m, markers, qemutests.Options{
		LogPath:  filepath.Join(t.TempDir(), "console.log"),
		Abort:    regexp.MustCompile(contract.GuestOSFailurePattern),
		OnMarker: func(m qemutests.Match) { t.Logf("%6.1fs %-8s %s", m.At.Seconds(), m.Marker.Name, m.Line) },
	})
	if err != nil {
		t.Fatal(err)
	}
	d, err := contract.ParseGuestOSDHCP(res.Matches[1].Line)
	if err != nil || d.IP != "10.0.2.15" || d.Router != "10.0.2.2" || d.Iface != "eth0" {
		t.Errorf("dhcp line %q: %+v, %v; want eth0 10.0.2.15 via 10.0.2.2 (QEMU's user network)", res.Matches[1].Line, d, err)
	}
	f, err := contract.ParseGuestOSFetched(res.Matches[2].Line)
	if err != nil || f.SHA256 != sum || f.URL != url {
		t.Errorf("fetched line %q: %+v, %v; want %s with sha256 %s", res.Matches[2].Line, f, err, url, sum)
	}
	mk, err := contract.ParseGuestOSMarker(res.Matches[3].Line)
	if err != nil {
		t.Fatal(err)
	}
	return mk, res
}

func TestStockGuestImageBoots(t *testing.T) {
	bl := buildQ35(t)
	disk := filepath.Join(t.TempDir(), "disk.img")
	root, err := os.ReadFile(filepath.Join(bl.out, contract.GuestImageArtefact("debian", contract.GuestImageRoot)))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(disk, root, 0o644); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 64<<10)
	rand.Read(body)
	h := sha256.Sum256(body)
	url := serveFile(t, "payload.bin", body)

	first, res := bootGuestOS(t, bl.out, disk, url, hex.EncodeToString(h[:]))
	if first.Found || first.Token == "" {
		t.Fatalf("first boot of a fresh disk: %+v, want a marker written", first)
	}
	t.Logf("boot to DHCP lease %.1fs (QEMU start to the lease line)", res.Matches[1].At.Seconds())
	second, _ := bootGuestOS(t, bl.out, disk, url, hex.EncodeToString(h[:]))
	if !second.Found || second.Token != first.Token {
		t.Fatalf("second boot of the same disk: %+v, want marker found %s", second, first.Token)
	}
}

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
