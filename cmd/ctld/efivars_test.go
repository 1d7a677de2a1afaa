package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/foxboron/go-uefi/efi/device"
)

// TestLoadOption has an independent parser (go-uefi's, sbctl's library)
// read the boot option ctld writes, and ctld's own parser read it back.
func TestLoadOption(t *testing.T) {
	esp := espGeometry{Number: 1, Start: 2048, Size: 311296, GUID: "0bd2a7e3-b4f0-5c2d-8f4a-6b1f6b4cf1aa"}
	b, err := loadOption("fwbuild slot a", esp, `\EFI\fwbuild\slot-a.efi`)
	if err != nil {
		t.Fatal(err)
	}
	var lo device.EFILoadOption
	if err := lo.Unmarshal(bytes.NewBuffer(b)); err != nil {
		t.Fatal(err)
	}
	if lo.Description != "fwbuild slot a" || lo.Attributes != loadOptionActive || len(lo.FilePath) != 2 {
		t.Fatalf("go-uefi reads %+v", lo)
	}
	hd, ok := lo.FilePath[0].(device.HardDriveMediaDevicePath)
	if !ok || hd.PartitionNumber != 1 || hd.PartitionFormat != 2 || hd.SignatureType != 2 {
		t.Fatalf("HD node %#v", lo.FilePath[0])
	}
	if f := lo.FilePath[1].Format(); f != `File(\EFI\fwbuild\slot-a.efi)` {
		t.Errorf("file node %s", f)
	}
	// The signature is the GPT entry's bytes: EFI_GUID order, the first
	// three fields little endian (go-uefi's Format prints them raw).
	if want := []byte{0xe3, 0xa7, 0xd2, 0x0b, 0xf0, 0xb4, 0x2d, 0x5c, 0x8f, 0x4a, 0x6b, 0x1f, 0x6b, 0x4c, 0xf1, 0xaa}; !bytes.Equal(hd.PartitionSignature[:], want) {
		t.Errorf("HD signature % x, want % x", hd.PartitionSignature, want)
	}
	if !strings.Contains(hd.Format(), "0x800,0x4c000") {
		t.Errorf("HD node %s: want start 0x800, size 0x4c000", hd.Format())
	}
	o, err := parseLoadOption(b)
	if err != nil || o.Desc != "fwbuild slot a" || o.File != `\EFI\fwbuild\slot-a.efi` || o.GUID != esp.GUID {
		t.Errorf("parseLoadOption: %+v %v", o, err)
	}
	for _, bad := range [][]byte{nil, b[:5], b[:12], append(bytes.Clone(b[:6]), 'x', 0)} {
		if _, err := parseLoadOption(bad); err == nil {
			t.Errorf("parseLoadOption(%x) accepted", bad)
		}
	}
}

func TestBootNames(t *testing.T) {
	if n, ok := parseBootName("Boot000A"); !ok || n != 10 || bootName(n) != "Boot000A" {
		t.Errorf("Boot000A: %d %v", n, ok)
	}
	for _, bad := range []string{"Boot000a", "BootOrder", "Boot12345", "Boot", "Driver0001"} {
		if _, ok := parseBootName(bad); ok {
			t.Errorf("%s taken for a boot option", bad)
		}
	}
}
