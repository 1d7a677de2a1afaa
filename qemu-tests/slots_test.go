package qemutests_test

// A/B payload slots on the ESP path (issue 20). Three signed builds of one
// board, qemu-q35-slots (qemu-q35 renamed: its demo guest autostarts, so a
// slot is confirmed only after it started): the factory's 0.1.0, an update 0.2.0
// and 0.3.0, whose dom0 kernel cannot start its init (a build broken on
// purpose, only here). One machine, kept across five boots as a server
// keeps its disk and its firmware's variables (the USB key and OVMF's
// variable store written in place). The USB key carries the unit's record,
// signed, on its ESP (`fwbuild provision --image usb.img`), and the board a
// management NIC: installs, refusals and the slots' inventory go through
// ctld's Redfish UpdateService from the host.
//
//  1. 0.1.0 from the removable-media path: slot a confirmed; ctld creates
//     both slots' boot options; update artefacts for another board, signed
//     by another owner and truncated are refused, the slots unchanged;
//     0.2.0's is installed into slot b (pending, BootNext);
//  2. the firmware tries slot b once: 0.2.0 runs, is confirmed, BootOrder
//     now starts with it;
//  3. a plain reboot stays on slot b; 0.3.0 goes into slot a;
//  4. slot a is tried: dom0 panics, Xen reboots the machine;
//  5. back on slot b by itself, 0.2.0 again; slot a is reported failed.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fwbuild/fwbuild/boardcfg"
	"github.com/fwbuild/fwbuild/contract"
	rf "github.com/fwbuild/fwbuild/contract/redfish"
	"github.com/fwbuild/fwbuild/contract/update"
	"github.com/fwbuild/fwbuild/internal/boottest"
	"github.com/fwbuild/fwbuild/internal/pipeline"
	"github.com/fwbuild/fwbuild/internal/testdeps"
	"github.com/fwbuild/fwbuild/provision"
	qemutests "github.com/fwbuild/fwbuild/qemu-tests"
	"github.com/fwbuild/fwbuild/secboot"
)

const slotsBoard = "qemu-q35-slots"

type slotsBuild struct {
	out   string
	board *boardcfg.Board
	comps pipeline.Components
	ver   string // the payloads' version, from the manifest
}

// buildSlots builds qemu-q35-slots at a version, signed with keys; extra is
// appended to dom0's command line.
func buildSlots(t *testing.T, keys, version, extra string, only string) slotsBuild {
	t.Helper()
	root := testdeps.RepoRoot(t)
	boardsDir := filepath.Join(root, "boards")
	base, err := boardcfg.Load(filepath.Join(boardsDir, "qemu-q35.yaml"), boardsDir)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// A management NIC (QEMU's user network) for the Redfish service; no
	// data disk: the TLS key lives in memory, a new one every boot.
	yml := fmt.Sprintf("extends: %s\nname: %s\nversion: %s\nhypervisor:\n  dom0:\n    cmdline: %q\n"+
		"network:\n  bridge: xenbr0\n  nics: [\"pci:0000:00:03.0\"]\n  address: dhcp\n",
		filepath.Join(boardsDir, "qemu-q35.yaml"), slotsBoard, version, strings.TrimSpace(base.Hypervisor.Dom0.Cmdline+" "+extra))
	p := filepath.Join(dir, slotsBoard+".yaml")
	if err := os.WriteFile(p, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := boardcfg.Load(p, boardsDir)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	res, err := pipeline.Build(context.Background(), pipeline.Options{Board: b, BoardsDir: boardsDir, CacheDir: testdeps.CacheDir(t), OutDir: out, Keys: keys, Only: only})
	if err != nil {
		t.Fatalf("build %s %s: %v", slotsBoard, version, err)
	}
	comps, err := pipeline.Fetch(context.Background(), b, testdeps.CacheDir(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	return slotsBuild{out: out, board: b, comps: comps, ver: res.Version}
}

// readESP reads a file of the ESP (nil when it is not there).
func readESP(t *testing.T, img, name string) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if _, err := exec.Command("mcopy", "-n", "-i", img+"@@1M", "::/"+name, p).CombinedOutput(); err != nil {
		return nil
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSlotsUpdateAndRollback(t *testing.T) {
	keys := filepath.Join(t.TempDir(), "keys")
	if err := secboot.Generate(keys, "slots test"); err != nil {
		t.Fatal(err)
	}
	a := buildSlots(t, keys, "0.1.0", "", "")
	// The updates need only their payloads and release.
	b := buildSlots(t, keys, "0.2.0", "", "payload")
	c := buildSlots(t, keys, "0.3.0", "rdinit=/fwbuild-test-no-init init=/fwbuild-test-no-init", "payload")
	art := func(o slotsBuild) []byte {
		data, err := os.ReadFile(filepath.Join(o.out, contract.UpdateArtefact))
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	// An artefact for another board, and one signed by another owner,
	// both around b's payloads.
	owner, err := secboot.Load(keys)
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other")
	if err := secboot.Generate(other, "someone else"); err != nil {
		t.Fatal(err)
	}
	stranger, err := secboot.Load(other)
	if err != nil {
		t.Fatal(err)
	}
	esp, _ := os.ReadFile(filepath.Join(b.out, "payload-esp.efi"))
	// The refused ones are small (they are refused before their payload is
	// read), so the ESP keeps room for three payloads and a copy.
	craft := func(board string, o *secboot.Owner) []byte {
		x, err := update.Encode(update.Header{Board: board, Version: b.ver, Created: 1}, map[string][]byte{update.PartESP: []byte("a payload that is never read")}, o.Signer, o.DB)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}

	work := t.TempDir()
	disk := filepath.Join(work, "usb.img")
	if _, err := copyTo(disk, filepath.Join(a.out, "usb.img")); err != nil {
		t.Fatal(err)
	}
	// The factory's step for a unit booting from removable media: its
	// record, signed by the owner, on the ESP.
	prov, err := provision.Provision(context.Background(), provision.Options{Board: a.board, Serial: "SN-SLOTS", Image: disk, Signer: owner.Signer})
	if err != nil {
		t.Fatal(err)
	}
	arts := map[string][]byte{
		"b.fwu": art(b), "c.fwu": art(c), "board.fwu": craft("qemu-q35", owner), "owner.fwu": craft(slotsBoard, stranger),
		"short.fwu": craft(slotsBoard, owner)[:len(craft(slotsBoard, owner))-10],
	}
	m, _, err := boottest.Machine(boottest.Spec{Board: a.board, Comps: a.comps, OutDir: a.out, Path: qemutests.ChainUSB, WorkDir: work})
	if err != nil {
		t.Fatal(err)
	}
	if m.Firmware, err = m.Firmware.Persistent(filepath.Join(work, "vars.fd")); err != nil {
		t.Fatal(err)
	}
	port := forward(t, &m, 443)
	key := qemutests.USBKey(disk)
	key.ReadWrite = true
	m.Disks = []qemutests.Disk{key}

	const r = qemutests.TimeoutReady
	// rfDo runs on the named marker, with a client of this boot's Redfish
	// service (its line comes before the slot lines); what it finds goes
	// into rfErr, checked after the boot.
	var rfErr []string
	hooks := map[string]func(c *rfClient){}
	var client *rfClient
	onMarker := func(mt qemutests.Match) {
		if mt.Marker.Name == "redfish" {
			c, err := newRFClient(mt.Line, port, prov.User, prov.Password)
			if err != nil {
				rfErr = append(rfErr, err.Error())
			}
			client = c
		}
		if h := hooks[mt.Marker.Name]; h != nil && client != nil {
			h(client)
		}
	}
	boot := func(name string, extra ...qemutests.Marker) map[string][]string {
		t.Helper()
		chain, err := qemutests.BootChain(qemutests.ChainUSB)
		if err != nil {
			t.Fatal(err)
		}
		chain[0] = qemutests.Regexp("bds", `BdsDxe: starting Boot[0-9A-F]{4} "([^"]*)"`, qemutests.TimeoutFirmware)
		if !strings.HasPrefix(name, "4") { // boot 4's control domain never comes up
			// ctld prints the version before its ready line.
			ready := chain[len(chain)-1]
			chain = append(chain[:len(chain)-1], qemutests.Regexp("version", contract.PayloadVersionPattern, r), ready)
		} else {
			chain = chain[:3]
		}
		t.Logf("boot %s", name)
		client = nil
		res := runHostWith(t, context.Background(), m, append(chain, extra...), contract.FailurePattern, onMarker)
		for _, e := range rfErr {
			t.Errorf("boot %s: redfish: %s", name, e)
		}
		rfErr = nil
		hooks = map[string]func(c *rfClient){}
		return values(res)
	}
	ctx := context.Background()
	// push installs (or has refused) an artefact through the UpdateService.
	push := func(file, wantState, wantMsg string) func(*rfClient) {
		return func(c *rfClient) {
			st, msg, err := c.push(ctx, file, arts[file])
			t.Logf("redfish push %s: %s: %s", file, st, msg)
			// A refusal is the task's Exception, or a 4xx for one
			// refused before its task ran.
			refused := wantState == rf.TaskException && strings.HasPrefix(st, "HTTP 4")
			if err != nil || (st != wantState && !refused) || !strings.Contains(msg, wantMsg) {
				rfErr = append(rfErr, fmt.Sprintf("push %s: %s %q, %v; want %s with %q", file, st, msg, err, wantState, wantMsg))
			}
		}
	}
	inventory := func(c *rfClient) map[string]rf.SoftwareInventory {
		inv := map[string]rf.SoftwareInventory{}
		for _, sl := range []string{contract.SlotA, contract.SlotB} {
			x, err := c.slot(ctx, sl)
			if err != nil || x.Oem == nil {
				rfErr = append(rfErr, fmt.Sprintf("inventory slot %s: %+v, %v", sl, x, err))
				continue
			}
			t.Logf("inventory slot %s: %+v", sl, x.Oem.Fwbuild)
			inv[sl] = x
		}
		return inv
	}

	// Boot 1: the factory's slot a; refusals leave the ESP as it was.
	before := readESP(t, disk, contract.SlotsFile)
	espA := readESP(t, disk, contract.SlotFile(contract.SlotA))
	// The Redfish line follows the network's; a confirmed slot's line
	// comes before it, a trial's confirmation after it (it waits for the
	// management work). The hooks run on it or after it.
	rfLine := qemutests.Regexp("redfish", contract.RedfishPattern, r)
	hooks["redfish"] = func(c *rfClient) {
		push("board.fwu", rf.TaskException, `artefact is for board "qemu-q35", this is "`+slotsBoard+`"`)(c)
		push("owner.fwu", rf.TaskException, `signature does not verify with the owner's certificate`)(c)
		push("short.fwu", rf.TaskException, `truncated`)(c)
		push("b.fwu", rf.TaskCompleted, "")(c)
	}
	v := boot("1 (0.1.0, install 0.2.0 through Redfish)",
		qemutests.Regexp("a-confirmed", contract.SlotPattern(contract.SlotA, contract.SlotConfirmed), r),
		rfLine,
		qemutests.Regexp("b-pending", contract.SlotPattern(contract.SlotB, contract.SlotPending), r),
	)
	if !bytes.Equal(readESP(t, disk, contract.SlotFile(contract.SlotA)), espA) {
		t.Error("boot 1: slot a changed")
	}
	if v["version"][0] != a.ver || v["a-confirmed"][0] != a.ver || v["b-pending"][0] != b.ver {
		t.Errorf("boot 1: version %v, slot a %v, slot b pending %v; want %s, %s, %s", v["version"], v["a-confirmed"], v["b-pending"], a.ver, a.ver, b.ver)
	}

	espDiag(t, disk)
	// Boot 2: the trial of slot b, confirmed; the inventory says so.
	var inv map[string]rf.SoftwareInventory
	hooks["b-confirmed"] = func(c *rfClient) { inv = inventory(c) }
	v = boot("2 (try 0.2.0)",
		qemutests.Regexp("b-trying", contract.SlotPattern(contract.SlotB, contract.SlotTrying), r),
		rfLine,
		qemutests.Regexp("b-confirmed", contract.SlotPattern(contract.SlotB, contract.SlotConfirmed), r),
	)
	if v["version"][0] != b.ver || v["bds"][0] != "fwbuild slot b" {
		t.Errorf("boot 2: version %v from %q, want %s from \"fwbuild slot b\"", v["version"], v["bds"], b.ver)
	}
	if x := inv[contract.SlotB]; x.Oem == nil || !x.Oem.Fwbuild.Active || !x.Oem.Fwbuild.Running || x.Oem.Fwbuild.Version != b.ver || x.Oem.Fwbuild.State != contract.SlotConfirmed {
		t.Errorf("boot 2: inventory slot b %+v, want %s active, running, confirmed", x.Oem, b.ver)
	}
	if got := readESP(t, disk, contract.FallbackFile); !bytes.Equal(got, esp) {
		t.Errorf("after confirming slot b, %s is not 0.2.0's payload (%d bytes)", contract.FallbackFile, len(got))
	}

	// Boot 3: stays on slot b; 0.3.0 goes into slot a.
	hooks["redfish"] = push("c.fwu", rf.TaskCompleted, "")
	v = boot("3 (0.2.0 again, install 0.3.0 through Redfish)",
		qemutests.Regexp("b-active", contract.SlotPattern(contract.SlotB, contract.SlotConfirmed), r),
		rfLine,
		qemutests.Regexp("a-pending", contract.SlotPattern(contract.SlotA, contract.SlotPending), r),
	)
	if v["version"][0] != b.ver || v["bds"][0] != "fwbuild slot b" || v["a-pending"][0] != c.ver {
		t.Errorf("boot 3: version %v from %q, slot a pending %v", v["version"], v["bds"], v["a-pending"])
	}

	// Boot 4: slot a's trial; dom0 cannot start its init and Xen reboots.
	v = boot("4 (try the broken 0.3.0)",
		qemutests.Regexp("panic", `Kernel panic - not syncing: `, r), // its init is not there: no root either
	)
	if v["bds"][0] != "fwbuild slot a" {
		t.Errorf("boot 4 started %q, want the trial of \"fwbuild slot a\"", v["bds"])
	}

	// Boot 5: back on slot b by itself; the inventory shows slot a failed.
	hooks["redfish"] = func(c *rfClient) { inv = inventory(c) }
	v = boot("5 (back on 0.2.0)",
		qemutests.Regexp("a-failed", contract.SlotPattern(contract.SlotA, contract.SlotFailed)+`: (.*)`, r),
		qemutests.Regexp("b-back", contract.SlotPattern(contract.SlotB, contract.SlotConfirmed), r),
		rfLine,
	)
	if v["version"][0] != b.ver || v["bds"][0] != "fwbuild slot b" || v["a-failed"][0] != c.ver {
		t.Errorf("boot 5: version %v from %q, slot a failed %v", v["version"], v["bds"], v["a-failed"])
	}
	if x, y := inv[contract.SlotA], inv[contract.SlotB]; x.Oem == nil || y.Oem == nil || x.Oem.Fwbuild.State != contract.SlotFailed || x.Oem.Fwbuild.Note == "" || !y.Oem.Fwbuild.Active || y.Oem.Fwbuild.Version != b.ver {
		t.Errorf("boot 5: inventory slot a %+v, slot b %+v; want a failed with its note, b (%s) active", x.Oem, y.Oem, b.ver)
	}
	s, err := contract.ParseSlots(readESP(t, disk, contract.SlotsFile))
	if err != nil || s.Active != contract.SlotB || s.Slots[contract.SlotA].State != contract.SlotFailed || s.Slots[contract.SlotB].Version != b.ver {
		t.Errorf("state file after boot 5: %+v, %v", s, err)
	}
	if bytes.Equal(before, readESP(t, disk, contract.SlotsFile)) {
		t.Error("the state file never changed")
	}
}

func copyTo(dst, src string) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return 0, err
	}
	n, err := out.ReadFrom(in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// espDiag logs the ESP's slot directory and fsck.fat's verdict on it.
func espDiag(t *testing.T, img string) {
	t.Helper()
	out, _ := exec.Command("mdir", "-i", img+"@@1M", "::/EFI/fwbuild").CombinedOutput()
	t.Logf("ESP \\EFI\\fwbuild:\n%s", out)
	part := filepath.Join(t.TempDir(), "esp.img")
	exec.Command("dd", "if="+img, "of="+part, "bs=1M", "skip=1", "count=152", "status=none").Run()
	out, _ = exec.Command("fsck.fat", "-n", "-v", part).CombinedOutput()
	t.Logf("fsck.fat -n:\n%s", out)
}
