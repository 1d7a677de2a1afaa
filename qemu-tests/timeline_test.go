package qemutests

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// A USB boot's lines as they arrived (from a real console log of qemu-q35,
// shortened): every link is found, ctld's steps are placed on QEMU's clock
// by the earliest step line, and the guest's links follow its console.
func TestTimelineUSB(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	lines := []Line{
		{ms(400), "BdsDxe: failed to load Boot0001 \"UEFI QEMU DVD-ROM QM00005 \" from PciRoot(0x0)/Pci(0x1F,0x2)/Sata(0x2,0xFFFF,0x0): Not Found"},
		{ms(8000), "BdsDxe: starting Boot0002 \"UEFI QEMU QEMU USB HARDDRIVE 1-0000:00:02.0-1\" from PciRoot(0x0)/Pci(0x2,0x0)/USB(0x0,0x0)"},
		{ms(8010), "Xen 4.17.7 (c/s ) EFI loader"},
		{ms(8100), "(XEN) Xen version 4.17.7 (Debian 4.17.7+13-g2445b30a44-0+deb12u1) (pkg-xen-devel@lists.alioth.debian.org)"},
		{ms(9400), "(XEN) *** Building a PV Dom0 ***"},
		{ms(11300), "(XEN)  Xen  kernel: 64-bit, lsb"},
		{ms(11500), "(XEN) Freed 2048kB init memory"},
		{ms(11600), "[    0.000000] Linux version 6.1.170 (fwbuild@fwbuild) (gcc (Debian 12.2.0-14+deb12u1) 12.2.0)"}, // printk times (Debian's kernel)
		{ms(16700), "Unpacking initramfs..."},
		{ms(19900), "Freeing initrd memory: 7692K"},
		{ms(20000), "Run /init as init process"},
		{ms(21000), "2026/12/01 18:14:21 Welcome to u-root!"},
		{ms(21350), "fwbuild-ctld: step mount took=40ms at=16300ms"},
		{ms(21900), "fwbuild-ctld: step xenstored took=500ms at=16800ms"},
		{ms(22300), "fwbuild-ctld: ready xen=4.17.7 dom0_mem=512 guests=3"},
		{ms(35300), "$ fwbuild-ctld: step guest demo create.xl took=3000ms at=21000ms"},
		{ms(35400), "$ fwbuild-ctld: step guest demo create took=12000ms at=30000ms"},
		{ms(36500), "fwbuild-ctld: guest demo running domid=1 type=pv"},
		{ms(36800), "[guest demo] Linux version 6.1.170 (fwbuild@fwbuild)"},
		{ms(39500), "[guest demo] [    2.512345] Run /init as init process"},
		{ms(39900), "[guest demo] fwbuild-guest demo: up domid=1"},
	}
	tl := NewTimeline(lines)
	got := map[string]Link{}
	var order []string
	for _, l := range tl.Links {
		got[l.Name] = l
		order = append(order, l.Name)
	}
	for _, want := range []struct {
		name        string
		start, took int
		clock       string
	}{
		{"firmware (power-on to BDS handing over)", 0, 8000, "serial"},
		{"Xen's EFI loader (BDS to its banner)", 8000, 10, "serial"},
		{"Xen's EFI loader (loading dom0's kernel and initramfs)", 8010, 90, "serial"},
		{"Xen (banner to building dom0)", 8100, 1300, "serial"},
		{"Xen (building dom0)", 9400, 2100, "serial"},
		{"Xen (dom0 start to its banner)", 11500, 100, "serial"},
		{"dom0 kernel (banner to init)", 11600, 8400, "serial"},
		// Offset 5050ms (the mount line: 21350 - 16300): ctld began at 16260+5050.
		{"init (to ctld's first step)", 20000, 1310, "serial"},
		{"ctld mount", 21310, 40, "dom0"},
		{"ctld xenstored", 21350, 500, "dom0"},
		{"ctld (ready line to the guest helper's first step)", 22300, 35050 - 12000 - 22300 + 0, "dom0"},
		{"ctld guest demo create", 23050, 12000, "dom0"},
		{"ctld guest demo create.xl", 23050, 3000, "dom0"},
		{"guest demo (running line to its kernel's banner)", 36500, 300, "serial"},
		{"guest demo kernel (banner to init)", 36800, 2700, "serial"},
		{"guest demo init (to up)", 39500, 400, "serial"},
	} {
		l, ok := got[want.name]
		if !ok {
			t.Errorf("no link %q; have %q", want.name, order)
			continue
		}
		if l.Start != ms(want.start) || l.Took != ms(want.took) || l.Clock != want.clock {
			t.Errorf("%s: start %v took %v clock %s, want %v %v %s", want.name, l.Start, l.Took, l.Clock, ms(want.start), ms(want.took), want.clock)
		}
	}
	if l := got["dom0 kernel (banner to init)"]; l.Wait != ms(5100) || !strings.HasPrefix(l.Before, "Unpacking initramfs") {
		t.Errorf("dom0 kernel's longest wait %v before %q, want 5.1s before Unpacking initramfs", l.Wait, l.Before)
	}
	if len(got) != len(tl.Links) {
		t.Errorf("duplicate links: %q", order)
	}
	// A step before its phases, though both start together and the phase's
	// line came first.
	if i, j := slices.Index(order, "ctld guest demo create"), slices.Index(order, "ctld guest demo create.xl"); i < 0 || j != i+1 {
		t.Errorf("create at %d, its phase at %d: %q", i, j, order)
	}
	if tl.Ready != ms(22300) || tl.GuestUp["demo"] != ms(39900) || tl.HandOver != ms(8000) {
		t.Errorf("ready %v, demo up %v, hand-over %v", tl.Ready, tl.GuestUp["demo"], tl.HandOver)
	}
	var b strings.Builder
	tl.Format(&b, "  ")
	for _, want := range []string{"  link ", "ctld guest demo create", "boot to ready: 22.30s (14.30s after the firmware's hand-over); ready to guest demo up: 17.60s\n", `5.1s before "Unpacking initramfs..."`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}

// The SPI path's chain: launcher, BDS, GRUB; a boot cut short gives the
// links it reached and no ready time.
func TestTimelineSPIPartial(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	tl := NewTimeline([]Line{
		{ms(7000), "fwbuild-launcher: starting payload at 0xff000000 (8810496 bytes) sha256 39cd7c16459040884d512ad176148be0043ab170b65911c82d42913b4f3cf4e7"},
		{ms(7100), "BdsDxe: starting Boot0000 \"fwbuild qemu-q35\" from VenHw(6F2A1C1E-3B8D-4E55-9A41-66776275696C)"},
		{ms(7150), "Welcome to GRUB!"},
		{ms(8800), "(XEN) Xen version 4.17.7 (Debian 4.17.7+13-g2445b30a44-0+deb12u1)"},
	})
	var names []string
	for _, l := range tl.Links {
		names = append(names, l.Name)
	}
	want := "firmware (power-on to the launcher)|launcher (to BDS starting the payload)|GRUB (BDS to GRUB)|GRUB (loading Xen and dom0's modules)"
	if strings.Join(names, "|") != want || tl.Ready != 0 {
		t.Errorf("links %q ready %v, want %q", strings.Join(names, "|"), tl.Ready, want)
	}
	// The launcher is fwbuild's: the firmware hands over to it, not to BDS's later line.
	if tl.HandOver != ms(7000) {
		t.Errorf("hand-over %v, want the launcher's line at 7s", tl.HandOver)
	}
}
