package qemutests_test

// A/B payload slots on the ESP path (issue 20). Three signed builds of one
// board, qemu-q35-slots (qemu-q35 renamed: its demo guest autostarts, so a
// slot is confirmed only after it started): the factory's 0.1.0, an update 0.2.0
// and 0.3.0, whose dom0 kernel cannot start its init (a build broken on
// purpose, only here). One machine, kept across five boots as a server
// keeps its disk and its firmware's variables (the USB key and OVMF's
// variable store written in place):
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
	"regexp"
	"strings"
	"testing"

	"github.com/fwbuild/fwbuild/boardcfg"
	"github.com/fwbuild/fwbuild/contract"
	"github.com/fwbuild/fwbuild/contract/update"
	"github.com/fwbuild/fwbuild/internal/boottest"
	"github.com/fwbuild/fwbuild/internal/pipeline"
	"github.com/fwbuild/fwbuild/internal/testdeps"
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
	yml := fmt.Sprintf("extends: %s\nname: %s\nversion: %s\nhypervisor:\n  dom0:\n    cmdline: %q\n",
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

// putOnESP copies files into the ESP of a disk image with mtools (as an
// operator would copy an update onto the key; the Redfish service is the
// other way), so the file system is written by a FAT implementation other
// than ctld's kernel and fwbuild's go-diskfs.
func putOnESP(t *testing.T, img string, files map[string][]byte) {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("mcopy", "-o", "-i", img+"@@1M", p, "::/"+name).CombinedOutput(); err != nil {
			t.Fatalf("mcopy %s: %v\n%s", name, err, out)
		}
	}
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
	putOnESP(t, disk, map[string][]byte{
		"b.fwu": art(b), "c.fwu": art(c), "board.fwu": craft("qemu-q35", owner), "owner.fwu": craft(slotsBoard, stranger),
		"short.fwu": craft(slotsBoard, owner)[:len(craft(slotsBoard, owner))-10],
	})
	m, _, err := boottest.Machine(boottest.Spec{Board: a.board, Comps: a.comps, OutDir: a.out, Path: qemutests.ChainUSB, WorkDir: work})
	if err != nil {
		t.Fatal(err)
	}
	if m.Firmware, err = m.Firmware.Persistent(filepath.Join(work, "vars.fd")); err != nil {
		t.Fatal(err)
	}
	key := qemutests.USBKey(disk)
	key.ReadWrite = true
	m.Disks = []qemutests.Disk{key}

	const r = qemutests.TimeoutReady
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
		res := runHost(t, m, append(chain, extra...), contract.FailurePattern)
		return values(res)
	}
	esc := regexp.QuoteMeta
	upd := func(file string) string { return "ctld update " + contract.ESPMount + "/" + file + "\n" }

	// Boot 1: the factory's slot a; refusals leave the ESP as it was.
	before := readESP(t, disk, contract.SlotsFile)
	v := boot("1 (0.1.0, install 0.2.0)",
		then(qemutests.Regexp("a-confirmed", contract.SlotPattern(contract.SlotA, contract.SlotConfirmed), r), upd("board.fwu")),
		then(qemutests.Regexp("refused-board", esc(`artefact is for board "qemu-q35", this is "`+slotsBoard+`"`), r), upd("owner.fwu")),
		then(qemutests.Regexp("refused-owner", `signature does not verify with the owner's certificate`, r), upd("short.fwu")),
		then(qemutests.Regexp("refused-short", `truncated`, r), "sync; echo esp-$((6*7))\n"),
		then(qemutests.Substring("synced", "esp-42", r), upd("b.fwu")),
		qemutests.Regexp("b-pending", contract.SlotPattern(contract.SlotB, contract.SlotPending), r),
	)
	if v["version"][0] != a.ver || v["a-confirmed"][0] != a.ver || v["b-pending"][0] != b.ver {
		t.Errorf("boot 1: version %v, slot a %v, slot b pending %v; want %s, %s, %s", v["version"], v["a-confirmed"], v["b-pending"], a.ver, a.ver, b.ver)
	}

	espDiag(t, disk)
	// Boot 2: the trial of slot b, confirmed.
	v = boot("2 (try 0.2.0)",
		qemutests.Regexp("b-trying", contract.SlotPattern(contract.SlotB, contract.SlotTrying), r),
		qemutests.Regexp("b-confirmed", contract.SlotPattern(contract.SlotB, contract.SlotConfirmed), r),
	)
	if v["version"][0] != b.ver || v["bds"][0] != "fwbuild slot b" {
		t.Errorf("boot 2: version %v from %q, want %s from \"fwbuild slot b\"", v["version"], v["bds"], b.ver)
	}
	if got := readESP(t, disk, contract.FallbackFile); !bytes.Equal(got, esp) {
		t.Errorf("after confirming slot b, %s is not 0.2.0's payload (%d bytes)", contract.FallbackFile, len(got))
	}

	// Boot 3: stays on slot b; 0.3.0 goes into slot a.
	v = boot("3 (0.2.0 again, install 0.3.0)",
		then(qemutests.Regexp("b-active", contract.SlotPattern(contract.SlotB, contract.SlotConfirmed), r), upd("c.fwu")),
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

	// Boot 5: back on slot b by itself.
	v = boot("5 (back on 0.2.0)",
		qemutests.Regexp("a-failed", contract.SlotPattern(contract.SlotA, contract.SlotFailed)+`: (.*)`, r),
		qemutests.Regexp("b-back", contract.SlotPattern(contract.SlotB, contract.SlotConfirmed), r),
	)
	if v["version"][0] != b.ver || v["bds"][0] != "fwbuild slot b" || v["a-failed"][0] != c.ver {
		t.Errorf("boot 5: version %v from %q, slot a failed %v", v["version"], v["bds"], v["a-failed"])
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
