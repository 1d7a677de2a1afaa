package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/diskfs/go-diskfs/partition/mbr"

	"github.com/fwbuild/fwbuild/contract"
)

// fakeDevices stands in for the kernel's network and block layers; the
// disk is a real file, so what is written to it is real.
type fakeDevices struct {
	linkList  []linkInfo
	calls     []string
	dhcpAddr  string
	dhcpErr   error
	disk      string // the file /dev/vdb stands for
	mountErr  error
	loopMajor uint32
	addrList  map[string][]string // addrs' answer by interface
}

func (f *fakeDevices) links() ([]linkInfo, error) { return f.linkList, nil }
func (f *fakeDevices) ensureBridge(name string, mac net.HardwareAddr) error {
	f.calls = append(f.calls, "bridge "+name+" "+mac.String())
	return nil
}
func (f *fakeDevices) addBridge(name string, mac net.HardwareAddr) error {
	f.calls = append(f.calls, "addbridge "+name+" "+mac.String())
	return nil
}
func (f *fakeDevices) linkUp(name string) error {
	f.calls = append(f.calls, "up "+name)
	return nil
}
func (f *fakeDevices) addrs(name string) ([]string, error) { return f.addrList[name], nil }
func (f *fakeDevices) enslave(link, bridge string) error {
	f.calls = append(f.calls, "enslave "+link+" "+bridge)
	return nil
}
func (f *fakeDevices) release(link string) error {
	f.calls = append(f.calls, "release "+link)
	return nil
}
func (f *fakeDevices) setStatic(bridge string, addr *net.IPNet, gw net.IP) error {
	f.calls = append(f.calls, "static "+bridge+" "+addr.String()+" "+gw.String())
	return nil
}
func (f *fakeDevices) dhcp(ctx context.Context, bridge string) (*net.IPNet, error) {
	f.calls = append(f.calls, "dhcp "+bridge)
	if f.dhcpErr != nil {
		return nil, f.dhcpErr
	}
	ip, n, _ := net.ParseCIDR(f.dhcpAddr)
	n.IP = ip
	return n, nil
}
func (f *fakeDevices) openDisk(dev string, write bool) (*os.File, int64, error) {
	f.calls = append(f.calls, "open "+dev+map[bool]string{true: " rw", false: " ro"}[write])
	flag := os.O_RDONLY
	if write {
		flag = os.O_RDWR
	}
	fh, err := os.OpenFile(f.disk, flag, 0)
	if err != nil {
		return nil, 0, err
	}
	st, _ := fh.Stat()
	return fh, st.Size(), nil
}
func (f *fakeDevices) rereadPartitions(*os.File) error {
	f.calls = append(f.calls, "rereadpt")
	return nil
}
func (f *fakeDevices) mountExt4(dev, target string) error {
	f.calls = append(f.calls, "mount "+dev+" "+target)
	return f.mountErr
}
func (f *fakeDevices) blockDev(p string) (uint32, uint32, bool, error) {
	if strings.HasPrefix(p, "/dev/") {
		return 254, 16, true, nil
	}
	return 0, 0, false, nil
}
func (f *fakeDevices) loopAttach(file string, ro bool) (string, uint32, uint32, error) {
	f.calls = append(f.calls, "loop "+file)
	return "/dev/loop3", 7, 3, nil
}
func (f *fakeDevices) loopDetach(dev string) error {
	f.calls = append(f.calls, "unloop "+dev)
	return nil
}

func newDisk(t *testing.T, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return p
}

func classifyFile(t *testing.T, p string) (diskState, string) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	s, what, err := classifyDisk(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	return s, what
}

// A blank disk is prepared into a GPT with fwbuild's one partition and an
// ext4 file system that e2fsck (the real one) finds clean; classified again
// it is fwbuild's. Disks that others wrote are foreign, with what they hold.
func TestClassifyAndPrepareDisk(t *testing.T) {
	const size = 256 << 20
	p := newDisk(t, size)
	if s, _ := classifyFile(t, p); s != diskBlank {
		t.Fatalf("zero disk: state %d, want blank", s)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := prepareDisk(f, size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if s, what := classifyFile(t, p); s != diskOurs {
		t.Fatalf("prepared disk: state %d (%s), want fwbuild's", s, what)
	}
	e2fsck, err := exec.LookPath("e2fsck")
	if err != nil {
		t.Fatalf("e2fsck (e2fsprogs) is needed to check the file system ctld makes: %v", err)
	}
	start, end := dataPartition(size)
	part := filepath.Join(t.TempDir(), "part.img")
	if out, err := exec.Command("dd", "if="+p, "of="+part, "bs=512", "skip="+strconv.FormatUint(start, 10), "count="+strconv.FormatUint(end-start+1, 10), "status=none").CombinedOutput(); err != nil {
		t.Fatalf("dd: %v: %s", err, out)
	}
	if out, err := exec.Command(e2fsck, "-fn", part).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck -fn on the data partition: %v\n%s", err, out)
	}

	// A foreign GPT: one partition, another name.
	p2 := newDisk(t, 64<<20)
	writeGPT(t, p2, "data")
	if s, what := classifyFile(t, p2); s != diskForeign || !strings.Contains(what, `"data"`) {
		t.Errorf("foreign GPT: state %d (%s), want foreign naming the partition", s, what)
	}
	// An MBR.
	p3 := newDisk(t, 64<<20)
	fh, _ := os.OpenFile(p3, os.O_RDWR, 0)
	tab := &mbr.Table{LogicalSectorSize: 512, PhysicalSectorSize: 512, Partitions: []*mbr.Partition{{Bootable: false, Type: mbr.Linux, Start: 2048, Size: 4096}}}
	if err := tab.Write(fileWritable(t, fh), 64<<20); err != nil {
		t.Fatal(err)
	}
	fh.Close()
	if s, what := classifyFile(t, p3); s != diskForeign || !strings.Contains(what, "MBR") {
		t.Errorf("MBR disk: state %d (%s), want foreign (MBR)", s, what)
	}
	// Stray data at the end only.
	p4 := newDisk(t, 64<<20)
	fh, _ = os.OpenFile(p4, os.O_RDWR, 0)
	fh.WriteAt([]byte{1}, 64<<20-100)
	fh.Close()
	if s, _ := classifyFile(t, p4); s != diskForeign {
		t.Errorf("data in the last MiB: state %d, want foreign", s)
	}
}

func fileWritable(t *testing.T, f *os.File) interface {
	ReadAt([]byte, int64) (int, error)
	WriteAt([]byte, int64) (int, error)
	Seek(int64, int) (int64, error)
	Read([]byte) (int, error)
	Close() error
	Stat() (os.FileInfo, error)
} {
	return f
}

func writeGPT(t *testing.T, p, name string) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	w, _ := file.New(f, false).Writable()
	tab := &gpt.Table{LogicalSectorSize: 512, PhysicalSectorSize: 512, ProtectiveMBR: true,
		Partitions: []*gpt.Partition{{Index: 1, Start: 2048, End: 4095, Type: gpt.LinuxFilesystem, Name: name}}}
	if err := tab.Write(w, st.Size()); err != nil {
		t.Fatal(err)
	}
}

func hashFile(t *testing.T, p string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func dataAgent(sys *fakeSystem, out *bytes.Buffer) *agent {
	cfg := defaultConfig()
	cfg.Poll = time.Millisecond
	return &agent{cfg: cfg, sys: sys, out: out}
}

func diskSys() *fakeSystem {
	return &fakeSystem{files: map[string]string{
		"/sys/block/vda/dev":    "254:0\n",
		"/sys/block/vda/serial": "OTHER\n",
		"/sys/block/vdb/dev":    "254:16\n",
		"/sys/block/vdb/serial": "FWDATA0\n",
		"/dev/vdb1":             "",
	}}
}

// The data disk end to end through the seams, on a real file: first boot
// prepares a blank disk, the next finds it and writes nothing; a foreign
// disk is never written, and the FAILED line names its id and device.
func TestSetUpDataDisk(t *testing.T) {
	ctx := context.Background()
	cfg := contract.DataDisk{ID: "serial:FWDATA0"}

	dev := &fakeDevices{disk: newDisk(t, 128<<20)}
	var out bytes.Buffer
	a := dataAgent(diskSys(), &out)
	if err := a.setUpDataDisk(ctx, dev, cfg, time.Second); err != nil {
		t.Fatal(err)
	}
	want := contract.DataDiskReady{ID: "serial:FWDATA0", Dev: "/dev/vdb", Action: "prepared"}.String()
	if strings.TrimSpace(out.String()) != want {
		t.Errorf("first boot printed %q, want %q", out.String(), want)
	}
	if got, err := contract.ParseDataDiskReady(out.String()); err != nil || got.Action != "prepared" {
		t.Errorf("ParseDataDiskReady: %+v, %v", got, err)
	}
	if !strings.Contains(strings.Join(dev.calls, "|"), "mount /dev/vdb1 "+contract.DataMount) {
		t.Errorf("calls %v: want the first partition mounted at %s", dev.calls, contract.DataMount)
	}
	before := hashFile(t, dev.disk)
	out.Reset()
	dev.calls = nil
	if err := a.setUpDataDisk(ctx, dev, cfg, time.Second); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "(/dev/vdb) found, mounted") {
		t.Errorf("second boot printed %q, want found", out.String())
	}
	for _, c := range dev.calls {
		if strings.HasSuffix(c, " rw") {
			t.Errorf("second boot opened the disk for writing: %v", dev.calls)
		}
	}
	if hashFile(t, dev.disk) != before {
		t.Error("second boot changed the disk")
	}

	// Foreign: untouched, named.
	foreign := &fakeDevices{disk: newDisk(t, 64<<20)}
	writeGPT(t, foreign.disk, "someone-elses")
	before = hashFile(t, foreign.disk)
	out.Reset()
	err := a.setUpDataDisk(ctx, foreign, cfg, time.Second)
	if err == nil {
		t.Fatal("a foreign disk was accepted")
	}
	line := out.String()
	for _, w := range []string{"fwbuild-ctld: FAILED storage: ", "serial:FWDATA0", "/dev/vdb", `"someone-elses"`, "wipe: true"} {
		if !strings.Contains(line, w) {
			t.Errorf("FAILED line %q lacks %q", line, w)
		}
	}
	if hashFile(t, foreign.disk) != before {
		t.Error("a foreign disk was written")
	}
	for _, c := range foreign.calls {
		if strings.HasSuffix(c, " rw") || strings.HasPrefix(c, "mount") {
			t.Errorf("foreign disk: %s", c)
		}
	}
	// With wipe: true the same disk is prepared.
	out.Reset()
	if err := a.setUpDataDisk(ctx, foreign, contract.DataDisk{ID: cfg.ID, Wipe: true}, time.Second); err != nil {
		t.Fatal(err)
	}
	if s, what := classifyFile(t, foreign.disk); s != diskOurs {
		t.Errorf("wiped disk: state %d (%s)", s, what)
	}

	// Missing: the FAILED line names the identifier.
	out.Reset()
	if err := a.setUpDataDisk(ctx, dev, contract.DataDisk{ID: "serial:NOPE"}, 10*time.Millisecond); err == nil || !strings.Contains(out.String(), "FAILED storage: data disk serial:NOPE: no disk with serial:NOPE") {
		t.Errorf("missing disk: %v, printed %q", err, out.String())
	}
}

func TestFindDiskByPathAndWWN(t *testing.T) {
	sys := &fakeSystem{
		files: map[string]string{
			"/sys/block/vda/dev":          "254:0",
			"/sys/block/nvme0n1/dev":      "259:0",
			"/sys/block/sda/dev":          "8:0",
			"/sys/block/loop0/dev":        "7:0",
			"/sys/block/vda/serial":       "",
			"/sys/block/nvme0n1/wwid":     "eui.0025388b71b12345\n",
			"/sys/block/sda/device/wwid":  "naa.5000c500a1b2c3d4\n",
			"/sys/block/loop0/serial":     "FWDATA0",
			"/sys/block/sda/device/model": "x",
		},
		links: map[string]string{
			"/sys/block/vda":     "/sys/devices/pci0000:00/0000:00:05.0/virtio2/block/vda",
			"/sys/block/nvme0n1": "/sys/devices/pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1",
		},
	}
	a := dataAgent(sys, &bytes.Buffer{})
	for id, want := range map[string]string{
		"path:pci-0000:00:05.0":        "/dev/vda",
		"path:pci-0000:00:04.0-nvme-1": "/dev/nvme0n1",
		"wwn:0025388b71b12345":         "/dev/nvme0n1",
		"wwn:naa.5000c500a1b2c3d4":     "/dev/sda",
	} {
		got, err := a.findDisk(id)
		if err != nil || got != want {
			t.Errorf("findDisk(%s) = %q, %v; want %s", id, got, err, want)
		}
	}
	if _, err := a.findDisk("serial:FWDATA0"); err == nil {
		t.Error("a loop device matched a serial")
	}
	if partitionDev("/dev/nvme0n1") != "/dev/nvme0n1p1" || partitionDev("/dev/vdb") != "/dev/vdb1" {
		t.Error("partitionDev")
	}
}

func TestMatchNIC(t *testing.T) {
	links := []linkInfo{
		{Name: "lo", Type: "device"},
		{Name: "eth0", MAC: "52:54:00:12:34:56", PCI: "0000:00:03.0", Type: "device"},
		{Name: "eth1", MAC: "52:54:00:12:34:57", PCI: "0000:00:04.0", Type: "device"},
		{Name: "xenbr0", MAC: "52:54:00:12:34:56", Type: "bridge"},
	}
	for id, want := range map[string]string{
		"mac:52:54:00:12:34:56": "eth0", // the bridge with the same MAC does not count
		"mac:52:54:00:12:34:57": "eth1",
		"pci:0000:00:04.0":      "eth1",
		"name:eth0":             "eth0",
	} {
		l, err := matchNIC(id, links)
		if err != nil || l.Name != want {
			t.Errorf("matchNIC(%s) = %+v, %v; want %s", id, l, err, want)
		}
	}
	if _, err := matchNIC("pci:0000:00:09.0", links); err == nil || !strings.Contains(err.Error(), "eth1 (mac 52:54:00:12:34:57, pci 0000:00:04.0)") {
		t.Errorf("no match: %v, want the interfaces listed", err)
	}
}

func TestBringUpNetwork(t *testing.T) {
	links := []linkInfo{{Name: "eth0", MAC: "52:54:00:12:34:56", PCI: "0000:00:03.0", Type: "device"}}
	cfg := &contract.Network{Bridge: "xenbr0", NICs: []string{"pci:0000:00:03.0"}}
	dev := &fakeDevices{linkList: links, dhcpAddr: "10.0.2.15/24"}
	var out bytes.Buffer
	a := dataAgent(&fakeSystem{files: map[string]string{}}, &out)
	if err := a.bringUpNetwork(context.Background(), dev, cfg, time.Second); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(dev.calls, "|"), "bridge xenbr0 52:54:00:12:34:56|enslave eth0 xenbr0|dhcp xenbr0"; got != want {
		t.Errorf("calls %s, want %s", got, want)
	}
	m, err := contract.ParseManagement(out.String())
	if err != nil || m.Addr != "10.0.2.15/24" || m.Bridge != "xenbr0" || m.Via != "dhcp" {
		t.Errorf("management line %q: %+v, %v", out.String(), m, err)
	}

	// Static, with DNS.
	out.Reset()
	dev.calls = nil
	sys := &fakeSystem{files: map[string]string{}}
	a = dataAgent(sys, &out)
	st := &contract.Network{Bridge: "br0", NICs: []string{"name:eth0"}, Address: "192.0.2.10/24", Gateway: "192.0.2.1", DNS: []string{"192.0.2.53"}}
	if err := a.bringUpNetwork(context.Background(), dev, st, time.Second); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(dev.calls, "|"), "static br0 192.0.2.10/24 192.0.2.1") || sys.files["/etc/resolv.conf"] != "nameserver 192.0.2.53\n" {
		t.Errorf("static: calls %v, resolv.conf %q", dev.calls, sys.files["/etc/resolv.conf"])
	}
	if !strings.Contains(out.String(), "management 192.0.2.10/24 on br0 (static, ") {
		t.Errorf("static: printed %q", out.String())
	}

	// DHCP fails: FAILED names the NIC.
	out.Reset()
	dev = &fakeDevices{linkList: links, dhcpErr: errors.New("no answer")}
	a = dataAgent(&fakeSystem{files: map[string]string{}}, &out)
	if err := a.bringUpNetwork(context.Background(), dev, cfg, time.Second); err == nil || !strings.Contains(out.String(), "FAILED network: nic pci:0000:00:03.0 (eth0): DHCP on xenbr0: no answer") {
		t.Errorf("DHCP failure: %v, printed %q", err, out.String())
	}
	// A NIC that never appears.
	out.Reset()
	if err := a.bringUpNetwork(context.Background(), dev, &contract.Network{Bridge: "xenbr0", NICs: []string{"mac:52:54:00:00:00:99"}}, 10*time.Millisecond); err == nil ||
		!strings.Contains(out.String(), "FAILED network: nic mac:52:54:00:00:00:99: no such interface") {
		t.Errorf("missing NIC: %v, printed %q", err, out.String())
	}
}

// The guest bridge: no address of the control domain's on it, IPv6 off
// before anything comes up, ARP and IPv4 to the control domain refused;
// its line reports what was read back.
func TestBringUpGuestNetwork(t *testing.T) {
	links := []linkInfo{
		{Name: "eth0", MAC: "52:54:00:12:34:56", PCI: "0000:00:03.0", Type: "device"},
		{Name: "eth1", MAC: "52:54:00:12:34:57", PCI: "0000:00:04.0", Type: "device"},
	}
	g := &contract.GuestNetwork{Bridge: "xenbr1", NICs: []string{"pci:0000:00:04.0"}}
	mgmt := []string{"pci:0000:00:03.0"}
	for _, c := range []struct {
		name, ipv6 string
		sysctls    []string
	}{
		{"with IPv6", "disabled", []string{
			"write /proc/sys/net/ipv6/conf/xenbr1/disable_ipv6", "write /proc/sys/net/ipv4/conf/xenbr1/arp_ignore",
			"write /proc/sys/net/ipv4/conf/xenbr1/rp_filter", "write /proc/sys/net/ipv6/conf/eth1/disable_ipv6"}},
		{"a kernel without IPv6", "absent", []string{"write /proc/sys/net/ipv4/conf/xenbr1/arp_ignore", "write /proc/sys/net/ipv4/conf/xenbr1/rp_filter"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			sys := &fakeSystem{files: map[string]string{}}
			if c.ipv6 == "disabled" {
				sys.mkdirAll(ipv6Sysctls)
				sys.calls = nil
			}
			dev := &fakeDevices{linkList: links}
			var out bytes.Buffer
			a := dataAgent(sys, &out)
			if err := a.bringUpGuestNetwork(context.Background(), dev, g, mgmt, time.Second); err != nil {
				t.Fatalf("%v (printed %q)", err, out.String())
			}
			// Created down, the uplink enslaved (which brings it up), then the bridge up: no DHCP, no address.
			if got, want := strings.Join(dev.calls, "|"), "addbridge xenbr1 52:54:00:12:34:57|enslave eth1 xenbr1|up xenbr1"; got != want {
				t.Errorf("calls %s, want %s", got, want)
			}
			if got, want := strings.Join(sys.calls, "|"), strings.Join(c.sysctls, "|"); got != want {
				t.Errorf("sysctls written\n  %s\nwant\n  %s", got, want)
			}
			if sys.files["/proc/sys/net/ipv4/conf/xenbr1/arp_ignore"] != "8\n" || sys.files["/proc/sys/net/ipv4/conf/xenbr1/rp_filter"] != "1\n" {
				t.Errorf("arp_ignore %q, rp_filter %q; want 8 and 1", sys.files["/proc/sys/net/ipv4/conf/xenbr1/arp_ignore"], sys.files["/proc/sys/net/ipv4/conf/xenbr1/rp_filter"])
			}
			if c.ipv6 == "disabled" && (sys.files["/proc/sys/net/ipv6/conf/xenbr1/disable_ipv6"] != "1\n" || sys.files["/proc/sys/net/ipv6/conf/eth1/disable_ipv6"] != "1\n") {
				t.Errorf("disable_ipv6: bridge %q, uplink %q", sys.files["/proc/sys/net/ipv6/conf/xenbr1/disable_ipv6"], sys.files["/proc/sys/net/ipv6/conf/eth1/disable_ipv6"])
			}
			gb, err := contract.ParseGuestBridge(out.String())
			if err != nil || gb.Bridge != "xenbr1" || strings.Join(gb.Uplinks, ",") != "eth1" || len(gb.Addrs) != 0 || gb.IPv6 != c.ipv6 {
				t.Errorf("guest bridge line %q: %+v, %v", out.String(), gb, err)
			}
		})
	}

	// No uplink: a bridge for the guests alone, with the kernel's MAC.
	dev := &fakeDevices{linkList: links}
	var out bytes.Buffer
	a := dataAgent(&fakeSystem{files: map[string]string{}}, &out)
	if err := a.bringUpGuestNetwork(context.Background(), dev, &contract.GuestNetwork{Bridge: "guests"}, mgmt, time.Second); err != nil ||
		strings.Join(dev.calls, "|") != "addbridge guests |up guests" || !strings.Contains(out.String(), "guest bridge guests uplinks=none addresses=none ipv6=absent") {
		t.Errorf("no uplink: %v, calls %v, printed %q", err, dev.calls, out.String())
	}

	// Failures, each a FAILED guest-network line: the management NIC
	// under another identifier, an address found on the bridge, a NIC
	// that never appears.
	for _, c := range []struct {
		name string
		g    *contract.GuestNetwork
		dev  *fakeDevices
		want string
	}{
		{"management nic", &contract.GuestNetwork{Bridge: "xenbr1", NICs: []string{"mac:52:54:00:12:34:56"}}, &fakeDevices{linkList: links},
			"FAILED guest-network: bridge xenbr1: nic mac:52:54:00:12:34:56 (eth0) is the management NIC pci:0000:00:03.0"},
		{"address", g, &fakeDevices{linkList: links, addrList: map[string][]string{"xenbr1": {"10.0.3.9/24"}}},
			"FAILED guest-network: bridge xenbr1 has addresses 10.0.3.9/24: the control domain must have none"},
		{"missing nic", &contract.GuestNetwork{Bridge: "xenbr1", NICs: []string{"pci:0000:00:09.0"}}, &fakeDevices{linkList: links},
			"FAILED guest-network: bridge xenbr1: nic pci:0000:00:09.0: no such interface"},
	} {
		out.Reset()
		a := dataAgent(&fakeSystem{files: map[string]string{}}, &out)
		if err := a.bringUpGuestNetwork(context.Background(), c.dev, c.g, mgmt, 10*time.Millisecond); err == nil || !strings.Contains(out.String(), c.want) {
			t.Errorf("%s: %v, printed %q; want %q", c.name, err, out.String(), c.want)
		}
		if strings.Contains(out.String(), "uplinks=") {
			t.Errorf("%s: a guest bridge line after a failure: %q", c.name, out.String())
		}
	}
}

func xsRunner(store map[string]string) *fakeRunner {
	r := &fakeRunner{results: map[string]fakeResult{}}
	for k, v := range store {
		r.results["/usr/bin/xenstore-read "+k] = fakeResult{out: v + "\n"}
	}
	return r
}

// writes returns the xenstore-write calls.
func writes(r *fakeRunner) []string {
	var w []string
	for _, c := range r.calls {
		if strings.HasPrefix(c, "/usr/bin/xenstore-write ") {
			w = append(w, strings.TrimPrefix(c, "/usr/bin/xenstore-write "))
		}
	}
	return w
}

// What libxl passes (libxl_linux.c) and what Xen's vif-bridge and block
// scripts write back, done by ctld.
func TestHotplug(t *testing.T) {
	env := map[string]string{"XENBUS_PATH": "backend/vif/3/0", "XENBUS_TYPE": "vif", "vif": "vif3.0"}
	e, ok := hotplugCall([]string{"online", "type_if=vif"}, func(k string) string { return env[k] })
	if !ok || e != (hotplugEnv{Action: "online", Path: "backend/vif/3/0", Type: "vif", VifName: "vif3.0"}) {
		t.Fatalf("hotplugCall: %+v %v", e, ok)
	}
	if _, ok := hotplugCall([]string{"status"}, func(k string) string { return env[k] }); ok {
		t.Error("ctld status was taken for a hotplug call")
	}
	if _, ok := hotplugCall([]string{"add"}, func(string) string { return "" }); ok {
		t.Error("no XENBUS_PATH, yet a hotplug call")
	}

	ctx := context.Background()
	r := xsRunner(map[string]string{"backend/vif/3/0/bridge": "xenbr0"})
	r.results["/usr/bin/xenstore-write backend/vif/3/0/hotplug-status connected"] = fakeResult{}
	sys := &fakeSystem{files: map[string]string{}}
	a := &agent{cfg: defaultConfig(), run: r, sys: sys, out: &bytes.Buffer{}}
	dev := &fakeDevices{}
	if err := a.hotplug(ctx, dev, e); err != nil {
		t.Fatal(err)
	}
	if strings.Join(dev.calls, "|") != "enslave vif3.0 xenbr0" || len(sys.calls) != 0 {
		t.Errorf("vif online: %v, sysctls %v", dev.calls, sys.calls)
	}
	// On a bridge with IPv6 disabled (the guest bridge) the vif gets it
	// disabled too, before it joins (and comes up).
	r.results["/usr/bin/xenstore-read backend/vif/3/0/bridge"] = fakeResult{out: "xenbr1\n"}
	sys.files["/proc/sys/net/ipv6/conf/xenbr1/disable_ipv6"] = "1\n"
	dev.calls = nil
	if err := a.hotplug(ctx, dev, e); err != nil {
		t.Fatal(err)
	}
	if strings.Join(dev.calls, "|") != "enslave vif3.0 xenbr1" || strings.Join(sys.calls, "|") != "write /proc/sys/net/ipv6/conf/vif3.0/disable_ipv6" ||
		sys.files["/proc/sys/net/ipv6/conf/vif3.0/disable_ipv6"] != "1\n" {
		t.Errorf("vif online on the guest bridge: %v, sysctls %v", dev.calls, sys.calls)
	}

	// vbd add on a file: a loop device, its numbers in hex.
	r = xsRunner(map[string]string{"backend/vbd/3/51712/params": "/var/lib/fwbuild/data/guests/g/root.img", "backend/vbd/3/51712/mode": "w"})
	r.results["/usr/bin/xenstore-write backend/vbd/3/51712/node /dev/loop3"] = fakeResult{}
	r.results["/usr/bin/xenstore-write backend/vbd/3/51712/physical-device 7:3 backend/vbd/3/51712/physical-device-path /dev/loop3 backend/vbd/3/51712/hotplug-status connected"] = fakeResult{}
	a.run = r
	dev = &fakeDevices{}
	vbd := hotplugEnv{Action: "add", Path: "backend/vbd/3/51712", Type: "vbd"}
	if err := a.hotplug(ctx, dev, vbd); err != nil {
		t.Fatal(err)
	}
	if strings.Join(dev.calls, "|") != "loop /var/lib/fwbuild/data/guests/g/root.img" || len(writes(r)) != 2 {
		t.Errorf("vbd add: calls %v, writes %v", dev.calls, writes(r))
	}
	// remove detaches the loop device named in node.
	r = xsRunner(map[string]string{"backend/vbd/3/51712/node": "/dev/loop3"})
	a.run = r
	if err := a.hotplug(ctx, dev, hotplugEnv{Action: "remove", Path: vbd.Path, Type: "vbd"}); err != nil || dev.calls[len(dev.calls)-1] != "unloop /dev/loop3" {
		t.Errorf("vbd remove: %v, calls %v", err, dev.calls)
	}

	// No bridge key: the failure goes to hotplug-error for libxl to log.
	r = xsRunner(nil)
	a.run = r
	err := a.hotplug(ctx, &fakeDevices{}, e)
	if err == nil {
		t.Fatal("vif online without a bridge succeeded")
	}
	w := writes(r)
	if len(w) != 1 || !strings.Contains(w[0], "backend/vif/3/0/hotplug-error ctld hotplug online backend/vif/3/0: no bridge") || !strings.HasSuffix(w[0], "backend/vif/3/0/hotplug-status error") {
		t.Errorf("failure writes %q", w)
	}
}

// Guests move onto the data disk once; later boots find them as they left
// them and create nothing.
func TestSeedGuests(t *testing.T) {
	root := t.TempDir()
	sys := &fakeSystem{files: map[string]string{
		"/etc/fwbuild/guests/store.cfg": contract.AutostartLine(true) + "\nname = \"store\"\ntype = \"pvh\"\n",
		"/etc/fwbuild/guests/demo.cfg":  contract.AutostartLine(false) + "\nname = \"demo\"\n",
	}}
	var out bytes.Buffer
	a := dataAgent(sys, &out)
	h := &contract.HostConfig{Storage: &contract.Storage{}, Guests: []contract.GuestDisks{{Name: "store", Disks: []contract.GuestDisk{{Name: "root", Size: 64 << 20}}}}}
	declared := []guest{{Name: "demo", Config: "/etc/fwbuild/guests/demo.cfg"}, {Name: "store", Config: "/etc/fwbuild/guests/store.cfg", Autostart: true}}
	if err := a.seedGuests(root, h, declared); err != nil {
		t.Fatal(err)
	}
	disk := root + contract.DataGuestDisk("store", "root")
	st, err := os.Stat(disk)
	if err != nil || st.Size() != 64<<20 {
		t.Fatalf("disk: %v %v", st, err)
	}
	if !strings.Contains(out.String(), "guest store disk root created: 67108864 bytes, empty") {
		t.Errorf("printed %q", out.String())
	}
	os.WriteFile(disk, []byte("written by the guest"), 0o600)
	out.Reset()
	sys.files["/etc/fwbuild/guests/store.cfg"] = "# a newer firmware's config\n"
	if err := a.seedGuests(root, h, declared); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(disk); string(b) != "written by the guest" || out.Len() != 0 {
		t.Errorf("second seed: disk %q, printed %q", b, out.String())
	}
	gs, err := a.dataGuests(root)
	// The type, from the config on the data disk, is for the running line.
	if err != nil || len(gs) != 2 || gs[1].Name != "store" || !gs[1].Autostart || gs[0].Autostart || gs[1].Type != "pvh" {
		t.Errorf("dataGuests: %+v %v (want store autostarted, type pvh)", gs, err)
	}
}

func (f *fakeDevices) mountRO(dev, target string) error {
	f.calls = append(f.calls, "mountro "+dev+" "+target)
	return nil
}

// Guest images come from the media's images partition or a URL, and land
// on the data disk only with the manifest's size and SHA-256.
func TestProvisionImages(t *testing.T) {
	root := t.TempDir()
	root_img := []byte("a root file system")
	kernel := []byte("a kernel")
	sum := func(b []byte) string { h := sha256.Sum256(b); return hexString(h[:]) }
	// The media partition's content, as mounted.
	media := root + mediaMount
	os.MkdirAll(filepath.Join(media, "debian"), 0o755)
	os.WriteFile(filepath.Join(media, "debian", "root.img"), root_img, 0o644)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/vmlinuz":
			w.Write(kernel)
		case "/bad":
			w.Write([]byte("tampered"))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	man := contract.GuestImages{Files: []contract.GuestImageFile{
		{Image: "debian", Name: "root.img", Size: int64(len(root_img)), SHA256: sum(root_img), MediaPath: "debian/root.img"},
		{Image: "debian", Name: "vmlinuz", Size: int64(len(kernel)), SHA256: sum(kernel), URL: srv.URL + "/vmlinuz"},
	}}
	mb, err := man.Encode()
	if err != nil {
		t.Fatal(err)
	}
	sys := &fakeSystem{files: map[string]string{
		contract.GuestImagesManifest:   string(mb),
		"/sys/class/block/sda/uevent":  "MAJOR=8\nDEVNAME=sda\nDEVTYPE=disk\n",
		"/sys/class/block/sda2/uevent": "MAJOR=8\nDEVNAME=sda2\nDEVTYPE=partition\nPARTNAME=" + contract.ImagesPartitionName + "\n",
	}}
	var out bytes.Buffer
	a := dataAgent(sys, &out)
	dev := &fakeDevices{}
	if err := a.provisionImages(context.Background(), root, dev, srv.Client()); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(root + contract.DataImageFile("debian", "root.img")); !bytes.Equal(b, root_img) {
		t.Errorf("root.img on the data disk: %q", b)
	}
	if b, _ := os.ReadFile(root + contract.DataImageFile("debian", "vmlinuz")); !bytes.Equal(b, kernel) {
		t.Errorf("vmlinuz on the data disk: %q", b)
	}
	if strings.Join(dev.calls, "|") != "mountro /dev/sda2 "+media {
		t.Errorf("calls %v", dev.calls)
	}
	if !regexp.MustCompile(contract.GuestImageCopiedPattern("debian", "root.img")).MatchString(out.String()) ||
		!strings.Contains(out.String(), "debian/vmlinuz copied: 8 bytes from "+srv.URL+"/vmlinuz, sha256 ok") {
		t.Errorf("printed %q", out.String())
	}
	// Again: nothing to do.
	out.Reset()
	if err := a.provisionImages(context.Background(), root, dev, srv.Client()); err != nil || out.Len() != 0 {
		t.Errorf("second run: %v, printed %q", err, out.String())
	}
	// A file whose bytes are not the pinned ones never lands.
	bad := contract.GuestImages{Files: []contract.GuestImageFile{{Image: "evil", Name: "root.img", Size: 8, SHA256: sum(kernel), URL: srv.URL + "/bad"}}}
	mb, _ = bad.Encode()
	sys.files[contract.GuestImagesManifest] = string(mb)
	out.Reset()
	if err := a.provisionImages(context.Background(), root, dev, srv.Client()); err == nil || !strings.Contains(out.String(), "FAILED images: evil/root.img from "+srv.URL+"/bad: SHA-256") {
		t.Errorf("tampered file: %v, printed %q", err, out.String())
	}
	if _, err := os.Stat(root + contract.DataImageFile("evil", "root.img")); err == nil {
		t.Error("a tampered file is on the data disk")
	}
	ents, _ := os.ReadDir(filepath.Dir(root + contract.DataImageFile("evil", "root.img")))
	if len(ents) != 0 {
		t.Errorf("left behind: %v", ents)
	}
	if _, err := mediaFile(media, "../etc/passwd"); err == nil {
		t.Error("a media path climbed out")
	}
}

func hexString(b []byte) string { return hex.EncodeToString(b) }

// appearingSys is a fakeSystem whose files in later appear once glob has
// been called after times.
type appearingSys struct {
	*fakeSystem
	after int
	later map[string]string
}

func (s *appearingSys) glob(pattern string) ([]string, error) {
	if s.after--; s.after == 0 {
		for p, v := range s.later {
			s.files[p] = v
		}
	}
	return s.fakeSystem.glob(pattern)
}

func TestWaitImagesPartition(t *testing.T) {
	part := map[string]string{"/sys/class/block/sda2/uevent": "DEVTYPE=partition\nPARTNAME=" + contract.ImagesPartitionName + "\n"}
	usb := map[string]string{"/sys/bus/usb/devices/1-1:1.0/bInterfaceClass": "08\n"}
	for _, tc := range []struct {
		name     string
		files    map[string]string // there from the start
		later    map[string]string // there after a few polls
		wait     time.Duration     // MediaWait (MediaGrace is 20ms)
		wantDev  string
		maxTaken time.Duration
	}{
		{name: "there", files: part, wait: time.Minute, wantDev: "/dev/sda2", maxTaken: time.Second},
		// The key's partitions are read after ctld first looks.
		{name: "appears", files: usb, later: part, wait: time.Minute, wantDev: "/dev/sda2", maxTaken: 5 * time.Second},
		// No USB mass storage at all (a boot from flash): the grace only.
		{name: "no key", files: map[string]string{"/sys/bus/usb/devices/usb1/bDeviceClass": "09\n"}, wait: time.Minute, maxTaken: 5 * time.Second},
		// A key without the partition: the whole wait, then the URL.
		{name: "other key", files: usb, wait: 200 * time.Millisecond, maxTaken: 5 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{}
			for p, v := range tc.files {
				files[p] = v
			}
			sys := &appearingSys{fakeSystem: &fakeSystem{files: files}, after: 6, later: tc.later}
			a := &agent{cfg: defaultConfig(), sys: sys, out: &bytes.Buffer{}}
			a.cfg.Poll, a.cfg.MediaWait, a.cfg.MediaGrace = time.Millisecond, tc.wait, 20*time.Millisecond
			start := time.Now()
			dev, err := a.waitImagesPartition(context.Background())
			taken := time.Since(start)
			if dev != tc.wantDev || (tc.wantDev == "") != (err != nil) {
				t.Errorf("got %q, %v; want %q", dev, err, tc.wantDev)
			}
			if tc.wantDev == "" && !errors.Is(err, errNoImagesPartition) {
				t.Errorf("error %v: want errNoImagesPartition", err)
			}
			if tc.name == "other key" && taken < tc.wait {
				t.Errorf("gave up after %v with a USB key attached, want the whole %v", taken, tc.wait)
			}
			if taken > tc.maxTaken {
				t.Errorf("took %v", taken)
			}
		})
	}
}
