package buildrecord

import (
	"reflect"
	"strings"
	"testing"
)

func TestSHA256SUMSRoundTrip(t *testing.T) {
	a, b := strings.Repeat("a", 64), strings.Repeat("b", 64)
	outs := []Output{{Name: "usb.img", SHA256: b, Size: 1}, {Name: "spi.bin", SHA256: a, Size: 2}}
	text := SHA256SUMS(outs)
	if want := a + "  spi.bin\n" + b + "  usb.img\n"; string(text) != want {
		t.Fatalf("SHA256SUMS = %q, want %q", text, want)
	}
	got := ParseSHA256SUMS(append(text, []byte(strings.ToUpper(a)+" *bin.efi\nnot a line\n")...))
	want := []Output{{Name: "spi.bin", SHA256: a, Size: -1}, {Name: "usb.img", SHA256: b, Size: -1}, {Name: "bin.efi", SHA256: a, Size: -1}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseSHA256SUMS = %+v, want %+v", got, want)
	}
}

func TestManifestOutputs(t *testing.T) {
	board, outs, err := ManifestOutputs([]byte(`{"board":"qemu-q35","fwbuild":"x","outputs":[{"name":"spi.bin","size":3,"sha256":"ab"}]}`))
	if err != nil || board != "qemu-q35" || len(outs) != 1 || outs[0] != (Output{Name: "spi.bin", Size: 3, SHA256: "ab"}) {
		t.Errorf("ManifestOutputs = %q, %+v, %v", board, outs, err)
	}
	if _, _, err := ManifestOutputs([]byte("random")); err == nil || !strings.Contains(err.Error(), "not a build manifest") {
		t.Errorf("bad manifest: %v", err)
	}
}
