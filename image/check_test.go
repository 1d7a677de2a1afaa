package image

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCheckFirmware(t *testing.T) {
	s := synthSpec(t, minimalPE(2000))
	chip, err := BuildSPI(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckFirmware(chip, s.Regions, shellGUID); err != nil {
		t.Errorf("built image refused: %v", err)
	}
	if err := CheckFirmware(chip, s.Regions, strings.ToLower(shellGUID)); err != nil {
		t.Errorf("lower-case payload GUID: %v", err)
	}
	for _, tc := range []struct {
		name    string
		chip    []byte
		payload string
		want    string
	}{
		{"random bytes", randomAfter(nil, len(chip), 7), shellGUID, "no firmware volume in region bios (0x10000-0x3ffff)"},
		{"erased chip", bytes.Repeat([]byte{0xFF}, len(chip)), shellGUID, "no firmware volume in region bios (0x10000-0x3ffff)"},
		{"other board's payload slot", chip, "01234567-89AB-CDEF-0123-456789ABCDEF",
			"region bios (0x10000-0x3ffff) holds firmware volumes " + synthGrow + ", " + synthSec + " but no file 01234567-89AB-CDEF-0123-456789ABCDEF"},
		{"firmware region outside the image", chip[:0x20000], "", "region bios (0x10000-0x3ffff) is not inside the 131072-byte image"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckFirmware(tc.chip, s.Regions, tc.payload)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
	// Without a firmware region the whole image must hold a volume.
	if err := CheckFirmware(randomAfter(nil, 0x10000, 8), nil, ""); err == nil || !strings.Contains(err.Error(), "no firmware volume in image (0x0-0xffff)") {
		t.Errorf("no firmware region: %v", err)
	}
}

func TestCheckDisk(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "usb.img")
	if err := WriteUSB(context.Background(), good, USBSpec{Size: 40 << 20, Payload: minimalPE(4000), Name: "check", Epoch: time.Unix(1704067200, 0)}); err != nil {
		t.Fatal(err)
	}
	if err := CheckDisk(good); err != nil {
		t.Errorf("built disk refused: %v", err)
	}
	random := filepath.Join(dir, "random.img")
	os.WriteFile(random, randomAfter(nil, 40<<20, 9), 0o644)
	if err := CheckDisk(random); err == nil || !strings.Contains(err.Error(), "not a GPT disk image") {
		t.Errorf("random disk: %v", err)
	}
	// The GPT intact but the ESP's file system wiped: no BOOTX64.EFI to start.
	b, _ := os.ReadFile(good)
	clear(b[1<<20 : 2<<20])
	wiped := filepath.Join(dir, "wiped.img")
	os.WriteFile(wiped, b, 0o644)
	if err := CheckDisk(wiped); err == nil || !strings.Contains(err.Error(), "EFI System Partition") {
		t.Errorf("wiped ESP: %v", err)
	}
}
