package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/boardcfg"
	"github.com/fwbuild/fwbuild/contract/bundle"
	"github.com/fwbuild/fwbuild/internal/atomicfile"
	"github.com/fwbuild/fwbuild/internal/testdeps"
)

func q35Options(t testing.TB, out string) Options {
	root := testdeps.RepoRoot(t)
	return Options{
		Board:     testdeps.Board(t, "qemu-q35"),
		BoardsDir: filepath.Join(root, "boards"),
		CacheDir:  testdeps.CacheDir(t),
		OutDir:    out,
	}
}

type fileState struct {
	mtime time.Time
	sum   string
}

func snapshot(t *testing.T, dir string) map[string]fileState {
	t.Helper()
	m := map[string]fileState{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		st, _ := os.Stat(p)
		sum, _, err := atomicfile.HashFile(p)
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = fileState{st.ModTime(), sum}
	}
	return m
}

func TestBuildQemuQ35(t *testing.T) {
	out := t.TempDir()
	res, err := Build(context.Background(), q35Options(t, out))
	if err != nil {
		t.Fatal(err)
	}
	initrd := "initramfs.cpio" + testdeps.Board(t, "qemu-q35").ControlDomain.Compression.Ext()
	want := []string{"usb.img", "spi.bin", "spi.layout", "flash-map.svg", "payload-esp.efi", "payload-flash.efi", initrd, "initramfs.list", "guests.cpio", "manifest.json", "SHA256SUMS"}
	for _, n := range want {
		if _, err := os.Stat(filepath.Join(out, n)); err != nil {
			t.Errorf("artefact %s: %v", n, err)
		}
	}
	if st, _ := os.Stat(filepath.Join(out, "spi.bin")); st == nil || st.Size() != 32<<20 {
		t.Errorf("spi.bin is not 32 MiB: %v", st)
	}
	// Every artefact is listed with the hash of what is on disk.
	cmd := exec.Command("sha256sum", "--strict", "-c", "SHA256SUMS")
	cmd.Dir = out
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("sha256sum -c: %v\n%s", err, b)
	}
	var m Manifest
	data, _ := os.ReadFile(filepath.Join(out, "manifest.json"))
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if m.Board != "qemu-q35" || len(m.Components) != len(testdeps.Board(t, "qemu-q35").Components) || m.Sizes == nil || m.Sizes.Headroom <= 0 {
		t.Errorf("manifest incomplete: board %q, %d components, sizes %+v", m.Board, len(m.Components), m.Sizes)
	}
	for _, a := range m.Outputs {
		sum, n, _ := atomicfile.HashFile(filepath.Join(out, a.Name))
		if sum != a.SHA256 || n != a.Size {
			t.Errorf("manifest: %s: %s/%d, file has %s/%d", a.Name, a.SHA256, a.Size, sum, n)
		}
	}
	t.Logf("payload %d bytes of a %d-byte slot (headroom %d)", res.Sizes.Payload, res.Sizes.Budget, res.Sizes.Headroom)
	checkGuests(t, out)
	checkUnit(t, out)

	// A rebuild with no change redoes nothing and rewrites nothing.
	before := snapshot(t, out)
	res2, err := Build(context.Background(), q35Options(t, out))
	if err != nil {
		t.Fatal(err)
	}
	if len(res2.Written) != 0 {
		t.Errorf("no-op rebuild rewrote %v", res2.Written)
	}
	for _, s := range res2.Stages {
		if !s.Cached && s.Name != "fetch" {
			t.Errorf("no-op rebuild redid stage %s (%v)", s.Name, s.Took)
		}
	}
	after := snapshot(t, out)
	for n, s := range before {
		if after[n] != s {
			t.Errorf("%s changed on a no-op rebuild", n)
		}
	}

	// A board whose payload cannot fit (Debian's 8 MB stock kernel, for dom0
	// and, without a guests region, once more for the guest in the payload)
	// fails with the budget table, and the outputs of the last good build stay.
	stock := writeVariant(t, "stock-kernel", "hypervisor:\n  dom0:\n    kernel:\n      component: linux-image\nguests:\n  - {name: demo, memory: 128MiB, kernel: dom0}\n"+
		"outputs:\n  spi:\n    regions:\n"+
		"      - {name: fd, kind: descriptor, start: 0x0, size: 4KiB, preserve: true}\n"+
		"      - {name: me, kind: me, start: 0x1000, size: 0x3FF000, preserve: true}\n"+
		"      - {name: bios, kind: bios, firmware: true, start: 0x400000, size: 0x1C00000}\n"+
		"      - {name: payload, payload: true, start: 0x1000000, size: 0xC84000}\n")
	o := q35Options(t, out)
	o.Board = stock
	_, err = Build(context.Background(), o)
	var be *BudgetError
	if !errors.As(err, &be) {
		t.Fatalf("stock-kernel build: err = %v, want a BudgetError", err)
	}
	if be.Table.Headroom >= 0 || len(be.Table.Rows) < 3 || !strings.Contains(be.Table.Rows[1].Component, "linux-image") {
		t.Errorf("budget table: %+v", be.Table)
	}
	var b strings.Builder
	be.Table.Write(&b)
	if !strings.Contains(b.String(), "OVERFLOW") {
		t.Errorf("table does not show the overflow:\n%s", b.String())
	}
	// Guests too big for the chip's guests region (a second guest with
	// Debian's 8 MB kernel) fail the same way, naming the region.
	o.Board = writeVariant(t, "big-guest", "guests:\n  - {name: big, memory: 128MiB, kernel: linux-image}\n")
	_, err = Build(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "more than region guests holds") || !strings.Contains(err.Error(), "outputs.spi.regions[4]") {
		t.Errorf("big-guest build: err = %v, want the guests region overflow", err)
	}
	// A guest whose memory cannot hold its unpacked kernel fails at build
	// time, not with "segment kernel too large" from xl create at boot.
	o.Board = writeVariant(t, "tiny-guest", "guests:\n  - {name: demo, memory: 32MiB, kernel: dom0}\n")
	_, err = Build(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "guests: demo (") || !strings.Contains(err.Error(), "memory 32MiB cannot hold its kernel") || !strings.Contains(err.Error(), "give it at least") {
		t.Errorf("tiny-guest build: err = %v, want the guest memory error", err)
	}
	for n, s := range snapshot(t, out) {
		if before[n] != s {
			t.Errorf("%s changed by a failed build", n)
		}
	}
}

// writeVariant writes a profile extending qemu-q35 with extra YAML.
func writeVariant(t testing.TB, name, extra string) *boardcfg.Board {
	t.Helper()
	root := testdeps.RepoRoot(t)
	dir := t.TempDir()
	p := filepath.Join(dir, name+".yaml")
	text := "extends: " + filepath.Join(root, "boards", "qemu-q35.yaml") + "\nname: " + name + "\n" + extra
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := boardcfg.Load(p, filepath.Join(root, "boards"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBuildReadOnlyOutput(t *testing.T) {
	// Root ignores directory permissions, so block the output with a file instead.
	out := filepath.Join(t.TempDir(), "out")
	if err := os.WriteFile(out, []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	o := q35Options(t, out)
	o.Only = "initramfs"
	_, err := Build(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "output") {
		t.Fatalf("err = %v, want an output error", err)
	}
	if b, _ := os.ReadFile(out); string(b) != "not a directory" {
		t.Error("the file in the way was modified")
	}
}

// BenchmarkNoopRebuild measures a rebuild of qemu-q35 with nothing changed
// (target: well under 1 s).
func BenchmarkNoopRebuild(b *testing.B) {
	out := b.TempDir()
	o := q35Options(b, out)
	if _, err := Build(context.Background(), o); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := Build(context.Background(), o); err != nil {
			b.Fatal(err)
		}
	}
}

// checkGuests follows qemu-q35's demo guest into both artefacts: in the chip's
// guests region as a bundle whose archive is guests.cpio, named on the flash
// payload's dom0 command line; and appended to the control domain in the
// ESP payload, which has no such parameter.
func checkGuests(t *testing.T, out string) {
	t.Helper()
	b := testdeps.Board(t, "qemu-q35")
	archive, err := os.ReadFile(filepath.Join(out, "guests.cpio"))
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range b.Guests {
		want := []string{"etc/fwbuild/guests/" + g.Name + ".cfg", "var/lib/fwbuild/guests/" + g.Name + "/vmlinuz", "var/lib/fwbuild/guests/" + g.Name + "/initrd"}
		if g.Image != "" {
			// Its kernel and initrd are the image's, on the data disk.
			if bytes.Contains(archive, []byte(want[1]+"\x00")) {
				t.Errorf("guests.cpio carries a kernel for %s, a guest of image %s", g.Name, g.Image)
			}
			want = want[:1]
		}
		for _, p := range want {
			if !bytes.Contains(archive, []byte(p+"\x00")) {
				t.Errorf("guests.cpio lacks %s", p)
			}
		}
	}
	chip, err := os.ReadFile(filepath.Join(out, "spi.bin"))
	if err != nil {
		t.Fatal(err)
	}
	reg, ok := b.Outputs.SPI.GuestsRegion()
	if !ok {
		t.Fatal("qemu-q35 has no guests region")
	}
	got, err := bundle.Decode(chip[reg.Start : reg.Start+reg.Size])
	if err != nil || !bytes.Equal(got, archive) {
		t.Fatalf("guests region: %v (archive equal: %v)", err, bytes.Equal(got, archive))
	}
	param := fmt.Sprintf("fwbuild.guests=%#x,%#x", b.Outputs.SPI.MappedAddress(uint64(reg.Start)), uint64(reg.Size))
	flash, _ := os.ReadFile(filepath.Join(out, "payload-flash.efi"))
	esp, _ := os.ReadFile(filepath.Join(out, "payload-esp.efi"))
	if !bytes.Contains(flash, []byte(param)) {
		t.Errorf("the flash payload's dom0 command line lacks %s", param)
	}
	if bytes.Contains(flash, archive[:4096]) {
		t.Error("the flash payload carries the guests too")
	}
	if bytes.Contains(esp, []byte("fwbuild.guests=")) || !bytes.Contains(esp, archive) {
		t.Error("the ESP payload does not carry the guests archive (or names a region)")
	}
}

// checkUnit: qemu-q35's unit region is left erased by the build (each unit
// is provisioned later), and both payloads name it with the board.
func checkUnit(t *testing.T, out string) {
	t.Helper()
	b := testdeps.Board(t, "qemu-q35")
	reg, ok := b.Outputs.SPI.UnitRegion()
	if !ok {
		t.Fatal("qemu-q35 has no unit region")
	}
	chip, err := os.ReadFile(filepath.Join(out, "spi.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(chip[reg.Start:reg.Start+reg.Size], bytes.Repeat([]byte{0xff}, int(reg.Size))) {
		t.Error("spi.bin's unit region is not erased: the build must not write any unit's record")
	}
	param := fmt.Sprintf("fwbuild.unit=%#x,%#x,board:qemu-q35", b.Outputs.SPI.MappedAddress(uint64(reg.Start)), uint64(reg.Size))
	for _, f := range []string{"payload-flash.efi", "payload-esp.efi"} {
		p, _ := os.ReadFile(filepath.Join(out, f))
		if !bytes.Contains(p, []byte(param)) {
			t.Errorf("%s's dom0 command line lacks %s", f, param)
		}
	}
}
