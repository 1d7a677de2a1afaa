package bundle

import (
	"bytes"
	"strings"
	"testing"
)

func TestEncode(t *testing.T) {
	archive := []byte("070701 pretend cpio")
	region := append(Encode(archive), bytes.Repeat([]byte{0xff}, 100)...)
	got, err := Decode(region)
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
		{"flipped byte", corrupt(func(b []byte) []byte { b[HeaderSize+3] ^= 1; return b }), "SHA-256 of the archive"},
		{"truncated", region[:HeaderSize+len(archive)-1], "does not fit"},
	} {
		if _, err := Decode(c.b); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want %q", c.name, err, c.want)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Encode([]byte("archive")))
	f.Add(bytes.Repeat([]byte{0xff}, 64))
	f.Fuzz(func(t *testing.T, b []byte) {
		archive, err := Decode(b)
		if err != nil {
			return
		}
		if !bytes.Equal(Encode(archive), b[:HeaderSize+len(archive)]) {
			t.Fatalf("accepted a bundle that does not re-encode to itself")
		}
	})
}
