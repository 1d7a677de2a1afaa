package qemutests_test

// The control domain as a host (issue 17): qemu-q35-host boots with a
// management NIC (QEMU user networking, virtio-net at 00:03.0) and a data
// disk (virtio-blk, serial FWDATA0). Three boots, sharing assertions:
//
//  1. a blank data disk: ctld reports its DHCP address on the bridge,
//     prepares the disk, creates the demo guest's disk, and starts the
//     guest with a vif (seen in the bridge) and a vbd (a loop device on the
//     guest's disk file, its numbers in the backend's physical-device); a
//     marker file goes onto the data disk;
//  2. QEMU again on the same disk file: the disk is found, nothing is
//     created, the guest comes back from its definition on the disk, the
//     marker is there;
//  3. a disk with a foreign GPT (sgdisk's): not a byte changes, and the
//     FAILED line names it.
//
// The demo guest runs dom0's kernel, which has no Xen frontends, so the
// backends stay in InitWait: what is checked is libxl + ctld's hotplug.
// Once the stock guest kernel is there, give the guest that kernel (in
// boards/qemu-q35-host.yaml) and add its own markers (DHCP lease, disk
// marker) to hostMarkers.

import (
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/contract"
	"github.com/fwbuild/fwbuild/internal/boottest"
	"github.com/fwbuild/fwbuild/internal/pipeline"
	"github.com/fwbuild/fwbuild/internal/testdeps"
	qemutests "github.com/fwbuild/fwbuild/qemu-tests"
)

const hostBoard = "qemu-q35-host"

var (
	hostOnce  sync.Once
	hostBuilt built
)

func buildHost(t testing.TB) built {
	t.Helper()
	hostOnce.Do(func() {
		root := testdeps.RepoRoot(t)
		b := testdeps.Board(t, hostBoard)
		cacheDir := testdeps.CacheDir(t)
		out, err := os.MkdirTemp("", "fwbuild-host-")
		if err != nil {
			hostBuilt.err = err
			return
		}
		_, hostBuilt.err = pipeline.Build(context.Background(), pipeline.Options{
			Board: b, BoardsDir: filepath.Join(root, "boards"), CacheDir: cacheDir, OutDir: out,
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

// hostMachine is the board's USB boot as boottest gives it to a board with
// a network and a data disk: a virtio-net NIC on QEMU's user network at
// 00:03.0 and a blank virtio data disk with serial FWDATA0, whose file it
// returns (written through, so a second boot of m sees the first's writes).
func hostMachine(t *testing.T) (qemutests.Machine, string) {
	t.Helper()
	bl := buildHost(t)
	work := t.TempDir()
	m, _, err := boottest.Machine(boottest.Spec{Board: testdeps.Board(t, hostBoard), Comps: bl.comps, OutDir: bl.out, Path: qemutests.ChainUSB, WorkDir: work})
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
	token := fmt.Sprintf("fwbuild-marker-%d", rand.Int63())
	const r = qemutests.TimeoutReady

	// Boot 1: blank disk.
	ms := append(chain(t),
		qemutests.Regexp("management", contract.ManagementPattern, r),
		qemutests.Regexp("data-disk", contract.DataDiskPattern, r),
		qemutests.Regexp("disk-created", contract.GuestDiskCreatedPattern("demo", "root"), r),
		qemutests.Regexp("demo-running", contract.GuestRunningPattern("demo"), r),
		then(qemutests.Regexp("demo-up", contract.GuestUpPattern("demo"), r), "ls /sys/class/net/xenbr0/brif\n"),
		then(qemutests.Regexp("vif-in-bridge", `(?:^|\s)vif(\d+)\.0(?:\s|$)`, r), "xenstore-ls /local/domain/0/backend/vbd\n"),
		then(qemutests.Regexp("vbd-physical", `physical-device = "7:([0-9a-f]+)"`, r), "cat /sys/block/loop0/loop/backing_file\n"),
		then(qemutests.Regexp("loop-backing", `(?:^|\s)`+regexp.QuoteMeta(contract.DataGuestDisk("demo", "root"))+`$`, r), "echo "+token+" > "+contract.DataMount+"/marker; sync; echo synced-$((40+2))\n"),
		// Destroying the guest runs the remove/offline hotplug calls:
		// the loop device is detached (size 0) and the vif gone.
		then(qemutests.Regexp("synced", `synced-42`, r), "/usr/sbin/xl destroy demo; echo loop0-size-$(cat /sys/block/loop0/size) brif-$(ls /sys/class/net/xenbr0/brif)\n"),
		qemutests.Regexp("destroyed", `loop0-size-(\d+) brif-(.*\S)\s*$`, r),
	)
	res := runHost(t, m, ms, contract.FailurePattern)
	v := values(res)
	if v["management"][0] != "10.0.2.15" || v["management"][1] != "24" || v["management"][2] != "xenbr0" || v["management"][3] != "dhcp" {
		t.Errorf("management line %v: want 10.0.2.15/24 on xenbr0 by DHCP (QEMU's user network)", v["management"])
	}
	if v["data-disk"][2] != "prepared" {
		t.Errorf("first boot: data disk %v, want prepared", v["data-disk"])
	}
	if v["vif-in-bridge"][0] != v["demo-running"][0] {
		t.Errorf("vif%s.0 in the bridge, but the demo guest is domid %s", v["vif-in-bridge"][0], v["demo-running"][0])
	}
	if d := v["destroyed"]; d[0] != "0" || d[1] != "eth0" {
		t.Errorf("after xl destroy: loop0 has %s sectors (want 0: detached), the bridge's ports are %q (want the NIC alone, eth0)", d[0], d[1])
	}
	// The host's own view of what ctld wrote: a GPT with fwbuild's partition.
	out, err := exec.Command("sgdisk", "-p", disk).CombinedOutput()
	if err != nil || !strings.Contains(string(out), contract.DataPartitionName) {
		t.Errorf("sgdisk -p on the data disk: %v\n%s", err, out)
	}
	t.Logf("boot 1: management after %v, demo guest running after %v", at(res, "management"), at(res, "demo-running"))

	// Boot 2: the same disk.
	ms = append(chain(t),
		qemutests.Regexp("management", contract.ManagementPattern, r),
		qemutests.Regexp("data-disk", contract.DataDiskPattern, r),
		qemutests.Regexp("demo-running", contract.GuestRunningPattern("demo"), r),
		then(qemutests.Regexp("demo-up", contract.GuestUpPattern("demo"), r), "cat "+contract.DataMount+"/marker\n"),
		// Not the typed command's echo: the token alone, after the prompt at most.
		qemutests.Regexp("marker", `(?:^|\s)`+token+`$`, r),
	)
	res = runHost(t, m, ms, contract.FailurePattern)
	if v := values(res); v["data-disk"][2] != "found" {
		t.Errorf("second boot: data disk %v, want found", v["data-disk"])
	}
	log, _ := os.ReadFile(res.LogPath)
	if regexp.MustCompile(contract.GuestDiskCreatedPattern("demo", "root")).Match(log) {
		t.Errorf("second boot created the guest's disk again (log %s)", res.LogPath)
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
		qemutests.Regexp("guest-refused", `fwbuild-ctld: guest demo FAILED: its disks are on the data disk`, r),
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
