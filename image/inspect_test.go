package image

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/fwbuild/fwbuild/contract/bundle"
)

func TestInspectFirmwareOVMF(t *testing.T) {
	code := ovmfCode(t)
	n, err := InspectFirmware(code)
	if err != nil {
		t.Fatal(err)
	}
	main := n.Find("fv", growGUID)
	if main == nil || main.Offset != 0 || main.Size != 0x348000 || main.Free == nil || *main.Free == 0 {
		t.Fatalf("FVMAIN_COMPACT: %+v", main)
	}
	sec := n.Find("fv", "763BED0D-DE9F-48F5-81F1-3E90E1B1A015")
	if sec == nil || sec.Offset != 0x348000 || sec.Size != 0x34000 {
		t.Fatalf("SECFV: %+v", sec)
	}
	dxe := n.Find("fv", dxeGUID)
	if dxe == nil || dxe.Size != 0xC00000 || dxe.Note != "in LZMA section" {
		t.Fatalf("DXEFV: %+v", dxe)
	}
	shell := dxe.Find("file", shellGUID)
	if shell == nil || shell.Name != "Shell" || shell.Type != "EFI_FV_FILETYPE_APPLICATION" || shell.Size < 800_000 {
		t.Fatalf("Shell: %+v", shell)
	}
	if n.Find("file", "Shell") != shell {
		t.Errorf("Find by UI name does not find the Shell")
	}
	// Files are listed in volume order with increasing offsets.
	for i := 1; i < len(dxe.Children); i++ {
		if dxe.Children[i].Offset <= dxe.Children[i-1].Offset {
			t.Fatalf("file offsets not increasing at %d: %+v", i, dxe.Children[i])
		}
	}
	b, err := json.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	var back Node
	if err := json.Unmarshal(b, &back); err != nil || back.Find("file", shellGUID) == nil {
		t.Fatalf("JSON round trip: %v", err)
	}
}

func TestInspectFirmwareErrors(t *testing.T) {
	if _, err := InspectFirmware(nil); err == nil {
		t.Error("empty image accepted")
	}
	if _, err := InspectFirmware(make([]byte, 1<<16)); err == nil {
		t.Error("zeros accepted as firmware")
	}
}

func FuzzInspectFirmware(f *testing.F) {
	f.Add(synthBase(f))
	f.Add(synthBase(f)[:0x200])
	f.Add([]byte("_FVH"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := InspectFirmware(b)
		if err == nil && n.Size != int64(len(b)) {
			t.Fatalf("root size %d for %d bytes", n.Size, len(b))
		}
	})
}

// A chip's guests region shows up in inspect, checked: a good bundle with
// its size, a damaged one with the reason.
func TestInspectGuestBundle(t *testing.T) {
	spec := synthSpec(t, minimalPE(5000))
	spec.Fills["data"] = bundle.Encode([]byte("the guests' cpio"))
	chip, err := BuildSPI(spec)
	if err != nil {
		t.Fatal(err)
	}
	n, err := InspectFirmware(chip)
	if err != nil {
		t.Fatal(err)
	}
	g := n.Find("guests", "guest bundle")
	if g == nil || g.Offset != 0 || g.Size != bundle.HeaderSize+16 || !strings.Contains(g.Note, "SHA-256 ok") {
		t.Fatalf("guests node: %+v", g)
	}
	chip[bundle.HeaderSize+2] ^= 1
	if n, err = InspectFirmware(chip); err != nil {
		t.Fatal(err)
	}
	if g := n.Find("guests", "guest bundle"); g == nil || !strings.Contains(g.Note, "SHA-256 of the archive") {
		t.Fatalf("damaged bundle node: %+v", g)
	}
}
