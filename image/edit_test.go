package image

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/launcher"
	"github.com/linuxboot/fiano/pkg/uefi"
)

// editRun is one BuildSPIReport over a real firmware.
type editRun struct {
	in, out []byte
	rep     *EditReport
	err     error
	took    time.Duration
}

// insertCase is how each real firmware takes the test launcher.
type insertCase struct {
	fw     vendorFW
	remove []string
	// unsupported: the firmware is refused with an error holding these.
	unsupported []string
}

var insertCases = []insertCase{
	{fw: ovmf4M},
	// fiano's pinned Go LZMA encoder compresses ~20% worse than the one
	// that built OVMF, so the 2 MiB build's FVMAIN_COMPACT (0x1AC000 bytes)
	// only takes the launcher once the Shell is out.
	{fw: ovmf2M, remove: []string{"Shell"}},
	{fw: galago},
	// vbox's DXE volume lies in an EFI_SECTION_COMPRESSION of type 0 (not
	// compressed), which fiano v1.2.0 does not descend into: openStored
	// opens it and storeBack writes it back.
	{fw: vbox},
}

// insertRuns shares the insertion of the test launcher per firmware
// between tests: OVMF's recompression takes seconds.
var insertRuns onceResult[editRun]

// testLauncherSize is about what the real launcher is; galago's DXE
// volume has ~24 KiB free.
const testLauncherSize = 16 << 10

func insertLauncher(t testing.TB, c insertCase) editRun {
	t.Helper()
	in := c.fw.read(t)
	ffs := testLauncherFFS(t, testLauncherGUID, testLauncherSize)
	return insertRuns.get(c.fw.name, func() editRun {
		s := chipSpec(in)
		s.Insert, s.Remove = [][]byte{ffs}, c.remove
		start := time.Now()
		out, rep, err := BuildSPIReport(context.Background(), s)
		return editRun{in: in, out: out, rep: rep, err: err, took: time.Since(start)}
	})
}

// TestEditVendorInsert inserts a launcher-like driver into each real
// firmware and checks the result with fiano and with UEFIExtract, and
// that nothing but the one top-level volume holding the DXE volume changed.
func TestEditVendorInsert(t *testing.T) {
	for _, c := range insertCases {
		t.Run(c.fw.name, func(t *testing.T) {
			r := insertLauncher(t, c)
			t.Logf("%s: BuildSPIReport took %v", c.fw.name, r.took.Round(time.Millisecond))
			if c.unsupported != nil {
				if r.err == nil || r.out != nil {
					t.Fatalf("BuildSPIReport: %d bytes, error %v; want an unsupported-firmware error", len(r.out), r.err)
				}
				for _, w := range c.unsupported {
					if !strings.Contains(r.err.Error(), w) {
						t.Errorf("error lacks %q: %v", w, r.err)
					}
				}
				return
			}
			if r.err != nil {
				t.Fatalf("BuildSPIReport: %v", r.err)
			}
			if len(r.out) != len(r.in) {
				t.Fatalf("chip is %#x bytes, the firmware %#x", len(r.out), len(r.in))
			}
			if len(r.rep.Inserted) != 1 || r.rep.Inserted[0].GUID != testLauncherGUID {
				t.Errorf("report inserted %+v, want the one file %s", r.rep.Inserted, testLauncherGUID)
			}
			var gone []string
			for _, f := range r.rep.Removed {
				gone = append(gone, f.GUID)
			}
			checkReparse(t, r.in, r.out, testLauncherGUID, gone...)
			changed := checkOnlyDXEVolumeChanged(t, r.in, r.out, r.rep)
			checkIndependent(t, r.in, r.out, []string{testLauncherGUID}, gone)
			t.Logf("%s: changed top-level volume %s", c.fw.name, changed)
		})
	}
}

// checkReparse parses out with fiano: the DXE core is still found, every
// volume (nested ones too) keeps its name and length, want is in the DXE
// volume and gone is nowhere.
func checkReparse(t *testing.T, in, out []byte, want string, gone ...string) {
	t.Helper()
	err := withFiano(pinnedXZ, func(l *fianoLogger) error {
		before, err := openEdit(in, l)
		if err != nil {
			return fmt.Errorf("parse the input: %w", err)
		}
		resetErasePolarity()
		after, err := openEdit(out, l)
		if err != nil {
			return fmt.Errorf("parse the output: %w", err)
		}
		if len(before.before) != len(after.before) {
			return fmt.Errorf("input has %d volumes, output %d", len(before.before), len(after.before))
		}
		for i, b := range before.before {
			if a := after.before[i]; a.key != b.key || a.len != b.len {
				return fmt.Errorf("volume %d: %s of %#x bytes became %s of %#x bytes", i, b.key, b.len, a.key, a.len)
			}
		}
		found := false
		for _, f := range after.dxe.Files {
			found = found || f.Header.GUID.String() == want
		}
		if want != "" && !found {
			return fmt.Errorf("file %s is not in the re-parsed DXE volume %s", want, fvName(after.dxe))
		}
		var hit error
		_ = walk(after.br, func(f uefi.Firmware, _ []uefi.Firmware) {
			if x, ok := f.(*uefi.File); ok && slices.Contains(gone, x.Header.GUID.String()) {
				hit = fmt.Errorf("removed file %s is still in the output", x.Header.GUID)
			}
		})
		return hit
	})
	if err != nil {
		t.Errorf("fiano re-parse: %v", err)
	}
}

// checkOnlyDXEVolumeChanged compares the top-level volumes of in and out
// found from their headers alone: same offsets, lengths and names, valid
// header checksums, all byte-identical but the one the report says it
// changed, which holds the DXE volume; every byte outside it is the same.
func checkOnlyDXEVolumeChanged(t *testing.T, in, out []byte, rep *EditReport) string {
	t.Helper()
	var top []VolumeUse
	dxeTop := ""
	for i, v := range rep.Volumes {
		if v.TopLevel && v.Changed {
			top = append(top, v)
		}
		if v.DXE {
			// The enclosing top-level volume is the last one before it in walk order.
			for j := i; j >= 0; j-- {
				if rep.Volumes[j].TopLevel {
					dxeTop = fmt.Sprintf("%s at %#x", rep.Volumes[j].Name, rep.Volumes[j].Offset)
					break
				}
			}
		}
	}
	if len(top) != 1 {
		t.Fatalf("report lists %d changed top-level volumes, want 1: %+v", len(top), top)
	}
	ch := top[0]
	if got := fmt.Sprintf("%s at %#x", ch.Name, ch.Offset); got != dxeTop {
		t.Errorf("changed top-level volume %s does not hold the DXE volume (%s)", got, dxeTop)
	}
	fin, fout := topLevelFVs(in), topLevelFVs(out)
	if len(fin) != len(fout) {
		t.Fatalf("input has %d top-level volumes with valid headers, output %d", len(fin), len(fout))
	}
	seen := false
	for i, a := range fin {
		b := fout[i]
		if a.Offset != b.Offset || a.Length != b.Length || a.Name != b.Name {
			t.Errorf("top-level volume %v at %#x (%#x bytes) became %v at %#x (%#x bytes)", a.Name, a.Offset, a.Length, b.Name, b.Offset, b.Length)
			continue
		}
		if checksum16(out[b.Offset:b.Offset+b.HeaderLen]) != 0 {
			t.Errorf("volume %v at %#x: header checksum is wrong", b.Name, b.Offset)
		}
		span := func(x []byte) []byte { return x[a.Offset : uint64(a.Offset)+a.Length] }
		if uint64(a.Offset) == ch.Offset {
			seen = true
			if bytes.Equal(span(in), span(out)) {
				t.Errorf("volume %v at %#x is reported changed but is byte-identical", a.Name, a.Offset)
			}
			if !bytes.Equal(in[:a.Offset], out[:a.Offset]) || !bytes.Equal(in[uint64(a.Offset)+a.Length:], out[uint64(a.Offset)+a.Length:]) {
				t.Errorf("bytes outside volume %v at %#x changed", a.Name, a.Offset)
			}
		} else if !bytes.Equal(span(in), span(out)) {
			t.Errorf("volume %v at %#x changed, but the edit is only in %s at %#x", a.Name, a.Offset, ch.Name, ch.Offset)
		}
	}
	if !seen {
		t.Errorf("no top-level volume with a valid header starts at %#x, where the report puts the changed one", ch.Offset)
	}
	return fmt.Sprintf("%s at %#x", ch.Name, ch.Offset)
}

// checkIndependent runs UEFIExtract over in and out: the files of present
// are listed in out's report, those of absent are not, every volume row
// keeps its size, and out has no complaint of an invalid checksum that in
// did not have.
func checkIndependent(t *testing.T, in, out []byte, present, absent []string) {
	t.Helper()
	rin, min := uefiExtract(t, in)
	rout, mout := uefiExtract(t, out)
	for _, g := range present {
		if !strings.Contains(rout, g) {
			t.Errorf("UEFIExtract does not list file %s in the output", g)
		}
	}
	for _, g := range absent {
		if !strings.Contains(rin, g) {
			t.Errorf("UEFIExtract does not list file %s in the input: the test is wrong", g)
		}
		if strings.Contains(rout, g) {
			t.Errorf("UEFIExtract still lists removed file %s", g)
		}
	}
	if vin, vout := volumeRows(rin), volumeRows(rout); len(vin) == 0 || !slices.Equal(vin, vout) {
		t.Errorf("UEFIExtract's volumes changed:\n%s\nbecame\n%s", strings.Join(vin, "\n"), strings.Join(vout, "\n"))
	}
	if bad := newInvalid(rin+min, rout+mout); len(bad) > 0 {
		t.Errorf("UEFIExtract finds new problems in the output:\n%s", strings.Join(bad, "\n"))
	}
}

// volumeRows are the volume rows of a UEFIExtract report without their
// CRC32 (which changes with the content): type, base, size and name.
func volumeRows(report string) []string {
	var out []string
	for _, l := range strings.Split(report, "\n") {
		c := strings.Split(l, "|")
		if len(c) >= 6 && strings.TrimSpace(c[0]) == "Volume" {
			out = append(out, strings.Join([]string{c[1], c[2], c[3], c[5]}, "|"))
		}
	}
	return out
}

// TestEditRemove checks `remove:` on real firmware: dropping galago's
// Shell by GUID makes room for a driver its nearly full DXE volume could
// not take (the removal path of an LZMA-compressed DXE volume; OVMF's
// by UI name is in TestEditVendorInsert), and a name that matches no file
// is an error that names it, before any recompression.
func TestEditRemove(t *testing.T) {
	in := galago.read(t)
	s := chipSpec(in)
	s.Insert = [][]byte{testLauncherFFS(t, testLauncherGUID, 64<<10)}
	if _, _, err := BuildSPIReport(context.Background(), s); !errors.As(err, new(*NoRoomError)) {
		t.Fatalf("galago without removal: %v, want *NoRoomError (else this test proves nothing)", err)
	}
	s.Remove = []string{shellGUID}
	start := time.Now()
	out, rep, err := BuildSPIReport(context.Background(), s)
	if err != nil {
		t.Fatalf("galago, Shell removed: %v", err)
	}
	t.Logf("galago: remove + insert took %v", time.Since(start).Round(time.Millisecond))
	if len(rep.Removed) != 1 || rep.Removed[0].GUID != shellGUID || rep.Removed[0].Name != "Shell" {
		t.Errorf("removed %+v, want the Shell", rep.Removed)
	}
	var dxe *VolumeUse
	for i := range rep.Volumes {
		if rep.Volumes[i].DXE {
			dxe = &rep.Volumes[i]
		}
	}
	if dxe == nil || dxe.FreeAfter <= dxe.FreeBefore {
		t.Errorf("DXE volume %+v: removing the Shell (and adding 64 KiB) should leave more free space", dxe)
	}
	checkReparse(t, in, out, testLauncherGUID, shellGUID)
	checkOnlyDXEVolumeChanged(t, in, out, rep)
	checkIndependent(t, in, out, []string{testLauncherGUID}, []string{shellGUID})

	fw := ovmf4M.read(t)
	for _, name := range []string{"NoSuchDriver", "01234567-89AB-CDEF-0123-456789ABCDEF"} {
		s := chipSpec(fw)
		s.Remove = []string{"Shell", name}
		out, _, err := BuildSPIReport(context.Background(), s)
		if err == nil || out != nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", name)) || !strings.Contains(err.Error(), "no file with that GUID or UI name") {
			t.Errorf("remove %q: %d bytes, error %v; want an error naming it", name, len(out), err)
		}
	}
}

// TestEditNoRoom inserts a driver of several MB into galago, whose DXE
// volume has ~24 KiB free: the error names the DXE volume, offers the
// largest files as candidates, and no image comes back.
func TestEditNoRoom(t *testing.T) {
	s := chipSpec(galago.read(t))
	s.Insert = [][]byte{testLauncherFFS(t, testLauncherGUID, 4<<20)}
	out, _, err := BuildSPIReport(context.Background(), s)
	var nr *NoRoomError
	if !errors.As(err, &nr) || out != nil {
		t.Fatalf("got %d bytes, error %v; want *NoRoomError and nothing", len(out), err)
	}
	const galagoDXE = "A881D567-6CB0-4EEE-8435-2E72D33E45B5"
	if nr.Volume != galagoDXE || nr.Need <= nr.Have {
		t.Errorf("NoRoomError %+v: want volume %s needing more than it holds", nr, galagoDXE)
	}
	// The file being inserted is no candidate for removal.
	if len(nr.Candidates) == 0 || nr.Candidates[0].Name != "Shell" || slices.ContainsFunc(nr.Candidates, func(f FileUse) bool { return f.GUID == testLauncherGUID }) {
		t.Errorf("candidates %.3v...: want the Shell, the largest file of the firmware, first, and not the inserted file", nr.Candidates)
	}
	for _, w := range []string{galagoDXE, "Shell (", "nothing was written"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q: %v", w, err)
		}
	}
}

// ffs1Firmware rewrites the file system GUID of the top-level volume at
// offset 0 of fw to FFS1 (as older AMI and Insyde images have) and fixes
// its header checksum: a valid volume whose files fiano does not parse.
func ffs1Firmware(t testing.TB, fw []byte) []byte {
	t.Helper()
	fvs := topLevelFVs(fw)
	if len(fvs) == 0 || fvs[0].Offset != 0 {
		t.Fatal("firmware has no volume at offset 0")
	}
	b := bytes.Clone(fw)
	copy(b[fvFileSystemGUID:], guidBytes(t, "7A9354D9-0468-444A-81CE-0BF617D890DF"))
	b[fvChecksum], b[fvChecksum+1] = 0, 0
	sum := -checksum16(b[:fvs[0].HeaderLen])
	b[fvChecksum], b[fvChecksum+1] = byte(sum), byte(sum>>8)
	if h := topLevelFVs(b); len(h) != len(fvs) {
		t.Fatalf("rewritten firmware has %d valid top-level volumes, the original %d", len(h), len(fvs))
	}
	return b
}

// TestEditUnsupportedFFS1 checks that an FFS1 DXE container is refused
// as unsupported, naming the volume, not as "no DXE core".
func TestEditUnsupportedFFS1(t *testing.T) {
	s := chipSpec(ffs1Firmware(t, ovmf4M.read(t)))
	s.Insert = [][]byte{testLauncherFFS(t, testLauncherGUID, testLauncherSize)}
	out, _, err := BuildSPIReport(context.Background(), s)
	if err == nil || out != nil {
		t.Fatalf("got %d bytes, error %v; want an unsupported-firmware error", len(out), err)
	}
	for _, w := range []string{"unsupported", growGUID + " at 0x0", "FFS1"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q: %v", w, err)
		}
	}
}

// TestVendorCheckersSeeDamage makes sure the UEFIExtract check is not
// vacuous: a volume header with a broken checksum is reported as new.
func TestVendorCheckersSeeDamage(t *testing.T) {
	in := vbox.read(t)
	bad := bytes.Clone(in)
	bad[fvChecksum] ^= 0x55
	rin, min := uefiExtract(t, in)
	rbad, mbad := uefiExtract(t, bad)
	if got := newInvalid(rin+min, rbad+mbad); len(got) != 1 || !strings.Contains(got[0], "checksum") {
		t.Errorf("broken volume header checksum: new complaints %q, want one about the checksum", got)
	}
	if len(volumeRows(rin)) < 3 {
		t.Errorf("UEFIExtract lists %d volumes of vbox, want its nested ones too", len(volumeRows(rin)))
	}
}

// TestEditUncompressedDXE covers a DXE volume that is a plain top-level
// volume (no real image here has one): a removed file becomes a pad file
// of its size so that code after it, which may run in place, does not
// move; the launcher goes after the last file; overfilling is NoRoomError.
func TestEditUncompressedDXE(t *testing.T) {
	const (
		vol   = "DDDDDDDD-1111-2222-3333-444444444444"
		core  = "C0C0C0C0-1111-2222-3333-444444444444"
		after = "AFAFAFAF-1111-2222-3333-444444444444"
	)
	base := synthFV(t, vol, 0x10000,
		synthFile{guid: core, ftype: 0x05, sections: [][]byte{section(0x10, minimalPE(0x800))}},
		synthFile{guid: shellGUID, ftype: 0x09, sections: [][]byte{section(0x10, minimalPE(0x1000)), uiSection("Shell")}},
		synthFile{guid: after, ftype: 0x07, sections: [][]byte{section(0x10, minimalPE(0x600))}})
	ffs := testLauncherFFS(t, testLauncherGUID, 0x800)
	var out []byte
	var rep *EditReport
	err := withFiano(pinnedXZ, func(l *fianoLogger) (err error) {
		out, rep, err = editFirmware(base, [][]byte{ffs}, []string{"Shell"}, l)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	at := func(b []byte, g string) int { return bytes.Index(b, guidBytes(t, g)) }
	if len(out) != len(base) || at(out, after) != at(base, after) || at(out, shellGUID) >= 0 || at(out, testLauncherGUID) < at(out, after) {
		t.Errorf("file %s moved from %#x to %#x, Shell at %#x, launcher at %#x (%d bytes, was %d)",
			after, at(base, after), at(out, after), at(out, shellGUID), at(out, testLauncherGUID), len(out), len(base))
	}
	if s := at(base, shellGUID); out[s+18] != 0xF0 || !bytes.Equal(out[s+20:s+23], base[s+20:s+23]) {
		t.Errorf("at the Shell's place: file type %#x size % x, want a pad file (0xF0) of size % x", out[s+18], out[s+20:s+23], base[s+20:s+23])
	}
	if len(rep.Removed) != 1 || len(rep.Inserted) != 1 || len(rep.Volumes) != 1 || !rep.Volumes[0].DXE || rep.Volumes[0].Compressed {
		t.Errorf("report %+v", rep)
	}
	checkReparse(t, base, out, testLauncherGUID, shellGUID)

	err = withFiano(pinnedXZ, func(l *fianoLogger) (err error) {
		out, _, err = editFirmware(base, [][]byte{testLauncherFFS(t, testLauncherGUID, 0x10000)}, nil, l)
		return err
	})
	var nr *NoRoomError
	if !errors.As(err, &nr) || out != nil || nr.Volume != vol || nr.Have != 0x10000 || nr.Need <= nr.Have {
		t.Errorf("overfilled: %d bytes, %v; want *NoRoomError for %s", len(out), err, vol)
	}
}

// The launcher leaves OVMF's UEFI Shell alone: the Shell file is the same
// bytes as in stock OVMF, in the same volume, and no volume changes size
// (checkReparse in TestEditVendorInsert holds every length).
func TestEditKeepsShell(t *testing.T) {
	r := insertLauncher(t, insertCases[0])
	if r.err != nil {
		t.Fatal(r.err)
	}
	shell := mustGUID(t, "7C04A583-9E3E-4F1C-AD65-E05268D0B4D1")
	find := func(b []byte) (data []byte, volume string) {
		err := withFiano(pinnedXZ, func(l *fianoLogger) error {
			e, err := openEdit(b, l)
			if err != nil {
				return err
			}
			for _, f := range e.dxe.Files {
				if f.Header.GUID == shell {
					data, volume = bytes.Clone(f.Buf()), fvName(e.dxe)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return data, volume
	}
	before, v1 := find(r.in)
	after, v2 := find(r.out[len(r.out)-len(r.in):])
	if len(before) == 0 || !bytes.Equal(before, after) || v1 != v2 {
		t.Errorf("Shell file: %d bytes in %s before, %d in %s after; want the same bytes in the same volume", len(before), v1, len(after), v2)
	}
}

// An EFI_SECTION_COMPRESSION with EFI (Tiano) compression, which fiano
// cannot open, hiding the DXE core is refused as unsupported, naming it.
func TestEditUnsupportedTiano(t *testing.T) {
	body := binary.LittleEndian.AppendUint32(nil, 0x1000) // UncompressedLength
	body = append(body, 1)                                // EFI_STANDARD_COMPRESSION
	body = append(body, bytes.Repeat([]byte{0x5A}, 200)...)
	file, err := launcher.File(guidBytesArr(t, "11111111-2222-3333-4444-555555555555"), 0x07, [][2][]byte{{{0x01}, body}})
	if err != nil {
		t.Fatal(err)
	}
	const size = 0x10000
	fv := bytes.Repeat([]byte{0xFF}, size)
	h := fv[:0x48]
	clear(h)
	copy(h[0x10:], guidBytes(t, "8C8CE578-8A3D-4F1C-9935-896185C32DD3")) // FFS2
	binary.LittleEndian.PutUint64(h[0x20:], size)
	copy(h[0x28:], "_FVH")
	binary.LittleEndian.PutUint32(h[0x2C:], 0x0004FEFF)
	binary.LittleEndian.PutUint16(h[0x30:], 0x48)
	h[0x37] = 2
	binary.LittleEndian.PutUint32(h[0x38:], size/0x1000)
	binary.LittleEndian.PutUint32(h[0x3C:], 0x1000)
	binary.LittleEndian.PutUint16(h[0x32:], -checksum16(h))
	copy(fv[0x48:], file)
	s := chipSpec(fv)
	s.Insert = [][]byte{testLauncherFFS(t, testLauncherGUID, testLauncherSize)}
	out, _, err := BuildSPIReport(context.Background(), s)
	if err == nil || out != nil {
		t.Fatalf("got %d bytes, error %v; want an unsupported-firmware error", len(out), err)
	}
	for _, w := range []string{"unsupported firmware", "EFI/Tiano-compressed", "8C8CE578-8A3D-4F1C-9935-896185C32DD3", "nothing was written"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q: %v", w, err)
		}
	}
}

func guidBytesArr(t testing.TB, s string) [16]byte {
	t.Helper()
	var g [16]byte
	copy(g[:], guidBytes(t, s))
	return g
}
