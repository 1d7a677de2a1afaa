package image

import (
	"bytes"
	"strings"
	"testing"
)

func TestGuestBundle(t *testing.T) {
	archive := []byte("070701 pretend cpio")
	region := append(GuestBundle(archive), bytes.Repeat([]byte{0xff}, 100)...)
	got, err := ParseGuestBundle(region)
	if err != nil || !bytes.Equal(got, archive) {
		t.Fatalf("round trip: %q, %v", got, err)
	}

	corrupt := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(region)) }
	for _, c := range []struct {
		name string
		b    []byte
		want string
	}{
		{"erased", bytes.Repeat([]byte{0xff}, 4096), "the region is erased"},
		{"short", region[:10], "shorter than its 56-byte header"},
		{"magic", corrupt(func(b []byte) []byte { b[0] = 'X'; return b }), `magic "XWGUESTS"`},
		{"version", corrupt(func(b []byte) []byte { b[8] = 2; return b }), "format version 2"},
		{"length", corrupt(func(b []byte) []byte { b[20] = 1; return b }), "does not fit"},
		{"flipped byte", corrupt(func(b []byte) []byte { b[GuestBundleHeader+3] ^= 1; return b }), "SHA-256 of the archive"},
		{"truncated", region[:GuestBundleHeader+len(archive)-1], "does not fit"},
	} {
		if _, err := ParseGuestBundle(c.b); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want %q", c.name, err, c.want)
		}
	}
}

func FuzzParseGuestBundle(f *testing.F) {
	f.Add(GuestBundle([]byte("archive")))
	f.Add(bytes.Repeat([]byte{0xff}, 64))
	f.Fuzz(func(t *testing.T, b []byte) {
		archive, err := ParseGuestBundle(b)
		if err != nil {
			return
		}
		if !bytes.Equal(GuestBundle(archive), b[:GuestBundleHeader+len(archive)]) {
			t.Fatalf("accepted a bundle that does not re-encode to itself")
		}
	})
}

// A chip's guests region shows up in inspect, checked: a good bundle with
// its size, a damaged one with the reason.
func TestInspectGuestBundle(t *testing.T) {
	spec := synthSpec(t, minimalPE(5000))
	spec.Regions[0].Fill = GuestBundle([]byte("the guests' cpio"))
	chip, err := BuildSPI(spec)
	if err != nil {
		t.Fatal(err)
	}
	n, err := inspectFirmware(chip)
	if err != nil {
		t.Fatal(err)
	}
	g := n.find("guests", "guest bundle")
	if g == nil || g.Offset != 0 || g.Size != GuestBundleHeader+16 || !strings.Contains(g.Note, "SHA-256 ok") {
		t.Fatalf("guests node: %+v", g)
	}
	chip[GuestBundleHeader+2] ^= 1
	if n, err = inspectFirmware(chip); err != nil {
		t.Fatal(err)
	}
	if g := n.find("guests", "guest bundle"); g == nil || !strings.Contains(g.Note, "SHA-256 of the archive") {
		t.Fatalf("damaged bundle node: %+v", g)
	}
}
