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
//     gets a DHCP lease through the bridge, fetches a file from an HTTP
//     server this test runs on the host (10.0.2.2) and writes a marker to
//     its disk; a marker file of dom0's goes onto the data disk too;
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
	hostOnce  sync.Once
	hostBuilt hostBuild
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
// command line).
func buildHost(t testing.TB) hostBuild {
	t.Helper()
	hostOnce.Do(func() {
		root := testdeps.RepoRoot(t)
		boardsDir := filepath.Join(root, "boards")
		cacheDir := testdeps.CacheDir(t)
		body := make([]byte, 64<<10)
		rand.Read(body)
		h := sha256.Sum256(body)
		hostBuilt.fetchSum = hex.EncodeToString(h[:])
		out, err := os.MkdirTemp("", "fwbuild-host-")
		if err != nil {
			hostBuilt.err = err
			return
		}
		// Served for the rest of the test binary's life (shared by the
		// tests): the file the guest fetches, and the output directory as
		// the board's guest_images_url (the images' second source, after
		// the USB key's partition; not the board's fixed port 8080, which
		// another test on the machine may hold).
		var base string
		if base, hostBuilt.err = serveForever(out, "fetch.bin", body); hostBuilt.err != nil {
			return
		}
		hostBuilt.fetchURL = base + "/fetch.bin"
		hostBuilt.imagesURL = base
		p := filepath.Join(out, "qemu-q35-host-test.yaml")
		yml := "extends: " + filepath.Join(boardsDir, hostBoard+".yaml") + "\nguest_images_url: " + base +
			"\nguests:\n  - {name: debian, cmdline: " + contract.GuestFetchParam + "=" + hostBuilt.fetchURL + "}\n"
		if hostBuilt.err = os.WriteFile(p, []byte(yml), 0o644); hostBuilt.err != nil {
			return
		}
		if hostBuilt.board, hostBuilt.err = boardcfg.Load(p, boardsDir); hostBuilt.err != nil {
			return
		}
		b := hostBuilt.board
		_, hostBuilt.err = pipeline.Build(context.Background(), pipeline.Options{
			Board: b, BoardsDir: boardsDir, CacheDir: cacheDir, OutDir: out,
		})
		hostBuilt.out = out
		if hostBuilt.err == nil {
			hostBuilt.comps, hostBuilt.err = pipeline.Fetch(context.Background(), b, cacheDir, nil)
		}
	})
	if hostBuilt.err != nil {
		t.Fatalf("build %s: %v", hostBoard, hostBuilt.err)
	}
	return hostBuilt
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

// hostMachine is the board's USB boot as boottest gives it to a board with
// a network and a data disk: a virtio-net NIC on QEMU's user network at
// 00:03.0 and a blank virtio data disk with serial FWDATA0, whose file it
// returns (written through, so a second boot of m sees the first's writes).
func hostMachine(t *testing.T) (qemutests.Machine, string) {
	t.Helper()
	bl := buildHost(t)
	work := t.TempDir()
	m, _, err := boottest.Machine(boottest.Spec{Board: bl.board, Comps: bl.comps, OutDir: bl.out, Path: qemutests.ChainUSB, WorkDir: work})
	if err != nil {
		t.Fatal(err)
	}
	return m, filepath.Join(work, "data.img")
}

func runHost(t *testing.T, m qemutests.Machine, markers []qemutests.Marker, abort string) qemutests.Result {
	t.Helper()
	opts := qemutests.Options{
		LogPath:  filepath.Join(t.TempDir(), "console.log"),
		OnMarker: func(mt qemutests.Match) { t.Logf("%6.1fs %-16s %s", mt.At.Seconds(), mt.Marker.Name, mt.Line) },
	}
	if abort != "" {
		opts.Abort = regexp.MustCompile(abort)
	}
	res, err := qemutests.Run(context.Background(), m, markers, opts)
	if err != nil {
		log, _ := os.ReadFile(res.LogPath)
		t.Fatalf("%v (log %s)\n%s\n%s", err, res.LogPath, strings.Join(res.Cmdline, " "), log)
	}
	return res
}

func chain(t *testing.T) []qemutests.Marker {
	t.Helper()
	ms, err := qemutests.BootChain(qemutests.ChainUSB)
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

func TestHostDataDiskPersists(t *testing.T) {
	m, disk := hostMachine(t) // a blank disk: sparse zeros
	bl := buildHost(t)
	token := fmt.Sprintf("fwbuild-marker-%d", rand.Int63())
	const r = qemutests.TimeoutReady
	const g = hostGuest

	// Boot 1: blank disk.
	ms := append(chain(t),
		qemutests.Regexp("management", contract.ManagementPattern, r),
		qemutests.Regexp("data-disk", contract.DataDiskPattern, r),
		qemutests.Regexp("copied-kernel", contract.GuestImageCopiedPattern(g, contract.GuestImageKernel), r),
		qemutests.Regexp("copied-initrd", contract.GuestImageCopiedPattern(g, contract.GuestImageInitrd), r),
		qemutests.Regexp("copied-root", contract.GuestImageCopiedPattern(g, contract.GuestImageRoot), r),
		qemutests.Regexp("disk-created", contract.GuestDiskCreatedPattern(g, "root"), r),
		qemutests.Regexp("running", contract.GuestRunningPattern(g), r),
		qemutests.Regexp("root", contract.GuestOSRootPattern(g), r),
		qemutests.Regexp("dhcp", contract.GuestOSDHCPPattern(g), r),
		qemutests.Regexp("fetched", contract.GuestOSFetchedPattern(g), r),
		then(qemutests.Regexp("guest-marker", contract.GuestOSMarkerPattern(g), r), "ls /sys/class/net/xenbr0/brif\n"),
		then(qemutests.Regexp("vif-in-bridge", `(?:^|\s)vif(\d+)\.0(?:\s|$)`, r), "xenstore-ls /local/domain/0/backend/vbd\n"),
		then(qemutests.Regexp("vbd-physical", `physical-device = "7:([0-9a-f]+)"`, r), "cat /sys/block/loop0/loop/backing_file\n"),
		then(qemutests.Regexp("loop-backing", `(?:^|\s)`+regexp.QuoteMeta(contract.DataGuestDisk(g, "root"))+`$`, r), "echo "+token+" > "+contract.DataMount+"/marker; sync; echo synced-$((40+2))\n"),
		// Destroying the guest runs the remove/offline hotplug calls:
		// the loop device is detached (size 0) and the vif gone.
		then(qemutests.Regexp("synced", `synced-42`, r), "/usr/sbin/xl destroy "+g+"; echo loop0-size-$(cat /sys/block/loop0/size) brif-$(ls /sys/class/net/xenbr0/brif)\n"),
		qemutests.Regexp("destroyed", `loop0-size-(\d+) brif-(.*\S)\s*$`, r),
	)
	res := runHost(t, m, ms, contract.FailurePattern+"|"+contract.GuestOSFailurePattern)
	v := values(res)
	if v["management"][0] != "10.0.2.15" || v["management"][1] != "24" || v["management"][2] != "xenbr0" || v["management"][3] != "dhcp" {
		t.Errorf("management line %v: want 10.0.2.15/24 on xenbr0 by DHCP (QEMU's user network)", v["management"])
	}
	if v["data-disk"][2] != "prepared" {
		t.Errorf("first boot: data disk %v, want prepared", v["data-disk"])
	}
	// From guest_images_url (the test's server): ctld tries the USB key's
	// images partition first, but the dom0 kernel has no USB mass storage
	// (qemu-q35's kernel: its USB key is read by OVMF only).
	for k, f := range map[string]string{"copied-kernel": contract.GuestImageKernel, "copied-initrd": contract.GuestImageInitrd, "copied-root": contract.GuestImageRoot} {
		if from, want := v[k][0], bl.imagesURL+"/"+contract.GuestImageArtefact(g, f); from != want {
			t.Errorf("%s: from %s, want %s", k, from, want)
		}
	}
	lines := map[string]string{}
	for _, mt := range res.Matches {
		lines[mt.Marker.Name] = mt.Line
	}
	if gr, err := contract.ParseGuestRunning(lines["running"]); err != nil || gr.Type != "pvh" {
		t.Errorf("guest line %q (%v): want type=pvh (the cloud kernel has CONFIG_XEN_PVH=y)", lines["running"], err)
	}
	if v["root"][0] != "/dev/xvda" {
		t.Errorf("guest root %q, want /dev/xvda (its vbd)", v["root"][0])
	}
	if d, err := contract.ParseGuestOSDHCP(lines["dhcp"]); err != nil || d.Router != "10.0.2.2" || !strings.HasPrefix(d.IP, "10.0.2.") || d.IP == "10.0.2.15" {
		t.Errorf("guest DHCP line %q: %+v, %v; want a lease of its own from QEMU's user network (router 10.0.2.2) through the bridge", lines["dhcp"], d, err)
	}
	if f, err := contract.ParseGuestOSFetched(lines["fetched"]); err != nil || f.URL != bl.fetchURL || f.SHA256 != bl.fetchSum {
		t.Errorf("guest fetched line %q: %+v, %v; want %s with sha256 %s", lines["fetched"], f, err, bl.fetchURL, bl.fetchSum)
	}
	first, err := contract.ParseGuestOSMarker(lines["guest-marker"])
	if err != nil || first.Found || first.Token == "" {
		t.Errorf("first boot: guest marker line %q (%v): want a marker written", lines["guest-marker"], err)
	}
	if v["vif-in-bridge"][0] != v["running"][0] {
		t.Errorf("vif%s.0 in the bridge, but the guest is domid %s", v["vif-in-bridge"][0], v["running"][0])
	}
	if d := v["destroyed"]; d[0] != "0" || d[1] != "eth0" {
		t.Errorf("after xl destroy: loop0 has %s sectors (want 0: detached), the bridge's ports are %q (want the NIC alone, eth0)", d[0], d[1])
	}
	// The host's own view of what ctld wrote: a GPT with fwbuild's partition.
	out, err := exec.Command("sgdisk", "-p", disk).CombinedOutput()
	if err != nil || !strings.Contains(string(out), contract.DataPartitionName) {
		t.Errorf("sgdisk -p on the data disk: %v\n%s", err, out)
	}
	t.Logf("boot 1: management after %v, guest running after %v, its DHCP lease %v later", at(res, "management"), at(res, "running"), at(res, "dhcp")-at(res, "running"))

	// Boot 2: the same disk.
	ms = append(chain(t),
		qemutests.Regexp("management", contract.ManagementPattern, r),
		qemutests.Regexp("data-disk", contract.DataDiskPattern, r),
		qemutests.Regexp("running", contract.GuestRunningPattern(g), r),
		qemutests.Regexp("root", contract.GuestOSRootPattern(g), r),
		qemutests.Regexp("dhcp", contract.GuestOSDHCPPattern(g), r),
		qemutests.Regexp("fetched", contract.GuestOSFetchedPattern(g), r),
		then(qemutests.Regexp("guest-marker", contract.GuestOSMarkerPattern(g), r), "cat "+contract.DataMount+"/marker\n"),
		// Not the typed command's echo: the token alone, after the prompt at most.
		qemutests.Regexp("marker", `(?:^|\s)`+token+`$`, r),
	)
	res = runHost(t, m, ms, contract.FailurePattern+"|"+contract.GuestOSFailurePattern)
	if v := values(res); v["data-disk"][2] != "found" {
		t.Errorf("second boot: data disk %v, want found", v["data-disk"])
	}
	for _, mt := range res.Matches {
		if mt.Marker.Name != "guest-marker" {
			continue
		}
		if second, err := contract.ParseGuestOSMarker(mt.Line); err != nil || !second.Found || second.Token != first.Token {
			t.Errorf("second boot: guest marker line %q (%v): want found %s", mt.Line, err, first.Token)
		}
	}
	log, _ := os.ReadFile(res.LogPath)
	for _, re := range []string{contract.GuestDiskCreatedPattern(g, "root"), contract.CtldPrefix + `guest image \S+ copied`} {
		if regexp.MustCompile(re).Match(log) {
			t.Errorf("second boot: %s matched: created or copied again (log %s)", re, res.LogPath)
		}
	}
}

// then types s on the console once mk has matched.
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

func TestHostForeignDataDiskUntouched(t *testing.T) {
	m, disk := hostMachine(t)
	// A third party's partition table: sgdisk's GPT with a Linux partition.
	if out, err := exec.Command("sgdisk", "-n", "1:2048:+16M", "-t", "1:8300", "-c", "1:payroll", disk).CombinedOutput(); err != nil {
		t.Fatalf("sgdisk (gdisk; `fwbuild doctor --fix` installs it): %v\n%s", err, out)
	}
	before, err := os.ReadFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	const r = qemutests.TimeoutReady
	ms := append(chain(t),
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
