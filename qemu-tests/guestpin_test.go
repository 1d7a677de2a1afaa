package qemutests_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fwbuild/fwbuild/contract"
	"github.com/fwbuild/fwbuild/contract/bundle"
	"github.com/fwbuild/fwbuild/initramfs"
	"github.com/fwbuild/fwbuild/internal/pipeline"
	qemutests "github.com/fwbuild/fwbuild/qemu-tests"
)

// A guests region rewritten with a whole, self-consistent bundle of other
// content (its header's SHA-256 matches its archive) is refused by ctld:
// the flash payload pins the build's archive on the dom0 command line, and
// the launcher pins the payload.
func TestBootSPIRewrittenGuestsRefused(t *testing.T) {
	bl := buildQ35(t)
	payload, err := os.ReadFile(filepath.Join(bl.out, "payload-flash.efi"))
	if err != nil {
		t.Fatal(err)
	}
	archive, err := os.ReadFile(filepath.Join(bl.out, "guests.cpio"))
	if err != nil {
		t.Fatal(err)
	}
	// Someone else's guest: a valid archive in the region's format.
	other, err := initramfs.Pack([]initramfs.File{
		{Path: contract.GuestConfig("demo"), Data: []byte(contract.AutostartLine(true) + "\nname = \"demo\"\ntype = \"pv\"\nmemory = 64\nkernel = \"/evil\"\n")},
	}, pipeline.DefaultEpoch)
	if err != nil {
		t.Fatal(err)
	}
	region := bundle.Encode(other.Data)
	if _, err := bundle.Decode(region); err != nil {
		t.Fatalf("the rewritten region is not a valid bundle: %v", err)
	}
	if string(other.Data) == string(archive) {
		t.Fatal("the other archive is the build's")
	}
	err = bootChip(t, payload, region)
	var me *qemutests.MarkerError
	if !errors.As(err, &me) || !errors.Is(err, qemutests.ErrAborted) {
		t.Fatalf("boot with a rewritten guests region: err = %v, want a MarkerError with ErrAborted", err)
	}
	if me.Missing.Name != "ctld-ready" || !strings.Contains(err.Error(), "fwbuild-ctld: FAILED guests: guests region at ") || !strings.Contains(err.Error(), "the region was rewritten") {
		t.Fatalf("want ctld to refuse the region against the payload's pin:\n%v", err)
	}
}
