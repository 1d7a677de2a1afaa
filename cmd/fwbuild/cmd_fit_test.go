package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fwbuild/fwbuild/image"
	"github.com/fwbuild/fwbuild/internal/testdeps"
	"github.com/fwbuild/fwbuild/launcher"
)

const (
	fitShell = "7C04A583-9E3E-4F1C-AD65-E05268D0B4D1"
	fitOVMF2 = "/usr/share/ovmf/OVMF.fd"
	fitOVMF4 = "/usr/share/OVMF/OVMF_CODE_4M.fd"
)

// sharedFirmware unpacks one of the third-party images of
// testdata/firmware (or $FWBUILD_TEST_FIRMWARE) and checks its digest.
func sharedFirmware(t *testing.T, name, sum string) string {
	t.Helper()
	dir := testdeps.FirmwareDir(t)
	if _, err := exec.LookPath("xz"); err != nil {
		t.Fatal("xz not found: apt-get install -y xz-utils")
	}
	out, err := exec.Command("xz", "-dc", filepath.Join(dir, name+".xz")).Output()
	if err != nil {
		t.Fatalf("xz -dc %s.xz: %v (set FWBUILD_TEST_FIRMWARE to its directory)", filepath.Join(dir, name), err)
	}
	if s := sha256.Sum256(out); hex.EncodeToString(s[:]) != sum {
		t.Fatalf("%s: SHA-256 %x, want %s", name, s, sum)
	}
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func needFile(t *testing.T, p, pkg string) string {
	t.Helper()
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%v: apt-get install -y %s", err, pkg)
	}
	return p
}

// TestFit runs `fwbuild fit` in-process: a firmware that fits (text with
// --remove, and JSON), one that does not (still exit 0, the report says
// what to remove), unsupported firmware (exit 1) and usage errors (exit 2).
func TestFit(t *testing.T) {
	ovmf2 := needFile(t, fitOVMF2, "ovmf")
	code, out, errs := runCLI(t, "fit", "--remove", "Shell", "--payload-size", "1MiB", ovmf2)
	for _, w := range []string{"firmware: 2097152 bytes", "removed: Shell " + fitShell, "verdict: fits\n", fmt.Sprintf("the launcher (%d bytes) fits in DXE volume ", launcher.MaxFFSSize),
		"the payload has no place: the firmware region has no erased space"} {
		if code != 0 || !strings.Contains(out, w) {
			t.Errorf("fit --remove Shell OVMF.fd: exit %d, output lacks %q\n%s%s", code, w, out, errs)
		}
	}
	if strings.Contains(out, "  Shell  ") {
		t.Errorf("the removed Shell is still a removal candidate:\n%s", out)
	}

	code, out, errs = runCLI(t, "--json", "fit", needFile(t, fitOVMF4, "ovmf"))
	var r image.FitReport
	if err := json.Unmarshal([]byte(out), &r); code != 0 || err != nil || !r.Fits || !r.Launcher.Fits ||
		r.DXEVolume != "7CB8BDC9-F8EB-4F34-AAEA-3EE4AF6516A1" || len(r.Candidates) == 0 || r.Candidates[0].GUID != fitShell {
		t.Errorf("--json fit OVMF_CODE_4M.fd: exit %d, %v: %+v\n%s", code, err, r, errs)
	}

	galago := sharedFirmware(t, "minplatform-galagopro3-GALAGOPRO3.fd", "ba2170c6c1cfd893b065f4aa9e2b708c7b3089e4a456a72834bb85c323077f96")
	code, out, errs = runCLI(t, "fit", "--launcher-size", "32KiB", galago)
	for _, w := range []string{"verdict: does not fit\n", "volume A881D567-6CB0-4EEE-8435-2E72D33E45B5 is ", "removing Shell (UEFI Shell, 987478 bytes) makes it fit"} {
		if code != 0 || !strings.Contains(out, w) {
			t.Errorf("fit galago: exit %d, output lacks %q\n%s%s", code, w, out, errs)
		}
	}

	vbox := sharedFirmware(t, "vbox-5.0.0-VBoxEFI64.fd", "c3bacb98568a4647e20aa897788e45ce50691010da9609d26eaabbee9d617569")
	script := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		// VirtualBox keeps its DXE volume in an uncompressed EFI_SECTION_COMPRESSION.
		{[]string{"fit", vbox}, 0, "fits in DXE volume"},
		{[]string{"--json", "fit", vbox}, 0, `"fits": true`},
		{[]string{"fit", script}, 1, "no DXE core"},
		{[]string{"fit", filepath.Join(t.TempDir(), "none")}, 1, "no such file or directory"},
		{[]string{"fit"}, 2, "want exactly one FIRMWARE"},
		{[]string{"fit", "--payload-size", "lots", ovmf2}, 2, `"lots" is not a size`},
		{[]string{"fit", "-h"}, 0, "usage: fwbuild fit"},
	} {
		code, out, errs := runCLI(t, c.args...)
		if code != c.code || !strings.Contains(out+errs, c.want) {
			t.Errorf("fwbuild %v: exit %d, want %d; output lacks %q?\n%s%s", c.args, code, c.code, c.want, out, errs)
		}
		if c.code == 1 && out != "" {
			t.Errorf("fwbuild %v failed but printed a report:\n%s", c.args, out)
		}
	}
}
