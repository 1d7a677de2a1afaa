package image

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/linuxboot/fiano/pkg/uefi"
)

// ifdLayout8 is an 8 MiB chip laid out like a small Skylake server board:
// descriptor, GbE, EC, ME and a BIOS region holding OVMF at its top.
var ifdLayout8 = []DescriptorRegion{
	{Kind: "descriptor", Start: 0, Size: 0x1000},
	{Kind: "gbe", Start: 0x1000, Size: 0x2000},
	{Kind: "ec", Start: 0x3000, Size: 0x20000},
	{Kind: "me", Start: 0x23000, Size: 0x2DD000},
	{Kind: "bios", Start: 0x300000, Size: 0x500000},
}

// ifdWithIndex returns regions sorted by Start with Index filled, as
// ReadDescriptor returns them.
func ifdWithIndex(t *testing.T, regions []DescriptorRegion) []DescriptorRegion {
	t.Helper()
	out := append([]DescriptorRegion(nil), regions...)
	for i := range out {
		idx, ok := ifdIndex(out[i].Kind)
		if !ok {
			t.Fatalf("unknown kind %q", out[i].Kind)
		}
		out[i].Index = idx
		out[i].Kind = ifdKind(idx)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].Start < out[j-1].Start; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// ifdChip builds a whole chip image: the descriptor, random bytes in the
// ME and EC regions, erased GbE, and base at the top of the BIOS region
// (where a reset vector must be), the rest 0xFF.
func ifdChip(t *testing.T, chipSize uint64, regions []DescriptorRegion, base []byte) []byte {
	t.Helper()
	d, err := WriteDescriptor(chipSize, regions)
	if err != nil {
		t.Fatal(err)
	}
	chip := bytes.Repeat([]byte{0xFF}, int(chipSize))
	copy(chip, d)
	rng := rand.New(rand.NewSource(1)) // fixed seed: the same chip every run
	for _, r := range regions {
		switch r.Kind {
		case "me":
			me := chip[r.Start:r.end()]
			rng.Read(me)
			// UEFITool (UEFIExtract A62) gives up on the whole image, with
			// status 11 and no report, when a non-empty ME region holds no
			// "$MN2"/"$MAN" version marker; real ME firmware always has
			// one (in its manifest). Put one in the random bytes.
			copy(me[0x1000:], "$MN2")
			binary.LittleEndian.PutUint32(me[0x1004:], 0)
			for i, v := range []uint16{11, 8, 50, 3425} {
				binary.LittleEndian.PutUint16(me[0x1008+2*i:], v)
			}
		case "ec":
			rng.Read(chip[r.Start:r.end()])
		case "bios":
			if uint64(len(base)) > r.Size {
				t.Fatalf("base firmware %#x bytes does not fit the %#x-byte BIOS region", len(base), r.Size)
			}
			copy(chip[r.end()-uint64(len(base)):], base)
		}
	}
	return chip
}

func TestDescriptorRoundTrip(t *testing.T) {
	cases := []struct {
		name     string
		chipSize uint64
		regions  []DescriptorRegion
		d1, d2   uint32   // FLCOMP density codes
		flmstr   []uint32 // FLMSTR1-5, if checked exactly
	}{
		// ifdtool --lock's values: the classic 0x00c00d00 ME master, the
		// host also reading EC.
		{"8MiB", 8 << 20, ifdLayout8, 4, 0xF, []uint32{0x00A10B00, 0x00C00D00, 0x00800900, 0, 0x10010100}},
		{"minimal-512KiB", 512 << 10, []DescriptorRegion{
			{Kind: "bios", Start: 0x1000, Size: 0x7F000},
			{Kind: "descriptor", Size: 0x1000},
		}, 0, 0xF, []uint32{0x00200300, 0x00400500, 0, 0, 0}},
		{"32MiB-many", 32 << 20, []DescriptorRegion{
			{Kind: "descriptor", Size: 0x1000},
			{Kind: "pd", Start: 0x1000, Size: 0xF000},
			{Kind: "me", Start: 0x10000, Size: 0x7F0000},
			{Kind: "ptt", Start: 0x800000, Size: 0x10000},
			{Kind: "region13", Start: 0x810000, Size: 0x10000},
			{Kind: "bios", Index: 1, Start: 0x1000000, Size: 0x1000000},
		}, 6, 0xF, nil},
		{"24MiB-two-chips", 24 << 20, []DescriptorRegion{
			{Kind: "descriptor", Size: 0x1000},
			{Kind: "me", Start: 0x1000, Size: 0x7FF000},
			{Kind: "bios", Start: 0x800000, Size: 0x1000000},
		}, 5, 4, nil},
		{"128MiB-two-chips", 128 << 20, []DescriptorRegion{
			{Kind: "descriptor", Size: 0x1000},
			{Kind: "bios", Start: 0x1000000, Size: 0x7000000},
		}, 7, 7, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, err := WriteDescriptor(c.chipSize, c.regions)
			if err != nil {
				t.Fatal(err)
			}
			if len(d) != 0x1000 {
				t.Fatalf("descriptor is %#x bytes, want 0x1000", len(d))
			}
			again, _ := WriteDescriptor(c.chipSize, c.regions)
			if !bytes.Equal(d, again) {
				t.Fatal("two WriteDescriptor calls gave different bytes")
			}
			le := binary.LittleEndian
			if !bytes.Equal(d[:16], bytes.Repeat([]byte{0xFF}, 16)) || le.Uint32(d[0x10:]) != 0x0FF0A55A {
				t.Fatalf("header: % x", d[:0x14])
			}
			// Decode from the map, not from the writer's constants.
			flmap0, flmap1 := le.Uint32(d[0x14:]), le.Uint32(d[0x18:])
			fcba, frba, fmba := int(flmap0&0xFF)<<4, int(flmap0>>16&0xFF)<<4, int(flmap1&0xFF)<<4
			flcomp := le.Uint32(d[fcba:])
			if got1, got2 := flcomp&0xF, flcomp>>4&0xF; got1 != c.d1 || got2 != c.d2 {
				t.Errorf("FLCOMP densities %d, %d; want %d, %d", got1, got2, c.d1, c.d2)
			}
			if nc := flmap0 >> 8 & 3; (nc == 1) != (c.d2 != 0xF) {
				t.Errorf("FLMAP0 NC=%d with second density %#x", nc, c.d2)
			}
			if rc := flcomp >> 17 & 7; rc != 6 {
				t.Errorf("FLCOMP read clock %d, want 6 (17 MHz, what marks a v2 descriptor)", rc)
			}
			// Host (FLMSTR1): reads descriptor and BIOS, writes BIOS, never
			// the descriptor, never reads or writes ME.
			host := le.Uint32(d[fmba:])
			read, write := host>>8&0xFFF, host>>20&0xFFF
			if read&0b11 != 0b11 || write&0b10 == 0 || write&0b1 != 0 || read&0b100 != 0 || write&0b100 != 0 {
				t.Errorf("FLMSTR1 %#08x: host read %#x write %#x; want descriptor+BIOS readable, BIOS writable, ME neither", host, read, write)
			}
			if me := le.Uint32(d[fmba+4:]); me>>8&0b100 == 0 || me>>20&0b100 == 0 {
				t.Errorf("FLMSTR2 %#08x: ME cannot access its own region", me)
			}
			for i, want := range c.flmstr {
				if got := le.Uint32(d[fmba+4*i:]); got != want {
					t.Errorf("FLMSTR%d = %#08x, want %#08x", i+1, got, want)
				}
			}
			// Unused FLREGs say so; nothing but 0xFF between the sections.
			for i := 0; i < 16; i++ {
				v := le.Uint32(d[frba+4*i:])
				used := false
				for _, r := range c.regions {
					if idx, _ := ifdIndex(r.Kind); idx == i {
						used = true
					}
				}
				if !used && v != 0x7FFF {
					t.Errorf("unused FLREG%d = %#08x, want 0x00007fff", i, v)
				}
			}
			if !bytes.Equal(d[0x200:0xEE0], bytes.Repeat([]byte{0xFF}, 0xEE0-0x200)) {
				t.Error("descriptor is not 0xFF between the straps and the VSCC table")
			}

			chip := bytes.Repeat([]byte{0xFF}, int(c.chipSize))
			copy(chip, d)
			if !HasDescriptor(chip) {
				t.Fatal("HasDescriptor = false on WriteDescriptor's output")
			}
			got, err := ReadDescriptor(chip)
			if err != nil {
				t.Fatal(err)
			}
			if want := ifdWithIndex(t, c.regions); !reflect.DeepEqual(got, want) {
				t.Errorf("ReadDescriptor:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestDescriptorKinds(t *testing.T) {
	want := []string{"descriptor", "bios", "me", "gbe", "pd", "devexp1", "bios2", "microcode", "ec",
		"devexp2", "ie", "10gbe1", "10gbe2", "reserved1", "reserved2", "ptt"}
	for i, k := range want {
		if got := ifdKind(i); got != k {
			t.Errorf("ifdKind(%d) = %q, want %q", i, got, k)
		}
		if idx, ok := ifdIndex(k); !ok || idx != i {
			t.Errorf("ifdIndex(%q) = %d, %v", k, idx, ok)
		}
	}
	if idx, ok := ifdIndex("region8"); !ok || idx != 8 {
		t.Errorf("ifdIndex(region8) = %d, %v", idx, ok)
	}
	for _, k := range []string{"region16", "region0", "BIOS", "", "regionx"} {
		if _, ok := ifdIndex(k); ok {
			t.Errorf("ifdIndex(%q) accepted", k)
		}
	}
}

func TestDescriptorHasDescriptor(t *testing.T) {
	code := ovmfCode(t)
	if HasDescriptor(code) {
		t.Error("HasDescriptor(OVMF_CODE) = true: OVMF has no descriptor")
	}
	ich8 := bytes.Repeat([]byte{0xFF}, 0x1000)
	binary.LittleEndian.PutUint32(ich8, 0x0FF0A55A)
	if !HasDescriptor(ich8) {
		t.Error("HasDescriptor: ICH8 signature at 0 not accepted")
	}
	if HasDescriptor(nil) || HasDescriptor(make([]byte, 0x1000)) {
		t.Error("HasDescriptor true on empty input")
	}
}

// TestDescriptorFiano parses a whole chip with fiano's own parser, the
// one the rest of the build uses on firmware volumes.
func TestDescriptorFiano(t *testing.T) {
	code := ovmfCode(t)
	chip := ifdChip(t, 8<<20, ifdLayout8, code)
	type span struct{ start, end uint64 }
	got := map[string]span{}
	var fvName string
	var fvOffset uint64
	err := withFiano(pinnedXZ, func(l *fianoLogger) error {
		fw, err := uefi.Parse(chip)
		if err != nil {
			return fmt.Errorf("uefi.Parse: %w%s", err, l.detail())
		}
		fi, ok := fw.(*uefi.FlashImage)
		if !ok {
			return fmt.Errorf("uefi.Parse returned %T, not an Intel flash image", fw)
		}
		if !fi.IsPCH() {
			return fmt.Errorf("fiano does not see a PCH descriptor")
		}
		for _, tr := range fi.Regions {
			r := tr.Value.(uefi.Region)
			if r.Type() == uefi.RegionTypeUnknown {
				continue // gaps fiano fills in
			}
			fr := r.FlashRegion()
			got[strings.ToLower(r.Type().String())] = span{uint64(fr.BaseOffset()), uint64(fr.EndOffset())}
			if br, ok := r.(*uefi.BIOSRegion); ok {
				for _, e := range br.Elements {
					if fv, ok := e.Value.(*uefi.FirmwareVolume); ok && fvName == "" {
						fvName, fvOffset = fv.FVName.String(), fv.FVOffset
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range ifdLayout8 {
		if r.Kind == "descriptor" {
			continue // fiano keeps the descriptor apart from its Regions
		}
		if s, ok := got[r.Kind]; !ok || s != (span{r.Start, r.end()}) {
			t.Errorf("fiano: region %s = %#x-%#x (found %v), want %#x-%#x", r.Kind, s.start, s.end, ok, r.Start, r.end())
		}
	}
	bios := ifdLayout8[4]
	if fvName != growGUID || fvOffset != bios.Size-uint64(len(code)) {
		t.Errorf("fiano: BIOS region's first volume %s at %#x, want %s at %#x", fvName, fvOffset, growGUID, bios.Size-uint64(len(code)))
	}
}

// uefiExtractRow matches a row of UEFIExtract's report: type, subtype, base,
// size, CRC32, name.
var uefiExtractRow = regexp.MustCompile(`^\s*(\S[^|]*?)\s*\|\s*(\S[^|]*?)\s*\|\s*([0-9A-F]{8}|N/A)\s*\|\s*([0-9A-F]{8})\s*\|\s*[0-9A-F]{8}\s*\|\s*(.*)$`)

// TestDescriptorUEFIExtract checks the chip with an independent parser,
// UEFITool's UEFIExtract.
func TestDescriptorUEFIExtract(t *testing.T) {
	tool := needTool(t, "UEFIExtract", "uefitool-cli")
	code := ovmfCode(t)
	chip := ifdChip(t, 8<<20, ifdLayout8, code)
	dir := t.TempDir()
	file := filepath.Join(dir, "chip.bin")
	if err := os.WriteFile(file, chip, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(tool, file, "report")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("UEFIExtract: %v\n%s", err, out)
	}
	f, err := os.Open(file + ".report.txt")
	if err != nil {
		t.Fatalf("UEFIExtract wrote no report: %v", err)
	}
	defer f.Close()

	// UEFITool's region subtypes, by our kind.
	names := map[string]string{"Descriptor": "descriptor", "BIOS": "bios", "ME": "me", "GbE": "gbe", "EC": "ec", "PDR": "pd"}
	regions := map[string][2]uint64{}
	var intel bool
	var fvBase uint64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := uefiExtractRow.FindStringSubmatch(sc.Text())
		if m == nil || m[3] == "N/A" {
			continue
		}
		base, _ := strconv.ParseUint(m[3], 16, 64)
		size, _ := strconv.ParseUint(m[4], 16, 64)
		switch {
		case m[1] == "Image" && m[2] == "Intel":
			intel = size == uint64(len(chip))
		case m[1] == "Region":
			kind, ok := names[m[2]]
			if !ok {
				t.Errorf("UEFIExtract: unexpected region %q at %#x", m[2], base)
				continue
			}
			regions[kind] = [2]uint64{base, size}
		case m[1] == "Volume" && strings.Contains(m[5], growGUID) && fvBase == 0:
			fvBase = base
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if !intel {
		t.Fatalf("UEFIExtract did not report an Intel image of %#x bytes", len(chip))
	}
	for _, r := range ifdLayout8 {
		if got, want := regions[r.Kind], [2]uint64{r.Start, r.Size}; got != want {
			t.Errorf("UEFIExtract: %s region at %#x size %#x, want %#x size %#x", r.Kind, got[0], got[1], want[0], want[1])
		}
	}
	if len(regions) != len(ifdLayout8) {
		t.Errorf("UEFIExtract reported regions %v, want exactly %v", regions, ifdLayout8)
	}
	if want := uint64(len(chip) - len(code)); fvBase != want {
		t.Errorf("UEFIExtract: OVMF's FVMAIN_COMPACT at %#x, want %#x", fvBase, want)
	}
}

// TestDescriptorFlashrom reads the layout with flashrom's --ifd, the tool
// that writes the chip, through its dummy programmer.
func TestDescriptorFlashrom(t *testing.T) {
	tool := needTool(t, "flashrom", "flashrom")
	chip := ifdChip(t, 8<<20, ifdLayout8, ovmfCode(t))
	dir := t.TempDir()
	emu := filepath.Join(dir, "emulated.bin")
	if err := os.WriteFile(emu, chip, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "bios.bin")
	cmd := exec.Command(tool, "-p", "dummy:emulate=MX25L6436,image="+emu,
		"-c", "MX25L6436E/MX25L6445E/MX25L6465E/MX25L6473E/MX25L6473F",
		"--ifd", "-i", "bios", "-r", out, "-V")
	log, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("flashrom: %v\n%s", err, log)
	}
	if bytes.Contains(log, []byte("doesn't look like a Skylake")) {
		t.Errorf("flashrom does not take the descriptor for a Sunrise Point one:\n%s", log)
	}
	// flashrom's names for FLREG0-4; others would be named differently.
	names := map[string]string{"fd": "descriptor", "bios": "bios", "me": "me", "gbe": "gbe", "pd": "pd", "ec": "ec"}
	entry := regexp.MustCompile(`(?m)^Added layout entry ([0-9a-f]{8}) - ([0-9a-f]{8}) named (\S+)$`)
	got := map[string][2]uint64{}
	for _, m := range entry.FindAllStringSubmatch(string(log), -1) {
		if m[3] == "complete" {
			continue
		}
		start, _ := strconv.ParseUint(m[1], 16, 64)
		last, _ := strconv.ParseUint(m[2], 16, 64)
		kind := names[m[3]]
		if kind == "" {
			kind = m[3]
		}
		got[kind] = [2]uint64{start, last + 1 - start}
	}
	for _, r := range ifdLayout8 {
		if g := got[r.Kind]; g != [2]uint64{r.Start, r.Size} {
			t.Errorf("flashrom --ifd: %s at %#x size %#x, want %#x size %#x\n%s", r.Kind, g[0], g[1], r.Start, r.Size, log)
		}
	}
	read, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	bios := ifdLayout8[4]
	if uint64(len(read)) != uint64(len(chip)) || !bytes.Equal(read[bios.Start:bios.end()], chip[bios.Start:bios.end()]) {
		t.Error("flashrom -i bios read back a BIOS region that differs from the chip's")
	}
}

func TestDescriptorBadInput(t *testing.T) {
	good, err := WriteDescriptor(8<<20, ifdLayout8)
	if err != nil {
		t.Fatal(err)
	}
	chip := bytes.Repeat([]byte{0xFF}, 8<<20)
	copy(chip, good)
	// patch returns chip with FLREGi set to v (FRBA is 0x40).
	patch := func(i int, v uint32) []byte {
		c := append([]byte(nil), chip...)
		binary.LittleEndian.PutUint32(c[0x40+4*i:], v)
		return c
	}
	flreg := func(start, end uint64) uint32 { return uint32(start>>12) | uint32((end-1)>>12)<<16 }
	corruptMap := append([]byte(nil), chip...)
	corruptMap[0x16] = 0xFF // FRBA 0xFF0: the region section would run past 4 KiB

	readCases := []struct {
		name string
		chip []byte
		want []string
	}{
		{"truncated-descriptor", chip[:0x800], []string{"0x800 bytes", "shorter than", "truncated"}},
		{"truncated-chip", chip[:4<<20], []string{"bios", "0x300000-0x7fffff", "past the chip's end 0x400000"}},
		{"no-signature", bytes.Repeat([]byte{0xFF}, 1<<20), []string{"no Intel flash descriptor signature"}},
		{"overlap", patch(2, flreg(0x23000, 0x301000)), []string{"me (FLREG2, 0x23000-0x300fff)", "overlaps", "bios (FLREG1, 0x300000-"}},
		{"overlap-descriptor", patch(3, flreg(0, 0x3000)), []string{"overlaps", "descriptor (FLREG0"}},
		{"no-bios", patch(1, 0x7FFF), []string{"no BIOS region"}},
		{"descriptor-not-at-0", patch(0, 0x7FFF), []string{"no descriptor region"}},
		{"corrupt-map", corruptMap, []string{"region section at 0xff0", "corrupt"}},
	}
	for _, c := range readCases {
		t.Run("read-"+c.name, func(t *testing.T) {
			_, err := ReadDescriptor(c.chip)
			wantDescriptorErr(t, err, c.want...)
		})
	}

	// without returns ifdLayout8 minus kind, with extra appended.
	without := func(kind string, extra ...DescriptorRegion) []DescriptorRegion {
		var rs []DescriptorRegion
		for _, r := range ifdLayout8 {
			if r.Kind != kind {
				rs = append(rs, r)
			}
		}
		return append(rs, extra...)
	}
	writeCases := []struct {
		name     string
		chipSize uint64
		regions  []DescriptorRegion
		want     []string
	}{
		{"overlap", 8 << 20, without("me", DescriptorRegion{Kind: "me", Start: 0x23000, Size: 0x2DE000}), []string{"overlaps", "me (FLREG2", "bios (FLREG1"}},
		{"past-end", 4 << 20, ifdLayout8, []string{"bios (FLREG1, 0x300000-0x7fffff)", "past the chip's end 0x400000"}},
		{"no-bios", 8 << 20, without("bios"), []string{"no BIOS region", "add a \"bios\" region"}},
		{"no-descriptor", 8 << 20, without("descriptor"), []string{"no descriptor region", "Kind: \"descriptor\""}},
		{"descriptor-too-big", 8 << 20, without("descriptor", DescriptorRegion{Kind: "descriptor", Size: 0x2000}), []string{"must be 0x0-0xfff"}},
		{"unaligned", 8 << 20, without("gbe", DescriptorRegion{Kind: "gbe", Start: 0x1000, Size: 0x1800}), []string{"gbe", "not 4 KiB aligned"}},
		{"unknown-kind", 8 << 20, without("gbe", DescriptorRegion{Kind: "nvram", Start: 0x1000, Size: 0x1000}), []string{`unknown kind "nvram"`, `"bios"`}},
		{"duplicate", 8 << 20, without("gbe", DescriptorRegion{Kind: "ec", Start: 0x1000, Size: 0x1000}), []string{`two "ec" regions`}},
		{"index-mismatch", 8 << 20, without("gbe", DescriptorRegion{Kind: "gbe", Index: 4, Start: 0x1000, Size: 0x2000}), []string{"Index 4", "FLREG3"}},
		{"empty", 8 << 20, without("gbe", DescriptorRegion{Kind: "gbe", Start: 0x1000}), []string{"gbe", "size 0"}},
		{"chip-size", 3<<20 + 4096, ifdLayout8, []string{"chip size 0x301000", "not a SPI flash density"}},
		{"chip-too-big", 256 << 20, ifdLayout8, []string{"chip size 0x10000000"}},
	}
	for _, c := range writeCases {
		t.Run("write-"+c.name, func(t *testing.T) {
			d, err := WriteDescriptor(c.chipSize, c.regions)
			if d != nil {
				t.Error("WriteDescriptor returned bytes with an error")
			}
			wantDescriptorErr(t, err, c.want...)
		})
	}
}

// wantDescriptorErr fails unless err is an "image: descriptor:" error holding every
// part of want.
func wantDescriptorErr(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one mentioning %q", want)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "image: descriptor: ") {
		t.Errorf("error %q does not start with \"image: descriptor: \"", msg)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not mention %q", msg, w)
		}
	}
}

// TestDescriptorCorruptNoPanic feeds ReadDescriptor descriptors with
// random bytes in the map and sections (a dump read with a bad clip, a
// wrong file): errors, never a panic.
func TestDescriptorCorruptNoPanic(t *testing.T) {
	good, err := WriteDescriptor(8<<20, ifdLayout8)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(2))
	chip := bytes.Repeat([]byte{0xFF}, 1<<20) // shorter than the layout: some regions end past it
	for i := 0; i < 5000; i++ {
		copy(chip, good)
		for n := rng.Intn(8) + 1; n > 0; n-- {
			chip[0x14+rng.Intn(0xC0)] = byte(rng.Intn(256))
		}
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("ReadDescriptor panicked on % x: %v", chip[:0x100], r)
				}
			}()
			_, _ = ReadDescriptor(chip)
		}()
	}
}
