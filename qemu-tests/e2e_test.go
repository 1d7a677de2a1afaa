package qemutests_test

// End-to-end boots of the default board: build qemu-q35 with the real
// pipeline (shared cache: a second run reuses the kernel and stages), then
// boot usb.img on stock OVMF and spi.bin as the machine's flash, and wait for
// every link of the chain down to ctld's ready line.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/boardcfg"
	"github.com/fwbuild/fwbuild/contract/bundle"
	"github.com/fwbuild/fwbuild/flash"
	"github.com/fwbuild/fwbuild/image"
	"github.com/fwbuild/fwbuild/internal/boottest"
	"github.com/fwbuild/fwbuild/internal/pipeline"
	"github.com/fwbuild/fwbuild/internal/testdeps"
	qemutests "github.com/fwbuild/fwbuild/qemu-tests"
)

type built struct {
	out   string
	comps pipeline.Components
	err   error
}

var (
	buildOnce sync.Once
	q35       built
)

// buildQ35 builds qemu-q35 once per test binary.
func buildQ35(t testing.TB) built {
	t.Helper()
	buildOnce.Do(func() {
		root := testdeps.RepoRoot(t)
		b := testdeps.Board(t, "qemu-q35")
		cacheDir := testdeps.CacheDir(t)
		out, err := os.MkdirTemp("", "fwbuild-e2e-")
		if err != nil {
			q35.err = err
			return
		}
		_, q35.err = pipeline.Build(context.Background(), pipeline.Options{
			Board: b, BoardsDir: filepath.Join(root, "boards"), CacheDir: cacheDir, OutDir: out,
		})
		q35.out = out
		if q35.err == nil {
			q35.comps, q35.err = pipeline.Fetch(context.Background(), b, cacheDir, nil)
		}
	})
	if q35.err != nil {
		t.Fatalf("build qemu-q35: %v", q35.err)
	}
	return q35
}

func boot(t *testing.T, path, chip string) (boottest.Report, error) {
	t.Helper()
	bl := buildQ35(t)
	b := testdeps.Board(t, "qemu-q35")
	work := t.TempDir()
	rep, err := boottest.Run(context.Background(), boottest.Spec{Board: b, Comps: bl.comps, OutDir: bl.out, Path: path, WorkDir: work, Chip: chip},
		qemutests.Options{OnMarker: func(m qemutests.Match) { t.Logf("%6.1fs %-10s %s", m.At.Seconds(), m.Marker.Name, m.Line) }})
	return rep, err
}

// Both paths boot to ctld's ready line and on to qemu-q35's demo guest:
// ctld reports it running with the domain id from xl, and the guest itself
// reports the same id, read from xenstore inside the VM (boottest compares
// them). On the SPI path the guest comes from the chip's guests region.
func TestBootUSB(t *testing.T) {
	rep, err := boot(t, qemutests.ChainUSB, "")
	if err != nil {
		t.Fatal(err)
	}
	checkGuest(t, rep)
	t.Logf("usb: ready %v after QEMU start: %v", rep.ReadyAt, rep.Ready)
}

func TestBootSPI(t *testing.T) {
	rep, err := boot(t, qemutests.ChainSPI, "")
	if err != nil {
		t.Fatal(err)
	}
	checkGuest(t, rep)
	b := testdeps.Board(t, "qemu-q35")
	reg, _ := b.Outputs.SPI.GuestsRegion()
	files := 0
	for _, g := range b.Guests {
		files += 3 // xl config, kernel, initrd
		if g.Image != "" {
			files = files - 2 // a guest image's kernel and initrd are on the data disk
		}
	}
	want := fmt.Sprintf("fwbuild-ctld: guests region at %#x: %d files", b.Outputs.SPI.MappedAddress(uint64(reg.Start)), files)
	if !bytes.Contains(readLog(t, rep), []byte(want)) {
		t.Errorf("ctld did not report loading the guests from the chip (log %s)", rep.LogPath)
	}
	t.Logf("spi: ready %v after QEMU start: %v", rep.ReadyAt, rep.Ready)
}

func checkGuest(t *testing.T, rep boottest.Report) {
	t.Helper()
	if n := len(testdeps.Board(t, "qemu-q35").Guests); rep.Ready.Guests != n {
		t.Errorf("ready line counts %d guests, want qemu-q35's %d", rep.Ready.Guests, n)
	}
	seen := map[string][]string{}
	for _, m := range rep.Result.Matches {
		seen[m.Marker.Name] = m.Values
	}
	if up, ok := seen["guest-demo-up"]; !ok || up[0] == "0" {
		t.Errorf("guest-demo-up %v: want the demo guest's own report with a non-zero domid", up)
	}
	// ctld status, typed on the control domain's shell after the guest reported.
	if st, ok := seen["ctld-status-demo"]; !ok || st[0] != "yes" {
		t.Errorf("ctld status row for demo: %v", st)
	}
}

func readLog(t *testing.T, rep boottest.Report) []byte {
	t.Helper()
	b, err := os.ReadFile(rep.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A chip whose payload is damaged must stop the chain at a named marker:
// here the launcher (pinned to the damaged payload) still starts GRUB, but
// the grub.cfg in its memdisk is blanked (every byte a comment), so Xen
// never prints its banner.
func TestBootCorruptedPayloadStops(t *testing.T) {
	bl := buildQ35(t)
	payload, err := os.ReadFile(filepath.Join(bl.out, "payload-flash.efi"))
	if err != nil {
		t.Fatal(err)
	}
	// The memdisk is an uncompressed tar inside the PE: find grub.cfg's header.
	hdr := bytes.Index(payload, append([]byte("boot/grub/grub.cfg"), 0))
	if hdr < 0 {
		t.Fatal("no grub.cfg tar header in the flash payload")
	}
	size, err := strconv.ParseInt(strings.Trim(string(payload[hdr+124:hdr+136]), " \x00"), 8, 64)
	if err != nil || size == 0 {
		t.Fatalf("grub.cfg tar header size field: %q", payload[hdr+124:hdr+136])
	}
	for i := hdr + 512; i < hdr+512+int(size)-1; i++ {
		payload[i] = '#'
	}
	err = bootChip(t, payload, nil)
	var me *qemutests.MarkerError
	if !errors.As(err, &me) {
		t.Fatalf("boot of a corrupted payload: err = %v, want a MarkerError", err)
	}
	if me.Missing.Name != "xen" || len(me.Matched) != 3 {
		t.Fatalf("stopped at %q after %d markers, want at \"xen\" after launcher, bds and grub:\n%v", me.Missing.Name, len(me.Matched), me)
	}
	if me.LogPath == "" || len(me.Tail) == 0 {
		t.Errorf("marker error lacks the log path or the console tail: %+v", me)
	}
}

// bootChip builds qemu-q35's chip around a flash payload and a guests
// region of the test's making, and boots it on the SPI path.
func bootChip(t *testing.T, payload, guests []byte) error {
	t.Helper()
	spec, err := pipeline.SPISpec(context.Background(), testdeps.Board(t, "qemu-q35"), buildQ35(t).comps, payload, guests, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	chip, err := image.BuildSPI(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	chipPath := filepath.Join(t.TempDir(), "spi.bin")
	if err := os.WriteFile(chipPath, chip, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = boot(t, qemutests.ChainSPI, chipPath)
	return err
}

// A chip whose guests region is damaged boots to the control domain, and
// ctld refuses the region (its SHA-256 no longer matches) with a FAILED line
// instead of the ready line; the boot stops there at once.
func TestBootSPICorruptGuestsStops(t *testing.T) {
	bl := buildQ35(t)
	payload, err := os.ReadFile(filepath.Join(bl.out, "payload-flash.efi"))
	if err != nil {
		t.Fatal(err)
	}
	archive, err := os.ReadFile(filepath.Join(bl.out, "guests.cpio"))
	if err != nil {
		t.Fatal(err)
	}
	region := bundle.Encode(archive)
	region[len(region)/2] ^= 0x01 // one bit in the middle of the guest kernel
	err = bootChip(t, payload, region)
	var me *qemutests.MarkerError
	if !errors.As(err, &me) || !errors.Is(err, qemutests.ErrAborted) {
		t.Fatalf("boot with a corrupt guests region: err = %v, want a MarkerError with ErrAborted", err)
	}
	if me.Missing.Name != "ctld-ready" || !strings.Contains(err.Error(), "fwbuild-ctld: FAILED guests: guests region at ") || !strings.Contains(err.Error(), "SHA-256 of the archive") {
		t.Fatalf("want ctld to stop at the ready line on the region's hash:\n%v", err)
	}
}

// BenchmarkBootUSB and BenchmarkBootSPI boot qemu-q35 and, in the same
// run and alternating with it, the stock baseline (Debian's distribution
// kernel as dom0, same Xen, same QEMU; USB only, as its payload does not fit
// the SPI region), and report medians over the b.N boots of each: boot to
// ctld's ready line, the firmware's hand-over (to the launcher or the
// payload) to ready, and ready to the demo guest's own up line, in seconds
// and as ratios to the baseline. Boot times on a shared machine are noisy;
// the ratios, measured side by side, are what to compare:
//
//	go test -run '^$' -bench BootUSB -benchtime 3x ./qemu-tests
func BenchmarkBootUSB(b *testing.B) { benchBoot(b, qemutests.ChainUSB) }

func BenchmarkBootSPI(b *testing.B) { benchBoot(b, qemutests.ChainSPI) }

func benchBoot(b *testing.B, path string) {
	ctx := context.Background()
	root := testdeps.RepoRoot(b)
	cacheDir := testdeps.CacheDir(b)
	boardsDir := filepath.Join(root, "boards")
	type subject struct {
		board *boardcfg.Board
		path  string
		out   string
		comps pipeline.Components
		ready []time.Duration
		guest []time.Duration
		// From the firmware's hand-over (Timeline.HandOver) to ready: the
		// part of the boot that what fwbuild builds decides.
		ownPart []time.Duration
	}
	var subjects []*subject
	for _, name := range []string{"qemu-q35", "qemu-q35-stock"} {
		board := testdeps.Board(b, name)
		p := path
		if board.Outputs.SPI == nil {
			p = qemutests.ChainUSB
		}
		out := b.TempDir()
		if _, err := pipeline.Build(ctx, pipeline.Options{Board: board, BoardsDir: boardsDir, CacheDir: cacheDir, OutDir: out}); err != nil {
			b.Fatalf("build %s: %v", board.Name, err)
		}
		comps, err := pipeline.Fetch(ctx, board, cacheDir, nil)
		if err != nil {
			b.Fatal(err)
		}
		subjects = append(subjects, &subject{board: board, path: p, out: out, comps: comps})
	}
	b.ResetTimer()
	for b.Loop() {
		for _, s := range subjects {
			rep, err := boottest.Run(ctx, boottest.Spec{Board: s.board, Comps: s.comps, OutDir: s.out, Path: s.path, WorkDir: b.TempDir()}, qemutests.Options{})
			if err != nil {
				b.Fatalf("%s: %v", s.board.Name, err)
			}
			up, ok := rep.Timeline.GuestUp["demo"]
			if !ok {
				b.Fatalf("%s: no up line from the demo guest (log %s)", s.board.Name, rep.LogPath)
			}
			if rep.Timeline.HandOver <= 0 {
				b.Fatalf("%s: no line where the firmware hands over (log %s)", s.board.Name, rep.LogPath)
			}
			s.ready = append(s.ready, rep.ReadyAt)
			s.guest = append(s.guest, up-rep.ReadyAt)
			s.ownPart = append(s.ownPart, rep.ReadyAt-rep.Timeline.HandOver)
			var sb strings.Builder
			rep.Timeline.Format(&sb, "  ")
			b.Logf("%s, %s path:\n%s", s.board.Name, s.path, sb.String())
		}
	}
	own, base := subjects[0], subjects[1]
	b.ReportMetric(median(own.ready).Seconds(), "s-to-ready")
	b.ReportMetric(median(base.ready).Seconds(), "s-to-ready-stock")
	b.ReportMetric(median(own.ready).Seconds()/median(base.ready).Seconds(), "ready-ratio")
	b.ReportMetric(median(own.ownPart).Seconds(), "s-handover-to-ready")
	b.ReportMetric(median(base.ownPart).Seconds(), "s-handover-to-ready-stock")
	b.ReportMetric(median(own.ownPart).Seconds()/median(base.ownPart).Seconds(), "handover-ratio")
	b.ReportMetric(median(own.guest).Seconds(), "s-ready-to-guest-up")
	b.ReportMetric(median(base.guest).Seconds(), "s-ready-to-guest-up-stock")
	b.ReportMetric(median(own.guest).Seconds()/median(base.guest).Seconds(), "guest-ratio")
	// The default ns/op would be the time of a pair of boots: not a measure of anything here.
	b.ReportMetric(0, "ns/op")
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// The factory path end to end: flash spi.bin with flashrom into an emulated
// chip of the board's size pre-filled with random data (standing in for
// whatever was on the chip: descriptor, ME and factory data included), then
// boot the chip file as the machine's flash.
func TestFlashedChipBoots(t *testing.T) {
	bl := buildQ35(t)
	b := testdeps.Board(t, "qemu-q35")
	img, err := os.ReadFile(filepath.Join(bl.out, "spi.bin"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	chip := filepath.Join(dir, "chip.bin")
	old := make([]byte, len(img))
	rand.New(rand.NewSource(1)).Read(old)
	if err := os.WriteFile(chip, old, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := flash.WriteSPI(context.Background(), flash.SPIOptions{
		Programmer: fmt.Sprintf("dummy:emulate=VARIABLE_SIZE,size=%d,image=%s", len(img), chip), Image: img, Regions: b.Outputs.SPI.Regions, BackupDir: dir,
	})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(chip)
	// The unit region (the unit's credentials) keeps the chip's bytes
	// through a firmware flash; everything else not preserved is the image.
	want := bytes.Clone(img)
	if u, ok := b.Outputs.SPI.UnitRegion(); ok {
		copy(want[u.Start:u.Start+u.Size], old[u.Start:u.Start+u.Size])
	}
	for _, r := range b.Outputs.SPI.Regions {
		span := func(b []byte) []byte { return b[r.Start : r.Start+r.Size] }
		switch {
		case (r.Preserve || r.Unit) && !bytes.Equal(span(got), span(old)):
			t.Errorf("the preserved %s region was modified", r.Name)
		case !r.Preserve && !bytes.Equal(span(got), span(want)):
			t.Errorf("the %s region differs from the image after flashing", r.Name)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	if backup, _ := os.ReadFile(res.Backup); !bytes.Equal(backup, old) {
		t.Fatal("the backup is not the chip as it was")
	}
	// The factory's next step: the unit's own credentials, into the unit
	// region only (unit_test.go); ctld reads them at boot.
	label := provisionChip(t, fmt.Sprintf("dummy:emulate=VARIABLE_SIZE,size=%d,image=%s", len(img), chip), dir, "SN-FLASHED-1")
	// The chip keeps the factory data below the firmware: it must boot as it is.
	rep, unitLine := bootProvisioned(t, chip)
	if unitLine[0] != label.Serial || unitLine[1] != "1" {
		t.Errorf("ctld unit: serial %s, %s accounts; want %s, 1", unitLine[0], unitLine[1], label.Serial)
	}
	t.Logf("flashed chip: ready %v after QEMU start", rep.ReadyAt)
}
