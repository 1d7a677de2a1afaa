package image

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/boardcfg"
)

// fitRun times one Fit.
func fitRun(t *testing.T, s FitSpec) *FitReport {
	t.Helper()
	start := time.Now()
	r, err := Fit(context.Background(), s)
	if err != nil {
		t.Fatalf("Fit: %v", err)
	}
	t.Logf("Fit took %v", time.Since(start).Round(time.Millisecond))
	return r
}

// checkFitCommon holds for every report: the volumes are the firmware's
// top-level volumes (from their headers) plus nested ones, one of them is
// the DXE volume the launcher goes to, candidates are optional files
// largest first, and the JSON has the documented keys.
func checkFitCommon(t *testing.T, r *FitReport, bios []byte) {
	t.Helper()
	var top [][2]uint64
	for _, v := range r.Volumes {
		if v.TopLevel {
			top = append(top, [2]uint64{v.Offset, v.Length})
		}
	}
	var want [][2]uint64
	for _, h := range topLevelFVs(bios) {
		want = append(want, [2]uint64{uint64(h.Offset), h.Length})
	}
	if !slices.Equal(top, want) {
		t.Errorf("top-level volumes (offset, length) %x, the headers say %x", top, want)
	}
	dxe := slices.IndexFunc(r.Volumes, func(v FitVolume) bool { return v.DXE })
	if dxe < 0 || r.Volumes[dxe].Name != r.DXEVolume || !strings.HasSuffix(r.Launcher.Where, r.DXEVolume) || r.Volumes[dxe].TopLevel && r.Volumes[dxe].Path != "" {
		t.Errorf("DXE volume %q, launcher where %q, volumes %+v", r.DXEVolume, r.Launcher.Where, r.Volumes)
	}
	if len(r.Candidates) == 0 || r.Candidates[0].GUID != shellGUID || r.Candidates[0].Reason != "UEFI Shell" {
		t.Errorf("candidates %+v: want the Shell first", r.Candidates)
	}
	if !sort.SliceIsSorted(r.Candidates, func(i, j int) bool { return r.Candidates[i].Size > r.Candidates[j].Size }) {
		t.Errorf("candidates are not largest first: %+v", r.Candidates)
	}
	for _, c := range r.Candidates {
		if c.Reason == "" || c.Size == 0 {
			t.Errorf("candidate %+v has no reason or size", c)
		}
	}
	if r.Launcher.Size < defaultLauncherSize || len(r.Verdict) == 0 {
		t.Errorf("launcher %+v, verdict %q", r.Launcher, r.Verdict)
	}
	j, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(j, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"volumes", "dxe_volume", "launcher", "removal_candidates", "fits", "verdict", "bios_offset"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, j)
		}
	}
	l := m["launcher"].(map[string]any)
	if l["fits"] != r.Launcher.Fits || l["where"] != r.Launcher.Where {
		t.Errorf("JSON launcher %v, report %+v", l, r.Launcher)
	}
	var back FitReport
	if err := json.Unmarshal(j, &back); err != nil || back.Text() != r.Text() {
		t.Errorf("the JSON does not round-trip (%v):\n%s\nvs\n%s", err, back.Text(), r.Text())
	}
}

// TestFitOVMF4M: the launcher fits Debian's 4 MiB OVMF as it is; with a
// 16 MiB chip layout the payload's region and headroom are reported, and
// an oversized payload makes the verdict "does not fit".
func TestFitOVMF4M(t *testing.T) {
	fw := ovmf4M.read(t)
	regions := []boardcfg.Region{
		{Name: "payload", Start: 0, Size: 0x800000},
		{Name: "bios", Start: 0x1000000 - boardcfg.Size(len(fw)), Size: boardcfg.Size(len(fw)), Firmware: true},
	}
	r := fitRun(t, FitSpec{Firmware: fw, PayloadSize: 5 << 20, ChipSize: 16 << 20, Regions: regions, PayloadRegion: "payload"})
	checkFitCommon(t, r, fw)
	if !r.Fits || !r.Launcher.Fits || r.Launcher.Remove != nil || r.DXEVolume != dxeGUID || r.Launcher.Where != growGUID+"/"+dxeGUID {
		t.Errorf("report %+v: want the launcher to fit DXEFV as it is", r)
	}
	d := r.Volumes[slices.IndexFunc(r.Volumes, func(v FitVolume) bool { return v.DXE })]
	if !d.Compressed || d.FreeAfter >= d.FreeBefore || d.FreeBefore-d.FreeAfter < defaultLauncherSize {
		t.Errorf("DXE volume %+v: the launcher should take its size from the compressed DXEFV", d)
	}
	want := FitPayload{Region: "payload", Start: 0, RegionSize: 0x800000, Size: 5 << 20, Headroom: 3 << 20, Fits: true}
	if r.Payload == nil || *r.Payload != want {
		t.Errorf("payload %+v, want %+v", r.Payload, want)
	}
	reasons := map[string]bool{}
	for _, c := range r.Candidates {
		reasons[c.Name+": "+c.Reason] = true
	}
	for _, w := range []string{"Shell: UEFI Shell", "TlsDxe: network stack", "UiApp: setup UI", "LogoDxe: boot logo"} {
		if !reasons[w] {
			t.Errorf("candidates lack %q: %v", w, reasons)
		}
	}
	text := r.Text()
	for _, w := range []string{"verdict: fits\n", "fits in DXE volume " + growGUID + "/" + dxeGUID,
		"the payload (5242880 bytes) fits in region payload with 3145728 bytes to spare",
		"\n    " + dxeGUID + " length 0xc00000 free ", "  Shell  ", "\n  " + growGUID + " offset 0x0 length 0x348000 free "} {
		if !strings.Contains(text, w) {
			t.Errorf("text lacks %q:\n%s", w, text)
		}
	}
	t.Logf("\n%s", text)

	// The payload check alone needs no new edit: only the payload differs.
	big := *r.Payload
	p, err := fitPayload(FitSpec{PayloadSize: 9 << 20, ChipSize: 16 << 20, Regions: regions, PayloadRegion: "payload"}, fw, 0)
	if err != nil || p.Fits || p.Headroom != -(1<<20) {
		t.Errorf("9 MiB payload in 8 MiB region: %+v, %v (5 MiB gave %+v)", p, err, big)
	}
}

// TestFitOVMF2M: the 2 MiB OVMF cannot take the launcher (fiano's Go
// LZMA encoder compresses FVMAIN_COMPACT worse than edk2's build did), so
// the report says which volume is short and that removing the Shell fixes it.
func TestFitOVMF2M(t *testing.T) {
	fw := ovmf2M.read(t)
	r := fitRun(t, FitSpec{Firmware: fw})
	checkFitCommon(t, r, fw)
	if r.Fits || r.Launcher.Fits || r.Launcher.FullVolume != growGUID || r.Launcher.ShortBy == 0 || !slices.Equal(r.Launcher.Remove, []string{shellGUID}) {
		t.Errorf("launcher %+v: want FVMAIN_COMPACT short and the Shell suggested", r.Launcher)
	}
	d := r.Volumes[slices.IndexFunc(r.Volumes, func(v FitVolume) bool { return v.DXE })]
	if d.FreeAfter <= d.FreeBefore {
		t.Errorf("DXE volume %+v: with the Shell out it should have more room", d)
	}
	text := r.Text()
	for _, w := range []string{"verdict: does not fit\n", "volume " + growGUID + " is ", "removing Shell (UEFI Shell, ", "with the launcher and the removals"} {
		if !strings.Contains(text, w) {
			t.Errorf("text lacks %q:\n%s", w, text)
		}
	}
	t.Logf("\n%s", text)
}

// galagoChip puts galago's BIOS region where it belongs, after a
// 0x220000-byte descriptor+ME area on an 8 MiB chip, with a descriptor
// whose FLREG1 says so (and junk in the ME area, which Fit must skip).
func galagoChip(t *testing.T, bios []byte) []byte {
	chip := bytes.Repeat([]byte{0xFF}, 8<<20)
	copy(chip[0x220000:], bios)
	for i := 0x1000; i < 0x220000; i++ {
		chip[i] = byte(i * 7)
	}
	copy(chip[0x10:], flashSignature)
	binary.LittleEndian.PutUint32(chip[0x14:], 0x04<<16) // FLMAP0: FRBA = 0x40
	binary.LittleEndian.PutUint32(chip[0x40:], 0x0000_0000)
	binary.LittleEndian.PutUint32(chip[0x44:], 0x07FF<<16|0x0220) // FLREG1: BIOS 0x220000..0x7FFFFF
	return chip
}

// TestFitGalagoChip: galago's nearly full DXE volume cannot take the
// 32 KiB launcher; the report finds the BIOS region through the flash
// descriptor, names the DXE volume as short and suggests the Shell, and
// places a payload size in the erased space of the BIOS region.
func TestFitGalagoChip(t *testing.T) {
	bios := galago.read(t)
	chip := galagoChip(t, bios)
	// The built launcher (MaxFFSSize) fits galago's ~24 KiB; a 32 KiB one does not.
	if r := fitRun(t, FitSpec{Firmware: chip}); !r.Launcher.Fits {
		t.Errorf("the launcher (%d bytes) does not fit galago: %+v", r.Launcher.Size, r.Launcher)
	}
	r := fitRun(t, FitSpec{Firmware: chip, PayloadSize: 64 << 10, LauncherSize: 32 << 10})
	checkFitCommon(t, r, bios)
	const galagoDXE = "A881D567-6CB0-4EEE-8435-2E72D33E45B5"
	if !r.Descriptor || r.BIOSOffset != 0x220000 || r.BIOSSize != uint64(len(bios)) || r.DXEVolume != galagoDXE {
		t.Errorf("report %+v: want the BIOS region at 0x220000 and DXE volume %s", r, galagoDXE)
	}
	if r.Fits || r.Launcher.FullVolume != galagoDXE || !slices.Equal(r.Launcher.Remove, []string{shellGUID}) {
		t.Errorf("launcher %+v: want %s short and the Shell suggested", r.Launcher, galagoDXE)
	}
	p := r.Payload
	if p == nil || p.Region != "" || p.RegionSize == 0 || p.RegionSize%eraseBlock != 0 || p.Start < r.BIOSOffset || !p.Fits {
		t.Fatalf("payload %+v: want erased space in the BIOS region", p)
	}
	if gap := chip[p.Start : p.Start+p.RegionSize]; bytes.Count(gap, []byte{0xFF}) != len(gap) {
		t.Errorf("payload place %#x+%#x is not erased", p.Start, p.RegionSize)
	}
	for _, v := range r.Volumes {
		if v.TopLevel && r.BIOSOffset+v.Offset < p.Start+p.RegionSize && p.Start < r.BIOSOffset+v.Offset+v.Length {
			t.Errorf("payload place %#x+%#x overlaps volume %s", p.Start, p.RegionSize, v.Name)
		}
	}
	t.Logf("\n%s", r.Text())
}

// TestFitRefuses: firmware fwbuild cannot edit is an error, not a report.
func TestFitRefuses(t *testing.T) {
	for _, c := range []struct {
		name string
		s    FitSpec
		want []string
	}{
		{"FFS1", FitSpec{Firmware: ffs1Firmware(t, ovmf4M.read(t))}, []string{"unsupported", growGUID + " at 0x0", "FFS1"}},
		{"empty", FitSpec{}, []string{"empty"}},
		{"tiny launcher", FitSpec{Firmware: []byte{1}, LauncherSize: 10}, []string{"launcher size 10 is smaller"}},
		{"region without layout", FitSpec{Firmware: []byte{1}, PayloadRegion: "payload"}, []string{`payload region "payload" given without the chip layout`}},
		{"unknown region", FitSpec{Firmware: []byte{1}, PayloadRegion: "pl", ChipSize: 0x2000,
			Regions: []boardcfg.Region{{Name: "bios", Size: 0x2000, Firmware: true}}}, []string{`payload region "pl" is not in the layout (regions: bios)`}},
		{"no bios region", FitSpec{Firmware: func() []byte {
			b := galagoChip(t, nil)
			binary.LittleEndian.PutUint32(b[0x44:], 0x00000FFF) // FLREG1 unused
			return b
		}()}, []string{"no BIOS region (FLREG1)"}},
		{"truncated chip", FitSpec{Firmware: galagoChip(t, make([]byte, 0x5E0000))[:0x400000]}, []string{"ends past the chip's end 0x400000", "truncated"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, err := Fit(context.Background(), c.s)
			if err == nil {
				t.Fatalf("Fit: %+v, want an error", r)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
		})
	}
}

// TestOptionalReason pins which UI names Fit offers for removal: optional
// features only, never what a board needs to boot or to take input.
func TestOptionalReason(t *testing.T) {
	for name, want := range map[string]string{
		"Shell": "UEFI Shell", "tftpDynamicCommand": "UEFI Shell command", "TlsDxe": "network stack", "Ip4Dxe": "network stack",
		"UefiPxeBcDxe": "network stack", "SnpDxe": "network stack", "HttpBootDxe": "network stack", "IScsiDxe": "network stack",
		"UiApp": "setup UI", "SetupBrowser": "setup UI", "DisplayEngine": "setup UI", "BootManagerMenuApp": "setup UI",
		"LogoDxe": "boot logo", "CsmVideo": "legacy BIOS (CSM)", "LegacyBiosDxe": "legacy BIOS (CSM)",
		"LegacySioDxe": "", "PciBusDxe": "", "Fat": "", "BdsDxe": "", "UsbMassStorageDxe": "", "ShellPkgToken": "",
		"SecurityStubDxe": "", "VariableRuntimeDxe": "", "": "",
	} {
		if got := optionalReason(FileUse{GUID: "00000000-0000-0000-0000-000000000001", Name: name}); got != want {
			t.Errorf("%q: reason %q, want %q", name, got, want)
		}
	}
	if got := optionalReason(FileUse{GUID: shellGUID}); got != "UEFI Shell" {
		t.Errorf("the Shell by GUID, without a UI name: %q", got)
	}
}
