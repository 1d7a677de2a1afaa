package flash

import (
	"reflect"
	"strings"
	"testing"

	"github.com/fwbuild/fwbuild/boardcfg"
)

// Outputs of Debian's flashrom 1.3.0 (captured on the dev machine with the dummy programmer).
const (
	outFlashSize = `flashrom unknown on Linux 6.18.44-fc-v657 (x86_64)
flashrom is free software, get the source code at https://flashrom.org

Using clock_gettime for delay loops (clk_id: 1, resolution: 1ns).
Found Winbond flash chip "W25Q128.V" (16384 kB, SPI) on dummy.
===
This flash part has status UNTESTED for operations: WP
Thanks for your help!
16777216
`
	outMultiple = `Found Macronix flash chip "MX25L6405" (8192 kB, SPI) on dummy.
Found Macronix flash chip "MX25L6405D" (8192 kB, SPI) on dummy.
Multiple flash chip definitions match the detected chip(s): "MX25L6405", "MX25L6405D", "MX25L6406E/MX25L6408E", "MX25L6436E/MX25L6445E/MX25L6465E/MX25L6473E/MX25L6473F"
Please specify which chip definition to use with the -c <chipname> option.
`
	outProtected = `Block protection could not be disabled!
Reading old flash chip contents... done.
Erasing and writing flash chip... At least part of the erase range is write protected!
Failed to erase flash!
spi_write_cmd failed during command execution at address 0x10000
At least part of the erase range is write protected!
Failed to erase flash!
No usable erase functions left.
FAILED!
Uh oh. Erase/write failed. Checking if anything has changed.
Reading current flash chip contents... done.
Good, writing to the flash chip apparently didn't do anything.
`
	outVerify = `Verifying flash... FAILED at 0x00000000! Expected=0x09, Found=0x16, failed byte count from 0x00000000-0x00ffffff: 0xff0057
`
	outNoChip = "No EEPROM/flash device found.\r\nNote: flashrom can never write if the flash chip isn't found automatically.\r\n"
	outSize   = "Error: Image size (100 B) doesn't match the expected size (16777216 B)!\n"
)

func TestParseFlashrom(t *testing.T) {
	for _, tc := range []struct {
		name    string
		out     string
		kind    problem
		lines   int
		changed int
	}{
		{"flash size", outFlashSize, probNone, 0, 0},
		{"multiple", outMultiple, probMultipleChips, 2, 0},
		{"protected", outProtected, probProtected, 8, -1},
		{"verify", outVerify, probVerify, 1, 0},
		{"no chip", outNoChip, probNoChip, 2, 0},
		{"size", outSize, probSize, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := parseFlashrom(tc.out)
			if d.Kind != tc.kind || len(d.Lines) != tc.lines || d.Changed != tc.changed {
				t.Errorf("kind %v lines %d %q changed %d", d.Kind, len(d.Lines), d.Lines, d.Changed)
			}
		})
	}
	d := parseFlashrom(outFlashSize)
	if d.Size != 16777216 || !reflect.DeepEqual(d.Found, []string{"W25Q128.V"}) {
		t.Errorf("size %d found %q", d.Size, d.Found)
	}
	d = parseFlashrom(outMultiple)
	want := []string{"MX25L6405", "MX25L6405D", "MX25L6406E/MX25L6408E", "MX25L6436E/MX25L6445E/MX25L6465E/MX25L6473E/MX25L6473F"}
	if !reflect.DeepEqual(d.Candidates, want) || d.Size != -1 {
		t.Errorf("candidates %q size %d", d.Candidates, d.Size)
	}
	if h := d.hint("p"); !strings.Contains(h, `--chip set to one of: "MX25L6405", `) {
		t.Errorf("hint %q", h)
	}
}

func TestShellJoin(t *testing.T) {
	got := shellJoin([]string{"flashrom", "-p", "dummy:emulate=W25Q128FV,image=/a b/c.bin", "-c", "it's", "-w", "/x/y.bin"})
	want := `flashrom -p 'dummy:emulate=W25Q128FV,image=/a b/c.bin' -c 'it'\''s' -w /x/y.bin`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestValidateRegions(t *testing.T) {
	for _, tc := range []struct {
		rs   []boardcfg.Region
		want string
	}{
		{nil, "no layout regions"},
		{[]boardcfg.Region{{Name: "a", Start: 0, Size: 0}}, "size 0"},
		{[]boardcfg.Region{{Name: "a", Start: 0xff0, Size: 0x20}}, "does not fit in the 4096-byte"},
		{[]boardcfg.Region{{Name: "a", Start: 0x1000, Size: 1}}, "does not fit"},
		{[]boardcfg.Region{{Name: "a", Start: 1, Size: ^boardcfg.Size(0)}}, "does not fit"},
		{[]boardcfg.Region{{Name: "b", Start: 0x800, Size: 0x100}, {Name: "a", Start: 0, Size: 0x801}}, `regions "a" (0x0-0x800) and "b" (0x800-0x8ff) overlap`},
		// The profile's name rule: what passes `fwbuild check` passes here, and no more.
		{[]boardcfg.Region{{Name: "a b", Size: 1}}, `region name "a b" has ' '`},
		{[]boardcfg.Region{{Name: strings.Repeat("a", 65), Size: 1}}, "at most 64"},
		{[]boardcfg.Region{{Name: "bíos", Size: 1}}, "has 'í'"},
	} {
		if _, err := validateRegions(tc.rs, 4096); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want %q", tc.rs, err, tc.want)
		}
	}
	rs, err := validateRegions([]boardcfg.Region{{Name: "b", Start: 0x800, Size: 0x800}, {Name: "a", Size: 0x800}}, 4096)
	if err != nil || rs[0].Name != "a" {
		t.Errorf("%+v %v", rs, err)
	}
}

func TestSelectRegions(t *testing.T) {
	rs := []boardcfg.Region{{Name: "fd", Size: 1, Preserve: true}, {Name: "me", Start: 1, Size: 1, Preserve: true}, {Name: "bios", Start: 2, Size: 1}}
	names := func(rs []boardcfg.Region) (n []string) {
		for _, r := range rs {
			n = append(n, r.Name)
		}
		return n
	}
	if got, _ := selectRegions(rs, nil); !reflect.DeepEqual(names(got), []string{"bios"}) {
		t.Errorf("default %v", names(got))
	}
	if got, _ := selectRegions(rs, []string{"bios", "me", "bios"}); !reflect.DeepEqual(names(got), []string{"me", "bios"}) {
		t.Errorf("explicit %v", names(got))
	}
	if _, err := selectRegions(rs[:2], nil); err == nil || !strings.Contains(err.Error(), "every layout region is marked preserve (fd, me)") {
		t.Errorf("all preserved: %v", err)
	}
}

func TestChangedBlocks(t *testing.T) {
	old := make([]byte, 0x4000)
	img := make([]byte, 0x4000)
	img[0x17ff] = 1 // just below the region: not counted
	img[0x1800] = 1 // first byte of the region, in the partial first block
	img[0x2fff] = 1 // adjacent block: merged with the first
	img[0x37ff] = 1 // last byte of the region, partial last block
	img[0x3800] = 1 // after the region
	got := changedBlocks(old, img, []boardcfg.Region{{Name: "r", Start: 0x1800, Size: 0x2000}}, 0x1000)
	want := []RegionChange{{Region: "r", Start: 0x1800, Size: 0x2000, BlockSize: 0x1000, Blocks: 3, ChangedBlocks: 3,
		Ranges: []BlockRange{{0x1800, 0x37ff}}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v", got)
	}
	img[0x2fff] = 0
	got = changedBlocks(old, img, []boardcfg.Region{{Name: "r", Start: 0x1800, Size: 0x2000}}, 0x1000)
	if r := got[0].Ranges; got[0].ChangedBlocks != 2 || len(r) != 2 || r[0] != (BlockRange{0x1800, 0x1fff}) || r[1] != (BlockRange{0x3000, 0x37ff}) {
		t.Errorf("got %+v", got)
	}
}

func TestCompareReadback(t *testing.T) {
	all := []boardcfg.Region{{Name: "a", Start: 0, Size: 4}, {Name: "w", Start: 4, Size: 4}, {Name: "c", Start: 12, Size: 4, Preserve: true}}
	old := []byte("oooooooooooooooo")
	img := []byte("iiiiiiiiiiiiiiii")
	rb := []byte("ooooiiiioooooooo")
	h, p := compareReadback(rb, img, old, all, all[1:2])
	if len(p) != 0 || h["w"] != sha([]byte("iiii")) {
		t.Errorf("clean: %v %v", h, p)
	}
	rb[9] = 'x'  // gap between regions
	rb[13] = 'x' // preserved region
	rb[5] = 'x'  // written region
	_, p = compareReadback(rb, img, old, all, all[1:2])
	if len(p) != 2 || !strings.Contains(p[0], `region "w"`) || !strings.Contains(p[1], "0x8-0xf (outside any region)") {
		t.Errorf("problems %q", p)
	}
}

func TestUnescapeOctal(t *testing.T) {
	for in, want := range map[string]string{
		`/media/my\040key`: "/media/my key",
		`a\134b`:           `a\b`,
		`a\011\012`:        "a\t\n",
		`trail\04`:         `trail\04`,
		`big\777`:          `big\777`,
		`plain`:            "plain",
	} {
		if got := unescapeOctal(in); got != want {
			t.Errorf("%q: got %q want %q", in, got, want)
		}
	}
}

func TestParseMountinfo(t *testing.T) {
	ms, err := parseMountinfo(strings.NewReader(
		"27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n" +
			"36 35 98:0 /mnt1 /mnt\\0402 rw,noatime master:1 shared:2 - ext3 /dev/root rw,errors=continue\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []mountEntry{{"254:0", "/", "ext4", "/dev/vda"}, {"98:0", "/mnt 2", "ext3", "/dev/root"}}
	if !reflect.DeepEqual(ms, want) {
		t.Errorf("got %+v", ms)
	}
	if _, err := parseMountinfo(strings.NewReader("1 2 3:4 / /x rw\n")); err == nil {
		t.Error("line without separator accepted")
	}
}

func FuzzParseFlashrom(f *testing.F) {
	for _, s := range []string{outFlashSize, outMultiple, outProtected, outVerify, outNoChip, outSize, "", "\n\n123\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, out string) {
		d := parseFlashrom(out)
		if len(d.Lines) > maxDiagLines || d.Size < -1 {
			t.Fatalf("lines %d size %d", len(d.Lines), d.Size)
		}
		for _, l := range d.Lines {
			if l == "" || !strings.Contains(out, l) {
				t.Fatalf("line %q not in input", l)
			}
		}
		if d.Kind == probNone && len(d.Lines) > 0 {
			t.Fatalf("relevant lines %q but no problem", d.Lines)
		}
		if len(d.Candidates) > 0 && d.Kind != probMultipleChips && d.Kind != probProtected {
			t.Fatalf("candidates %q with kind %v", d.Candidates, d.Kind)
		}
		_ = d.hint("p")
	})
}

func FuzzParseMountinfo(f *testing.F) {
	f.Add("27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n36 35 98:0 /mnt1 /mnt\\0402 rw master:1 - ext3 /dev/root rw\n")
	f.Add("1 2 3:4 / /x rw - a\n")
	f.Fuzz(func(t *testing.T, in string) {
		ms, err := parseMountinfo(strings.NewReader(in))
		if err != nil {
			return
		}
		if len(ms) > strings.Count(in, "\n")+1 {
			t.Fatalf("%d entries from %d lines", len(ms), strings.Count(in, "\n")+1)
		}
		for _, m := range ms {
			if len(m.MountPoint) > len(in) || m.Dev == "" || m.FSType == "" {
				t.Fatalf("entry %+v", m)
			}
		}
	})
}
