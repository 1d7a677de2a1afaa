package qemutests_test

// The control domain as a host (issue 17): qemu-q35-host boots with a
// management NIC (QEMU user networking, virtio-net at 00:03.0) and a data
// disk (virtio-blk, serial FWDATA0). Three boots, sharing assertions:
//
//  1. a blank data disk: ctld reports its DHCP address on the bridge,
//     prepares the disk, copies the debian guest image's files from the
//     board's guest_images_url (verified against the manifest), creates
//     the stock guest's root disk from the image's root.img and starts the
//     guest (PVH) with a vif (seen in the bridge) and a vbd (a loop device
//     on the guest's disk file, its numbers in the backend's
//     physical-device). From inside, the guest mounts its root from xvda,
//     gets a DHCP lease through the guest bridge (xenbr1, whose uplink is
//     a second NIC on a user network of its own, 10.0.3.0/24), fetches a
//     file from an HTTP server this test runs on the host (10.0.3.2 from
//     there) and writes a marker to its disk; a marker file of dom0's goes
//     onto the data disk too. ctld's guest bridge line and `ip addr` show
//     dom0 without an address on the guest bridge;
//  2. QEMU again on the same disk file: the disk is found, nothing is
//     copied or created, the guest comes back from its definition on the
//     disk and finds its marker, dom0's marker is there;
//  3. a disk with a foreign GPT (sgdisk's): not a byte changes, and the
//     FAILED line names it.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/boardcfg"
	"github.com/fwbuild/fwbuild/contract"
	"github.com/fwbuild/fwbuild/internal/boottest"
	"github.com/fwbuild/fwbuild/internal/pipeline"
	"github.com/fwbuild/fwbuild/internal/testdeps"
	qemutests "github.com/fwbuild/fwbuild/qemu-tests"
)

const hostBoard = "qemu-q35-host"

var (
	hostMu     sync.Mutex
	hostBuilds = map[string]*hostBuild{}
)

type hostBuild struct {
	built
	board *boardcfg.Board
	// The file the stock guest fetches: its URL (the test's server, as the
	// guest reaches it) and SHA-256.
	fetchURL, fetchSum string
	// imagesURL is the board's guest_images_url: the test's server.
	imagesURL string
}

// buildHost builds qemu-q35-host with the debian guest's command line
// naming a file this test process serves (its port is known only now, so
// the board is derived in a temporary file: qemu-q35-host plus that
// command line), once per test binary.
func buildHost(t testing.TB) hostBuild { return buildHostWith(t, "") }

// buildHostWith is buildHost with more guests: YAML list items appended
// to the derived board's guests (merged by name), each variant built once.
func buildHostWith(t testing.TB, guests string) hostBuild {
	t.Helper()
	hostMu.Lock()
	defer hostMu.Unlock()
	hb := hostBuilds[guests]
	if hb == nil {
		hb = &hostBuild{}
		hostBuilds[guests] = hb
		hb.build(t, guests)
	}
	if hb.err != nil {
		t.Fatalf("build %s: %v", hostBoard, hb.err)
	}
	return *hb
}

func (hb *hostBuild) build(t testing.TB, guests string) {
	root := testdeps.RepoRoot(t)
	boardsDir := filepath.Join(root, "boards")
	cacheDir := testdeps.CacheDir(t)
	body := make([]byte, 64<<10)
	rand.Read(body)
	h := sha256.Sum256(body)
	hb.fetchSum = hex.EncodeToString(h[:])
	out, err := os.MkdirTemp("", "fwbuild-host-")
	if err != nil {
		hb.err = err
		return
	}
	// Served for the rest of the test binary's life (shared by the
	// tests): the file the guest fetches, and the output directory as
	// the board's guest_images_url (the images' second source, after
	// the USB key's partition; not the board's fixed port 8080, which
	// another test on the machine may hold).
	var base string
	if base, hb.err = serveForever(out, "fetch.bin", body); hb.err != nil {
		return
	}
	// The guest reaches this process through the guest uplink's user
	// network (its .2); dom0 fetches the images over management (10.0.2.2).
	hb.fetchURL = strings.Replace(base, "10.0.2.2", guestNetHost, 1) + "/fetch.bin"
	hb.imagesURL = base
	p := filepath.Join(out, "qemu-q35-host-test.yaml")
	yml := "extends: " + filepath.Join(boardsDir, hostBoard+".yaml") + "\nguest_images_url: " + base +
		"\nguests:\n  - {name: debian, cmdline: " + contract.GuestFetchParam + "=" + hb.fetchURL + "}\n"
	if hb.err = os.WriteFile(p, []byte(yml), 0o644); hb.err != nil {
		return
	}
	if guests != "" {
		// A profile of its own that extends the test's, so its items
		// merge by name with the test's guests (debian's among them).
		p = filepath.Join(out, "qemu-q35-host-variant.yaml")
		if hb.err = os.WriteFile(p, []byte("extends: "+filepath.Join(out, "qemu-q35-host-test.yaml")+"\nguests:\n"+guests), 0o644); hb.err != nil {
			return
		}
	}
	if hb.board, hb.err = boardcfg.Load(p, boardsDir); hb.err != nil {
		return
	}
	_, hb.err = pipeline.Build(context.Background(), pipeline.Options{
		Board: hb.board, BoardsDir: boardsDir, CacheDir: cacheDir, OutDir: out,
	})
	hb.out = out
	if hb.err == nil {
		hb.comps, hb.err = pipeline.Fetch(context.Background(), hb.board, cacheDir, nil)
	}
}

// serveForever serves body at /<name> and the files of dir at every other
// path, on a host port QEMU's user networking reaches as 10.0.2.2; it
// returns the guest's URL of the server.
func serveForever(dir, name string, body []byte) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/"+name, func(w http.ResponseWriter, r *http.Request) { w.Write(body) })
	mux.Handle("/", http.FileServer(http.Dir(dir)))
	go (&http.Server{Handler: mux}).Serve(ln)
	return "http://10.0.2.2:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port), nil
}

// guestNetHost is the host as the guests see it: QEMU's side of the guest
// uplink's user network (boottest.GuestSubnet(0), 10.0.3.0/24).
const guestNetHost = "10.0.3.2"

// hostOpts is one boot of the host board.
type hostOpts struct {
	// Path is the boot path, qemutests.ChainUSB (the default) or ChainSPI.
	Path string
	// Disk, if set, is the data disk to boot with (a previous boot's);
	// else a blank one.
	Disk string
	// CPU, if set, replaces the board's virtual CPU.
	CPU string
	// Forward lists guest TCP ports of the management NIC to forward
	// from the host (127.0.0.1); hostMachine returns the host ports.
	Forward []int
	// Guests, if set, is buildHostWith's variant of the board.
	Guests string
	// Chip, if set, is the SPI path's flash (e.g. a provisioned copy of
	// spi.bin) instead of the build's spi.bin.
	Chip string
	// TPM gives the machine a TPM (swtpm), as boottest's boots have.
	TPM bool
}

// hostMachine is the host board's boot as boottest gives it to a board
// with a network and a data disk: a virtio-net NIC on QEMU's user network
// at 00:03.0 and a virtio data disk with serial FWDATA0 (blank unless
// o.Disk names one), whose file it returns (written through, so a later
// boot on it sees this one's writes). Tests of the control domain's
// services (e.g. the management API) join these boots through o.Forward.
func hostMachine(t testing.TB, o hostOpts) (m qemutests.Machine, disk string, ports map[int]int) {
	t.Helper()
	bl := buildHostWith(t, o.Guests)
	if o.Path == "" {
		o.Path = qemutests.ChainUSB
	}
	work := t.TempDir()
	m, _, err := boottest.Machine(boottest.Spec{Board: bl.board, Comps: bl.comps, OutDir: bl.out, Path: o.Path, WorkDir: work, Chip: o.Chip})
	if err != nil {
		t.Fatal(err)
	}
	disk = filepath.Join(work, "data.img")
	if o.Disk != "" {
		// boottest made a blank disk in work: boot the given one instead.
		for i, d := range m.Disks {
			if d.Path() == disk {
				m.Disks[i] = d.WithPath(o.Disk)
			}
		}
		disk = o.Disk
	}
	if o.CPU != "" {
		m.CPU = o.CPU
	}
	if o.TPM {
		// A short path: the control socket's name must fit sockaddr_un.
		dir, err := os.MkdirTemp("", "fwbuild-tpm-")
		if err != nil {
			t.Fatal(err)
		}
		tpm, err := qemutests.StartTPM(context.Background(), dir)
		if err != nil {
			os.RemoveAll(dir)
			t.Fatal(err)
		}
		t.Cleanup(func() { tpm.Stop(); os.RemoveAll(dir) })
		m.Args = append(m.Args, tpm.Args()...)
	}
	ports = map[int]int{}
	for _, gp := range o.Forward {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		hp := ln.Addr().(*net.TCPAddr).Port
		ln.Close() // QEMU binds it; a race with another process is unlikely
		ports[gp] = hp
		for i, a := range m.Args {
			if strings.HasPrefix(a, "user,id=fwnet0") {
				m.Args[i] = a + fmt.Sprintf(",hostfwd=tcp:127.0.0.1:%d-:%d", hp, gp)
			}
		}
	}
	return m, disk, ports
}

func runHost(t testing.TB, m qemutests.Machine, markers []qemutests.Marker, abort string) qemutests.Result {
	t.Helper()
	return runHostWith(t, context.Background(), m, markers, abort, nil)
}

// runHostWith is runHost with a context (cancelled: the run ends) and a
// function called as each marker matches (on Run's goroutine: anything
// slow goes to a goroutine of its own, or the console backs up).
func runHostWith(t testing.TB, ctx context.Context, m qemutests.Machine, markers []qemutests.Marker, abort string, onMarker func(qemutests.Match)) qemutests.Result {
	t.Helper()
	// Kept when the test fails (a t.TempDir would be gone with the path
	// the failure names).
	dir, err := os.MkdirTemp("", "fwbuild-host-console-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			os.RemoveAll(dir)
		}
	})
	opts := qemutests.Options{
		LogPath: filepath.Join(dir, "console.log"),
		OnMarker: func(mt qemutests.Match) {
			t.Logf("%6.1fs %-16s %s", mt.At.Seconds(), mt.Marker.Name, mt.Line)
			if onMarker != nil {
				onMarker(mt)
			}
		},
	}
	if abort != "" {
		opts.Abort = regexp.MustCompile(abort)
	}
	res, err := qemutests.Run(ctx, m, markers, opts)
	if err != nil {
		log, _ := os.ReadFile(res.LogPath)
		t.Fatalf("%v (log %s)\n%s\n%s", err, res.LogPath, strings.Join(res.Cmdline, " "), log)
	}
	return res
}

func chain(t testing.TB, path string) []qemutests.Marker {
	t.Helper()
	ms, err := qemutests.BootChain(path)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

func values(res qemutests.Result) map[string][]string {
	v := map[string][]string{}
	for _, m := range res.Matches {
		v[m.Marker.Name] = m.Values
	}
	return v
}

func lines(res qemutests.Result) map[string]string {
	l := map[string]string{}
	for _, m := range res.Matches {
		l[m.Marker.Name] = m.Line
	}
	return l
}

// noNPT is the host board's virtual CPU without nested paging: Xen finds
// no HAP (and Debian's Xen has no shadow paging), so no PVH guest can run.
const noNPT = "qemu64,+svm,+rdrand"

// installerDiskBytes is the installer guest's disk in qemu-q35-host.yaml.
const installerDiskBytes = 256 << 20

func TestHostDataDiskPersists(t *testing.T) {
	m, disk, _ := hostMachine(t, hostOpts{}) // a blank disk: sparse zeros
	bl := buildHost(t)
	token := fmt.Sprintf("fwbuild-marker-%d", rand.Int63())
	const r = qemutests.TimeoutReady
	const g = hostGuest
	const inst = installerGuest
	initrd := contract.DataImageFile(g, contract.GuestImageInitrd)

	// Boot 1: the USB key (images from its fwbuild-images partition), a
	// blank disk, a CPU with nested paging.
	ms := append(chain(t, qemutests.ChainUSB),
		qemutests.Regexp("management", contract.ManagementPattern, r),
		qemutests.Regexp("guest-bridge", contract.GuestBridgePattern, r),
		qemutests.Regexp("data-disk", contract.DataDiskPattern, r),
		qemutests.Regexp("copied-kernel", contract.GuestImageCopiedPattern(g, contract.GuestImageKernel), r),
		qemutests.Regexp("copied-initrd", contract.GuestImageCopiedPattern(g, contract.GuestImageInitrd), r),
		qemutests.Regexp("copied-root", contract.GuestImageCopiedPattern(g, contract.GuestImageRoot), r),
		qemutests.Regexp("copied-inst-kernel", contract.GuestImageCopiedPattern(installerImage, contract.GuestImageKernel), r),
		qemutests.Regexp("copied-inst-initrd", contract.GuestImageCopiedPattern(installerImage, contract.GuestImageInitrd), r),
		qemutests.Regexp("disk-created", contract.GuestDiskCreatedPattern(g, "root"), r),
		qemutests.Regexp("inst-disk-created", contract.GuestDiskCreatedPattern(inst, "disk"), r),
		qemutests.Regexp("running", contract.GuestRunningPattern(g), r),
		// PVH with the USB key in dom0 is slow to reach its root (see
		// the README's host section): 93 s alone, more beside the suite.
		diagnosed(qemutests.Regexp("root", contract.GuestOSRootPattern(g), 4*r)),
		diagnosed(qemutests.Regexp("dhcp", contract.GuestOSDHCPPattern(g), r)),
		qemutests.Regexp("fetched", contract.GuestOSFetchedPattern(g), r),
		// The guest's vif is on the guest bridge, the management
		// bridge has its NIC alone.
		then(qemutests.Regexp("guest-marker", contract.GuestOSMarkerPattern(g), r), "ls /sys/class/net/xenbr1/brif; echo mgmt-ports-$(ls /sys/class/net/xenbr0/brif)\n"),
		qemutests.Regexp("vif-in-bridge", `(?:^|\s)vif(\d+)\.0(?:\s|$)`, r),
		// Not the typed command's echo ("mgmt-ports-$(ls ...").
		then(qemutests.Regexp("mgmt-ports", `mgmt-ports-(\w[^$]*?)\s*$`, r), "xenstore-ls /local/domain/0/backend/vbd\n"),
		then(qemutests.Regexp("vbd-physical", `physical-device = "7:([0-9a-f]+)"`, r), "cat /sys/block/loop0/loop/backing_file\n"),
		then(qemutests.Regexp("loop-backing", `(?:^|\s)`+regexp.QuoteMeta(contract.DataGuestDisk(g, "root"))+`$`, r), "echo "+token+" > "+contract.DataMount+"/marker; sync; echo synced-$((40+2))\n"),
		// Destroying the guest runs the remove/offline hotplug calls:
		// the loop device is detached (size 0) and the vif gone.
		then(qemutests.Regexp("synced", `synced-42`, r), "/usr/sbin/xl destroy "+g+"; echo loop0-size-$(cat /sys/block/loop0/size) brif-$(ls /sys/class/net/xenbr1/brif)\n"),
		// dom0's addresses as the kernel has them: the management
		// bridge's, and none on the guest bridge.
		then(qemutests.Regexp("destroyed", `loop0-size-(\d+) brif-(.*\S)\s*$`, r), "ip addr show xenbr0; ip addr show xenbr1; echo addrs-$((5+5))\n"),
		// The stock image's initrd on the data disk loses its bytes (as
		// a damaged file would): the next boot, without the USB key,
		// must fetch it again from guest_images_url.
		then(qemutests.Regexp("addrs", `addrs-10`, r), "true > "+initrd+"; sync; echo damaged-$((1+1))\n"),
		qemutests.Regexp("damaged", `damaged-2`, r),
	)
	res := runHost(t, m, ms, contract.FailurePattern+"|"+contract.GuestOSFailurePattern)
	v, l := values(res), lines(res)
	if v["management"][0] != "10.0.2.15" || v["management"][1] != "24" || v["management"][2] != "xenbr0" || v["management"][3] != "dhcp" {
		t.Errorf("management line %v: want 10.0.2.15/24 on xenbr0 by DHCP (QEMU's user network)", v["management"])
	}
	if v["data-disk"][2] != "prepared" {
		t.Errorf("first boot: data disk %v, want prepared", v["data-disk"])
	}
	// From the USB key: dom0 reads its fwbuild-images partition (xHCI,
	// usb-storage, sd in the dom0 kernel).
	for k, f := range map[string][2]string{
		"copied-kernel": {g, contract.GuestImageKernel}, "copied-initrd": {g, contract.GuestImageInitrd}, "copied-root": {g, contract.GuestImageRoot},
		"copied-inst-kernel": {installerImage, contract.GuestImageKernel}, "copied-inst-initrd": {installerImage, contract.GuestImageInitrd},
	} {
		if from, want := v[k][0], "media:"+f[0]+"/"+f[1]; from != want {
			t.Errorf("%s: from %s, want %s (the USB key's images partition)", k, from, want)
		}
	}
	if gr, err := contract.ParseGuestRunning(l["running"]); err != nil || gr.Type != "pvh" {
		t.Errorf("guest line %q (%v): want type=pvh (the cloud kernel has CONFIG_XEN_PVH=y)", l["running"], err)
	}
	if v["root"][0] != "/dev/xvda" {
		t.Errorf("guest root %q, want /dev/xvda (its vbd)", v["root"][0])
	}
	checkGuestLease(t, "boot 1: "+g, l["dhcp"])
	checkGuestBridge(t, l["guest-bridge"])
	if f, err := contract.ParseGuestOSFetched(l["fetched"]); err != nil || f.URL != bl.fetchURL || f.SHA256 != bl.fetchSum {
		t.Errorf("guest fetched line %q: %+v, %v; want %s with sha256 %s", l["fetched"], f, err, bl.fetchURL, bl.fetchSum)
	}
	first, err := contract.ParseGuestOSMarker(l["guest-marker"])
	if err != nil || first.Found || first.Token == "" {
		t.Errorf("first boot: guest marker line %q (%v): want a marker written", l["guest-marker"], err)
	}
	if v["vif-in-bridge"][0] != v["running"][0] {
		t.Errorf("vif%s.0 in the guest bridge, but the guest is domid %s", v["vif-in-bridge"][0], v["running"][0])
	}
	if p := v["mgmt-ports"][0]; p != "eth0" {
		t.Errorf("the management bridge's ports are %q while the guest runs, want its NIC alone (eth0): the guest's vif belongs on xenbr1", p)
	}
	if d := v["destroyed"]; d[0] != "0" || d[1] != "eth1" {
		t.Errorf("after xl destroy: loop0 has %s sectors (want 0: detached), the guest bridge's ports are %q (want its uplink alone, eth1)", d[0], d[1])
	}
	log, _ := os.ReadFile(res.LogPath)
	checkBridgeAddrs(t, log, l["destroyed"], v["management"][0]+"/"+v["management"][1], res.LogPath)
	// The host's own view of what ctld wrote: a GPT with fwbuild's partition.
	out, err := exec.Command("sgdisk", "-p", disk).CombinedOutput()
	if err != nil || !strings.Contains(string(out), contract.DataPartitionName) {
		t.Errorf("sgdisk -p on the data disk: %v\n%s", err, out)
	}
	t.Logf("boot 1: management after %v, guest running after %v, its DHCP lease %v later", at(res, "management"), at(res, "running"), at(res, "dhcp")-at(res, "running"))

	// Boot 2: the same disk, from the SPI flash without the USB key (as
	// after installation), on a CPU without nested paging. The debian
	// guest (type: auto) starts as PV and finds its marker; the damaged
	// initrd comes from guest_images_url; then the operator starts the
	// installer guest, which reaches its first screen seeing its disk.
	//
	// The unit is provisioned first and the Redfish port forwarded: once
	// the debian guest has found its marker, the host drives the service
	// (redfish_host_test.go) while the boot runs: 401s, fwbuild's client
	// (pinned to the fingerprint on the console) lists the systems and
	// creates a VM with a root disk from the debian image and a NIC,
	// sushy powers it on and off, redfishtool lists and starts it; the VM
	// gets its DHCP lease, its console log is read through the API, and
	// DELETE frees its directory (ctld's deleted line, then ls from dom0).
	// dom0's listening sockets show the service on the management address
	// alone.
	requireRedfishClients(t)
	chip, unitRes := provisionHostChip(t, bl)
	m, _, ports := hostMachine(t, hostOpts{Path: qemutests.ChainSPI, Disk: disk, CPU: noNPT, Chip: chip, Forward: []int{redfishPort}, TPM: true})
	rb := newRedfishBoot(ports[redfishPort], unitRes, "marker", "pv")
	// The TPM quote through the API is checked against the build's
	// prediction for this path.
	if rb.want, err = boottest.Prediction(bl.out, qemutests.ChainSPI); err != nil {
		t.Fatal(err)
	}
	defer rb.cancel()
	defer rb.errs.report(t)
	ms = append(chain(t, qemutests.ChainSPI),
		qemutests.Regexp("management", contract.ManagementPattern, r),
		qemutests.Regexp("guest-bridge", contract.GuestBridgePattern, r),
		qemutests.Regexp("data-disk", contract.DataDiskPattern, r),
		qemutests.Regexp("unit", contract.UnitLoadedPattern, r),
		qemutests.Regexp("redfish", contract.RedfishPattern, r),
		qemutests.Regexp("copied-initrd", contract.GuestImageCopiedPattern(g, contract.GuestImageInitrd), r),
		qemutests.Regexp("running", contract.GuestRunningPattern(g), r),
		qemutests.Regexp("root", contract.GuestOSRootPattern(g), r),
		qemutests.Regexp("dhcp", contract.GuestOSDHCPPattern(g), r),
		qemutests.Regexp("fetched", contract.GuestOSFetchedPattern(g), r),
		then(qemutests.Regexp("guest-marker", contract.GuestOSMarkerPattern(g), r), "cat "+contract.DataMount+"/marker\n"),
		// Not the typed command's echo: the token alone, after the prompt at most.
		qemutests.Regexp("marker", `(?:^|\s)`+token+`$`, r))
	ms = append(append(ms, rb.markers(r, "ctld start "+inst+"\n")...),
		qemutests.Regexp("inst-running", contract.GuestRunningPattern(inst), r),
		// Debian's installer (a 41 MB initrd, unpacked by a PV kernel
		// under TCG) took 20 s to its disk line and 23 s more to its first
		// screen on an idle machine, 142 s and over 240 s in a CI run that
		// compiled a kernel beside it: these two wait longer than the rest.
		qemutests.Regexp("inst-disk", contract.GuestOSDiskPattern(inst), 4*r),
		// Its first screen, the language choice (with 1 GiB: below that
		// it starts with a low-memory notice instead).
		qemutests.Substring("inst-first-screen", "Select a language", 4*r),
	)
	res = runHostWith(t, rb.ctx, m, ms, contract.FailurePattern+"|"+contract.GuestOSFailurePattern, rb.onMarker)
	v, l = values(res), lines(res)
	if v["data-disk"][2] != "found" {
		t.Errorf("second boot: data disk %v, want found", v["data-disk"])
	}
	if from, want := v["copied-initrd"][0], bl.imagesURL+"/"+contract.GuestImageArtefact(g, contract.GuestImageInitrd); from != want {
		t.Errorf("second boot: the damaged initrd came from %s, want %s (guest_images_url: no USB key)", from, want)
	}
	if gr, err := contract.ParseGuestRunning(l["running"]); err != nil || gr.Type != "pv" || !strings.Contains(gr.Why, "hap") {
		t.Errorf("second boot: guest line %q (%+v, %v): want type=pv with why (type auto, no HAP in the virtual CPU)", l["running"], gr, err)
	}
	if second, err := contract.ParseGuestOSMarker(l["guest-marker"]); err != nil || !second.Found || second.Token != first.Token {
		t.Errorf("second boot: guest marker line %q (%v): want found %s", l["guest-marker"], err, first.Token)
	}
	if gr, err := contract.ParseGuestRunning(l["inst-running"]); err != nil || gr.Type != "pv" {
		t.Errorf("installer guest line %q (%v): want type=pv", l["inst-running"], err)
	}
	if d, err := contract.ParseGuestOSDisk(l["inst-disk"]); err != nil || d.Device != "xvda" || d.Bytes != installerDiskBytes {
		t.Errorf("installer disk line %q: %+v, %v; want xvda of %d bytes (its vbd)", l["inst-disk"], d, err, installerDiskBytes)
	}
	checkGuestBridge(t, l["guest-bridge"])
	checkGuestLease(t, "boot 2: "+g, l["dhcp"])
	log, _ = os.ReadFile(res.LogPath)
	rb.check(t, res, log, v["management"][0])
	if n := len(regexp.MustCompile(contract.CtldPrefix+`guest image \S+ copied`).FindAll(log, -1)); n != 1 {
		t.Errorf("second boot: %d image files copied, want 1 (the damaged initrd) (log %s)", n, res.LogPath)
	}
	// The profile's guests' disks (the API's VM makes one of its own).
	if re := contract.CtldPrefix + `guest (?:` + g + `|` + inst + `) disk \S+ created`; regexp.MustCompile(re).Match(log) {
		t.Errorf("second boot: %s matched: a disk created again (log %s)", re, res.LogPath)
	}
	t.Logf("boot 2: guest running (PV) after %v, its DHCP lease %v later; installer running %v after the command, first screen %v later",
		at(res, "running"), at(res, "dhcp")-at(res, "running"), at(res, "inst-running")-at(res, "marker"), at(res, "inst-first-screen")-at(res, "inst-running"))
}

// checkGuestLease says whether a guest's DHCP line shows a lease of its own
// on the guest network (boottest.GuestSubnet(0): router 10.0.3.2, leases
// from .15), not on the management network's 10.0.2.0/24.
func checkGuestLease(t testing.TB, who, line string) {
	t.Helper()
	d, err := contract.ParseGuestOSDHCP(line)
	if err != nil || d.Router != guestNetHost || !strings.HasPrefix(d.IP, "10.0.3.") || d.IP == guestNetHost {
		t.Errorf("%s: DHCP line %q: %+v, %v; want a lease on the guest network 10.0.3.0/24 (router %s) through the guest bridge", who, line, d, err, guestNetHost)
	}
}

// checkGuestBridge checks ctld's guest bridge line: xenbr1 with its uplink
// (the second NIC, eth1), no address of dom0's on it, and no IPv6 (the
// dom0 kernel of qemu-q35 has none at all: absent).
func checkGuestBridge(t testing.TB, line string) {
	t.Helper()
	gb, err := contract.ParseGuestBridge(line)
	if err != nil || gb.Bridge != "xenbr1" || strings.Join(gb.Uplinks, ",") != "eth1" || len(gb.Addrs) != 0 || gb.IPv6 != "absent" {
		t.Errorf("guest bridge line %q: %+v, %v; want xenbr1 with uplink eth1, addresses=none, ipv6=absent", line, gb, err)
	}
}

// checkBridgeAddrs reads `ip addr show xenbr0; ip addr show xenbr1` from
// the console after the line after: the management bridge has mgmt
// (positive control: ip prints addresses as "inet A/N"), the guest bridge
// none of either family.
func checkBridgeAddrs(t testing.TB, log []byte, after, mgmt, logPath string) {
	t.Helper()
	s := string(log)
	if i := strings.Index(s, after); i >= 0 {
		s = s[i+len(after):]
	}
	end := strings.Index(s, "addrs-10") // the echo typed was addrs-$((5+5))
	br1 := regexp.MustCompile(`(?m)^\d+: xenbr1: <`).FindStringIndex(s)
	br0 := regexp.MustCompile(`(?m)^\d+: xenbr0: <`).FindStringIndex(s)
	if end < 0 || br0 == nil || br1 == nil || br0[0] > br1[0] || br1[0] > end {
		t.Errorf("no ip addr output for xenbr0 then xenbr1 before addrs-10 (log %s)", logPath)
		return
	}
	if mgmtOut := s[br0[0]:br1[0]]; !strings.Contains(mgmtOut, "inet "+mgmt+" ") {
		t.Errorf("ip addr show xenbr0 lacks inet %s:\n%s", mgmt, mgmtOut)
	}
	if guestOut := s[br1[0]:end]; strings.Contains(guestOut, "inet") {
		t.Errorf("dom0 has an address on the guest bridge:\n%s", guestOut)
	}
}

// then types s on the console once mk has matched.
// guestStallDiagnosis is typed on dom0's shell when a guest's marker times
// out: whether its vCPU is blocked or spinning (xl list twice, seconds
// apart: its CPU time), Xen's view of its vCPUs and pending events (debug
// key q, printed on the serial console), and dom0's load. A PVH guest on
// the USB path once printed nothing for minutes in CI, and the log could
// not tell a stalled guest from a stalled console.
const guestStallDiagnosis = "/usr/sbin/xl list; /usr/sbin/xl vcpu-list; /usr/sbin/xl debug-keys q; ps; cat /proc/loadavg /proc/interrupts; /usr/sbin/xl list\n"

func diagnosed(mk qemutests.Marker) qemutests.Marker {
	mk.Diagnose = guestStallDiagnosis
	return mk
}

func then(mk qemutests.Marker, s string) qemutests.Marker {
	mk.Then = s
	return mk
}

func at(res qemutests.Result, name string) time.Duration {
	for _, m := range res.Matches {
		if m.Marker.Name == name {
			return m.At
		}
	}
	return 0
}

// hostGuest is qemu-q35-host's autostart guest: the stock Debian image.
const hostGuest = "debian"

// installerGuest is the guest of Debian's installer image, installerImage.
const (
	installerGuest = "installer"
	installerImage = "debian-installer"
)

func TestHostForeignDataDiskUntouched(t *testing.T) {
	m, disk, _ := hostMachine(t, hostOpts{})
	// A third party's partition table: sgdisk's GPT with a Linux partition.
	if out, err := exec.Command("sgdisk", "-n", "1:2048:+16M", "-t", "1:8300", "-c", "1:payroll", disk).CombinedOutput(); err != nil {
		t.Fatalf("sgdisk (gdisk; `fwbuild doctor --fix` installs it): %v\n%s", err, out)
	}
	before, err := os.ReadFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	const r = qemutests.TimeoutReady
	ms := append(chain(t, qemutests.ChainUSB),
		qemutests.Regexp("management", contract.ManagementPattern, r),
		qemutests.Regexp("refused", `fwbuild-ctld: FAILED storage: data disk serial:FWDATA0 \((/dev/vd[a-z]+)\) holds a GPT with 1 partition\(s\) \("payroll"\)`, r),
		qemutests.Regexp("guest-refused", contract.CtldPrefix+"guest "+hostGuest+" FAILED: its disks are on the data disk", r),
	)
	runHost(t, m, ms, "")
	after, err := os.ReadFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(after) != sha256.Sum256(before) {
		t.Error("the foreign disk changed")
	}
}
