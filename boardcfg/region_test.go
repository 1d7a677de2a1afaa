package boardcfg

import (
	"reflect"
	"strings"
	"testing"
)

func TestCheckRegionName(t *testing.T) {
	for _, ok := range []string{"bios", "vpd", "SI_BIOS", "fw-1.2", strings.Repeat("a", 64)} {
		if err := CheckRegionName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	// Everything a later stage refused: flashrom's layout syntax (space,
	// ':', control characters), image's 64-byte bound and ASCII-only set.
	for _, bad := range []struct{ name, want string }{
		{"", "empty region name"},
		{strings.Repeat("a", 65), "is 65 bytes long: at most 64"},
		{"my data", `has ' '`},
		{"a:b", `has ':'`},
		{"a\tb", `has '\t'`},
		{"a\x7fb", `has '\x7f'`},
		{"bíos", `has 'í'`},
		{"a/b", `has '/'`},
		{"a,b", `has ','`},
		{"-i", "starts with '-'"},
	} {
		if err := CheckRegionName(bad.name); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: error %v, want %q", bad.name, err, bad.want)
		}
	}
}

func TestFlashromLayout(t *testing.T) {
	rs := []Region{
		{Name: "bios", Start: 0x10000, Size: 0xFF0000, Firmware: true},
		{Name: "vpd", Start: 0, Size: 0x10000, Preserve: true},
	}
	got := FlashromLayout(rs)
	want := "00000000:0000ffff vpd\n00010000:00ffffff bios\n"
	if got != want {
		t.Fatalf("layout:\n%s\nwant:\n%s", got, want)
	}
	if rs[0].Name != "bios" {
		t.Errorf("FlashromLayout reordered its argument: %+v", rs)
	}
	back, err := parseFlashromLayout(got)
	if err != nil {
		t.Fatal(err)
	}
	wantBack := []Region{{Name: "vpd", Start: 0, Size: 0x10000}, {Name: "bios", Start: 0x10000, Size: 0xFF0000}}
	if !reflect.DeepEqual(back, wantBack) {
		t.Fatalf("parsed back %+v", back)
	}
}

func TestParseFlashromLayout(t *testing.T) {
	// What flashrom's own layout files look like: 0x prefixes, CRLF, blank lines.
	rs, err := parseFlashromLayout("0x00000000:0x00083fff vars\r\n\n0x84000:0x7fffff bios\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := []Region{{Name: "vars", Size: 0x84000}, {Name: "bios", Start: 0x84000, Size: 0x77C000}}; !reflect.DeepEqual(rs, want) {
		t.Fatalf("got %+v", rs)
	}
	for _, bad := range []struct{ text, want string }{
		{"0:fff", "want \"start:end name\""},
		{"0-fff bios", "no ':'"},
		{"0:xyz bios", "hex"},
		{"1000:fff bios", "below start"},
		{"0:fff a b", "region name \"a b\""},
		{"0:fff " + strings.Repeat("a", 65), "at most 64"},
		{"0:fff a\n1000:1fff a", "already defined on line 1"},
		{"0:1fff a\n1000:2fff b", "overlap"},
		{"0:ffff bios\n0:fff in\n800:17ff part", `regions "in" and "part" overlap`},
		{"0:ffff bios\n1000:1fff in\nf000:10fff part", `regions "bios" and "part" overlap`},
		{"# comment\n0:fff a", "no comments"},
		{"0:ffffffffffffffff all", "whole 64-bit"},
		{"-1:fff a", "hex"},
	} {
		if _, err := parseFlashromLayout(bad.text); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: error %v, want %q", bad.text, err, bad.want)
		}
	}
}

// A nested layout (guests and payload inside the BIOS region) renders with
// the outer region first and parses back.
func TestFlashromLayoutNested(t *testing.T) {
	rs := []Region{
		{Name: "fd", Start: 0, Size: 0x1000},
		{Name: "guests", Start: 0x400000, Size: 0x3F0000},
		{Name: "payload", Start: 0x1000000, Size: 0xC84000},
		{Name: "bios", Start: 0x400000, Size: 0x1C00000},
	}
	got := FlashromLayout(rs)
	want := "00000000:00000fff fd\n00400000:01ffffff bios\n00400000:007effff guests\n01000000:01c83fff payload\n"
	if got != want {
		t.Fatalf("layout:\n%s\nwant:\n%s", got, want)
	}
	back, err := parseFlashromLayout(got)
	if err != nil {
		t.Fatal(err)
	}
	if FlashromLayout(back) != want {
		t.Fatalf("parsed back %+v", back)
	}
}

func FuzzParseFlashromLayout(f *testing.F) {
	f.Add("00000000:01ffffff bios\n00400000:007effff guests\n01000000:01c83fff payload\n")
	f.Add("00000000:0000ffff vpd\n00010000:00ffffff bios\n")
	f.Add("0x0:0x83fff vars\r\n0x84000:0x7fffff bios")
	f.Add("0:0 a\n1:1 b\n")
	f.Add("ffffffffffffffff:ffffffffffffffff top")
	f.Fuzz(func(t *testing.T, text string) {
		rs, err := parseFlashromLayout(text)
		if err != nil {
			return
		}
		// Whatever parses renders to a canonical file that parses to the
		// same regions, sorted, each disjoint from or inside the others.
		again, err := parseFlashromLayout(FlashromLayout(rs))
		if err != nil {
			t.Fatalf("canonical form of %q does not parse: %v", text, err)
		}
		if !reflect.DeepEqual(rs, again) {
			t.Fatalf("round trip changed %+v to %+v", rs, again)
		}
		for i, r := range rs {
			if r.Size == 0 || r.End() < r.Start || CheckRegionName(r.Name) != nil {
				t.Fatalf("bad region %+v", r)
			}
			for _, o := range rs[:i] {
				if r.Start <= o.End() && o.Start <= r.End() && !o.Contains(r) {
					t.Fatalf("regions %q and %q overlap partly: %+v", o.Name, r.Name, rs)
				}
			}
		}
	})
}
