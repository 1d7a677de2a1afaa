package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/contract/bundle"
	"github.com/fwbuild/fwbuild/initramfs"
)

const regionAddr = 0xff010000

// region is a guests region as fwbuild writes it: bundle, then erased flash.
func region(t *testing.T, files []initramfs.File, size int) []byte {
	t.Helper()
	a, err := initramfs.Pack(files, time.Unix(1704067200, 0))
	if err != nil {
		t.Fatal(err)
	}
	b := bundle.Encode(a.Data)
	if len(b) > size {
		t.Fatalf("bundle of %d bytes in a %d-byte region", len(b), size)
	}
	return append(b, bytes.Repeat([]byte{0xff}, size-len(b))...)
}

// pin appends the region's pin (the SHA-256 of its bundle's archive) to a
// fwbuild.guests=<address>,<size> parameter, as fwbuild's payload carries it;
// a region that holds no bundle gets none.
func pin(cmdline string, region []byte) string {
	h, err := bundle.ParseHeader(region, uint64(len(region)))
	if err != nil || strings.Count(cmdline, ",") != 1 {
		return cmdline
	}
	return cmdline + ",sha256:" + hex.EncodeToString(h.SHA256[:])
}

var demoFiles = []initramfs.File{
	{Path: "/etc/fwbuild/guests/demo.cfg", Data: []byte("# fwbuild: autostart=yes\nname = \"demo\"\n")},
	{Path: "/var/lib/fwbuild/guests/demo/vmlinuz", Data: bytes.Repeat([]byte{0x4d, 0x5a}, 3000)},
	{Path: "/var/lib/fwbuild/guests/demo/initrd", Data: []byte("070701...")},
}

// TestBundleMatchesImage: what fwbuild writes (bundle.Encode of an
// initramfs.Pack archive) is what ctld reads, and the guests it unpacks are
// counted on the ready line.
func TestBundleMatchesImage(t *testing.T) {
	a, _, sys, out := world(t)
	sys.phys = map[uint64][]byte{regionAddr: region(t, demoFiles, 0x10000)}
	sys.files["/proc/cmdline"] = "console=hvc0 " + pin("fwbuild.guests=0xff010000,0x10000", sys.phys[regionAddr]) + "\n"
	if err := a.start(context.Background()); err != nil {
		t.Fatalf("start: %v\n%s", err, out)
	}
	for _, f := range demoFiles {
		if got := sys.files[f.Path]; got != string(f.Data) {
			t.Errorf("%s: %d bytes unpacked, want %d", f.Path, len(got), len(f.Data))
		}
		if sys.perms[f.Path] != 0o644 {
			t.Errorf("%s: mode %v", f.Path, sys.perms[f.Path])
		}
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "fwbuild-ctld: guests region at 0xff010000: 3 files, ") || !strings.HasSuffix(lines[0], " ok") {
		t.Errorf("output:\n%s", out)
	}
	if !strings.HasSuffix(lines[len(lines)-1], "guests=1") {
		t.Errorf("ready line %q, want guests=1", lines[len(lines)-1])
	}
}

func TestBundleFailures(t *testing.T) {
	good := region(t, demoFiles, 0x10000)
	flip := func(off int) []byte { b := bytes.Clone(good); b[off] ^= 0x20; return b }
	for _, c := range []struct {
		name    string
		cmdline string
		phys    []byte
		want    string
	}{
		{"erased", "fwbuild.guests=0xff010000,0x10000", bytes.Repeat([]byte{0xff}, 0x10000), "the region is erased"},
		{"corrupt archive", "fwbuild.guests=0xff010000,0x10000", flip(bundle.HeaderSize + 200), "SHA-256 of the archive"},
		{"not a bundle", "fwbuild.guests=0xff010000,0x10000", flip(0), "does not hold fwbuild guests"},
		{"length past region", "fwbuild.guests=0xff010000,0x100", good, "does not fit the 200-byte region"},
		{"bad parameter", "fwbuild.guests=0xff010000", good, `"fwbuild.guests=0xff010000": want fwbuild.guests=<address>,<size>,sha256:<hex>`},
		// A region rewritten with a whole bundle of other content: its own
		// header's hash matches, the payload's pin does not.
		{"rewritten", pin("fwbuild.guests=0xff010000,0x10000", good), region(t, demoFiles[:1], 0x10000), "the region was rewritten"},
		{"bad pin", "fwbuild.guests=0xff010000,0x10000,", good, "the pin must be sha256:"},
		{"no pin", "earlyprintk=xen,keep fwbuild.guests=0xff010000,0x10000", good, "pins no SHA-256"},
		{"unmapped", "fwbuild.guests=0xfe000000,0x10000", good, "read /dev/mem"},
		{"escape", "fwbuild.guests=0xff010000,0x10000", region(t, []initramfs.File{{Path: "/etc/passwd", Data: []byte("x")}}, 0x10000), "file /etc/passwd is outside /etc/fwbuild/guests and /var/lib/fwbuild/guests"},
		{"escape by dots", "fwbuild.guests=0xff010000,0x10000", region(t, []initramfs.File{{Path: "/etc/fwbuild/guests/../../shadow", Data: []byte("x")}}, 0x10000), "file /etc/shadow is outside"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, _, sys, out := world(t)
			sys.files["/proc/cmdline"] = pin(c.cmdline, c.phys)
			sys.phys = map[uint64][]byte{regionAddr: c.phys}
			err := a.start(context.Background())
			if err == nil || !strings.Contains(out.String(), "fwbuild-ctld: FAILED guests: ") || !strings.Contains(out.String(), c.want) {
				t.Fatalf("err %v, output:\n%s\nwant a FAILED guests line with %q", err, out, c.want)
			}
			for p := range sys.perms {
				t.Errorf("wrote %s from a bad region", p)
			}
		})
	}
}

func TestNoGuestsParameter(t *testing.T) {
	a, _, sys, out := world(t)
	if err := a.start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(sys.perms) != 0 || strings.Contains(out.String(), "guests region") {
		t.Errorf("without fwbuild.guests= ctld touched a region:\n%s", out)
	}
}

func TestReadNewcRejectsTruncated(t *testing.T) {
	a, err := initramfs.Pack(demoFiles, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if files, err := readNewc(a.Data); err != nil || len(files) != 11 {
		t.Fatalf("readNewc: %d entries, %v; want 3 files and 8 directories", len(files), err)
	}
	for _, n := range []int{0, 50, 200, len(a.Data) - 10} {
		if _, err := readNewc(a.Data[:n]); err == nil {
			t.Errorf("readNewc of the first %d bytes succeeded", n)
		}
	}
}

func FuzzReadNewc(f *testing.F) {
	a, _ := initramfs.Pack(demoFiles, time.Unix(0, 0))
	f.Add(a.Data)
	f.Fuzz(func(t *testing.T, b []byte) {
		files, err := readNewc(b)
		if err != nil {
			return
		}
		for _, x := range files {
			if !strings.HasPrefix(x.Path, "/") || strings.Contains(x.Path, "/../") {
				t.Fatalf("unclean path %q", x.Path)
			}
		}
	})
}
