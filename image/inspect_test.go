package image

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fwbuild/fwbuild/contract/bundle"
	"github.com/fwbuild/fwbuild/hvcore/pe/pesynth"
	"github.com/fwbuild/fwbuild/internal/testdeps"
	"github.com/u-root/mkuimage/cpio"
)

func TestInspectFirmwareOVMF(t *testing.T) {
	code := ovmfCode(t)
	n, err := inspectFirmware(code)
	if err != nil {
		t.Fatal(err)
	}
	main := n.find("fv", growGUID)
	if main == nil || main.Offset != 0 || main.Size != 0x348000 || main.Free == nil || *main.Free == 0 {
		t.Fatalf("FVMAIN_COMPACT: %+v", main)
	}
	sec := n.find("fv", "763BED0D-DE9F-48F5-81F1-3E90E1B1A015")
	if sec == nil || sec.Offset != 0x348000 || sec.Size != 0x34000 {
		t.Fatalf("SECFV: %+v", sec)
	}
	dxe := n.find("fv", dxeGUID)
	if dxe == nil || dxe.Size != 0xC00000 || dxe.Note != "in LZMA section" {
		t.Fatalf("DXEFV: %+v", dxe)
	}
	shell := dxe.find("file", shellGUID)
	if shell == nil || shell.Name != "Shell" || shell.Type != "EFI_FV_FILETYPE_APPLICATION" || shell.Size < 800_000 {
		t.Fatalf("Shell: %+v", shell)
	}
	if n.find("file", "Shell") != shell {
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
	if err := json.Unmarshal(b, &back); err != nil || back.find("file", shellGUID) == nil {
		t.Fatalf("JSON round trip: %v", err)
	}
}

func TestInspectFirmwareErrors(t *testing.T) {
	if _, err := inspectFirmware(nil); err == nil {
		t.Error("empty image accepted")
	}
	if _, err := inspectFirmware(make([]byte, 1<<16)); err == nil {
		t.Error("zeros accepted as firmware")
	}
}

func FuzzInspectFirmware(f *testing.F) {
	f.Add(synthBase(f))
	f.Add(synthBase(f)[:0x200])
	f.Add([]byte("_FVH"))
	f.Add(synthBase(f)[:0xE000])                                                  // the second volume cut short
	f.Add(slices.Concat(asFFS1(f, synthBase(f)[:0xC000]), synthBase(f)[0xC000:])) // an FFS1 volume
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := inspectFirmware(b)
		if err != nil {
			return
		}
		if n.Size != int64(len(b)) {
			t.Fatalf("root size %d for %d bytes", n.Size, len(b))
		}
		checkBounds(t, n)
	})
}

// testArchive is a newc archive written by mkuimage, the writer the
// initramfs stage uses: a directory, a file, a symlink and a device.
func testArchive(t testing.TB) []byte {
	t.Helper()
	var b bytes.Buffer
	w := cpio.Newc.Writer(&b)
	err := cpio.WriteRecords(w, []cpio.Record{
		cpio.Directory("etc", 0o755),
		cpio.StaticFile("etc/guest.cfg", "name = 'demo'\n", 0o644),
		cpio.Symlink("bin/sh", "busybox"),
		cpio.CharDev("dev/console", 0o600, 5, 1),
	})
	if err == nil {
		err = cpio.WriteTrailer(w)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestDetect(t *testing.T) {
	chip, err := BuildSPI(context.Background(), synthSpec(t, minimalPE(5000)))
	if err != nil {
		t.Fatal(err)
	}
	// A chip whose first region is the guests region starts like a bundle.
	guestsFirst := synthSpec(t, minimalPE(5000))
	guestsFirst.Fills["data"] = bundle.Encode(testArchive(t))
	guestsChip, err := BuildSPI(context.Background(), guestsFirst)
	if err != nil {
		t.Fatal(err)
	}
	gpt := make([]byte, 1024)
	copy(gpt[512:], "EFI PART")
	ifd := make([]byte, 0x1000)
	copy(ifd[16:], flashSignature)
	misaligned := make([]byte, 0x1000)
	copy(misaligned[0x28+4:], "_FVH")
	// A bundle of guests that carries a firmware volume image (an HVM
	// guest's firmware, say) is still a bundle.
	fwGuest := bundle.Encode(append(testArchive(t), synthBase(t)...))
	cases := []struct {
		name string
		b    []byte
		want format
	}{
		{"firmware volumes", synthBase(t), formatFirmware},
		{"OVMF", ovmfCode(t), formatFirmware},
		{"chip", chip, formatFirmware},
		{"chip with the guests first", guestsChip, formatFirmware},
		{"compressed volumes", synthCompressedBase(t), formatFirmware},
		{"flash descriptor", ifd, formatFirmware},
		{"GPT", gpt, formatDisk},
		{"PE32+", minimalPE(4096), formatPE},
		{"PE32", pesynth.Image(pesynth.Options{PE32: true}), formatPE},
		{"guest bundle", bundle.Encode(testArchive(t)), formatGuests},
		{"guests region", append(bundle.Encode(testArchive(t)), bytes.Repeat([]byte{0xFF}, 0x4000)...), formatGuests},
		{"guest bundle holding a volume", fwGuest, formatGuests},
		{"damaged bundle", []byte(bundle.Magic + "\x09"), formatGuests},
		{"cpio", testArchive(t), formatCPIO},
		{"empty", nil, formatUnknown},
		{"zeros", make([]byte, 1<<16), formatUnknown},
		{"text", []byte("#!/bin/sh\necho hello\n"), formatUnknown},
		{"misaligned volume signature", misaligned, formatUnknown},
	}
	for _, c := range cases {
		if got := detect(c.b); got != c.want {
			t.Errorf("%s: detected %q, want %q", c.name, got, c.want)
		}
	}
}

// TestInspect takes files of each format through Inspect and its
// detection by path.
func TestInspect(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	inspect := func(p string) *Node {
		t.Helper()
		n, err := Inspect(p)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	n := inspect(testdeps.File(t, "ovmf", "code"))
	if n.Kind != "image" || n.find("fv", growGUID) == nil || n.find("file", "Shell") == nil {
		t.Errorf("OVMF: %+v", n)
	}

	pe32 := pesynth.Image(pesynth.Options{PE32: true})
	n = inspect(write("app.efi", pe32))
	if n.Kind != "pe" || n.Size != int64(len(pe32)) || !strings.Contains(n.Note, "image base 0x400000") || len(n.Children) != 2 {
		t.Fatalf("PE32: %+v", n)
	}
	if s := n.Children[0]; s.Kind != "section" || s.Name != ".text" || s.Offset != 0x400 || s.Size != 0x400 ||
		s.Note != "VA 0x401000, virtual size 0x300" {
		t.Errorf("PE32 .text: %+v", s)
	}

	wantFiles := "dir /etc 0, file /etc/guest.cfg 14, symlink /bin/sh 7 (-> busybox), special /dev/console 0 (mode 020600)"
	files := func(n *Node) string {
		var out []string
		for _, c := range n.Children {
			s := fmt.Sprintf("%s %s %d", c.Kind, c.Name, c.Size)
			if c.Note != "" {
				s += " (" + c.Note + ")"
			}
			out = append(out, s)
		}
		return strings.Join(out, ", ")
	}
	archive := testArchive(t)
	n = inspect(write("guests.cpio", archive))
	if n.Kind != "cpio" || n.Name != "guests.cpio" || n.Note != "" || files(n) != wantFiles {
		t.Errorf("cpio: %+v: files %s, want %s", n, files(n), wantFiles)
	}
	cfg := n.find("file", "/etc/guest.cfg")
	if cfg == nil || string(archive[cfg.Offset:cfg.Offset+cfg.Size]) != "name = 'demo'\n" {
		t.Errorf("file offset does not point at its data: %+v", cfg)
	}
	n = inspect(write("guests.region", append(bundle.Encode(archive), bytes.Repeat([]byte{0xFF}, 0x1000)...)))
	if n.Kind != "guests" || n.Size != int64(bundle.HeaderSize+len(archive)) || !strings.HasSuffix(n.Note, "SHA-256 ok") || files(n) != wantFiles {
		t.Errorf("guest bundle: %+v: files %s", n, files(n))
	}

	// A chip lists its guests region with the files in it.
	spec := synthSpec(t, minimalPE(5000))
	spec.Fills["data"] = bundle.Encode(archive)
	chip, err := BuildSPI(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	n = inspect(write("spi.bin", chip))
	if g := n.find("guests", "guest bundle"); n.Kind != "image" || g == nil || files(g) != wantFiles {
		t.Errorf("chip: %+v, guests %+v", n, g)
	}

	for name, c := range map[string]struct {
		p, want string
	}{
		"missing": {filepath.Join(dir, "nothing"), "no such file"},
		"empty":   {write("empty", nil), "empty file"},
		"unknown": {write("script", []byte("#!/bin/sh\n")), "not a chip or firmware image, GPT disk image, PE image"},
		"bad PE":  {write("bad.efi", []byte("MZ, but no more")), "not a PE image"},
	} {
		_, err := Inspect(c.p)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Count(err.Error(), c.p) != 1 {
			t.Errorf("%s: error %v, want one naming %s once and saying %q", name, err, c.p, c.want)
		}
	}
}

func TestListCPIO(t *testing.T) {
	archive := testArchive(t)
	hugeName := bytes.Clone(archive)
	copy(hugeName[6+8*11:], "FFFFFFFF") // first entry's name size
	hugeData := bytes.Clone(archive)
	copy(hugeData[6+8*6:], "7FFFFFFF") // first entry's file size
	for name, c := range map[string]struct {
		b     []byte
		n     int
		error string
	}{
		"complete":      {archive, 4, ""},
		"truncated":     {archive[:len(archive)-200], 3, "without a trailer"}, // in the device entry
		"not hex":       {append([]byte("070701zzzzzzzz"), make([]byte, 200)...), 0, "header at 0"},
		"not newc":      {[]byte("070707" + strings.Repeat("0", 200)), 0, "not newc"},
		"huge name":     {hugeName, 0, "does not fit the archive"},
		"data past end": {hugeData, 0, "run past the archive"},
	} {
		got, err := listCPIO(c.b)
		if len(got) != c.n || (err == nil) != (c.error == "") || err != nil && !strings.Contains(err.Error(), c.error) {
			t.Errorf("%s: %d entries, error %v; want %d entries, error %q", name, len(got), err, c.n, c.error)
		}
	}
}

func FuzzListCPIO(f *testing.F) {
	f.Add(testArchive(f))
	f.Add(bundle.Encode(testArchive(f)))
	f.Fuzz(func(t *testing.T, b []byte) {
		files, _ := listCPIO(b)
		for _, n := range files {
			if n.Offset < 0 || n.Size < 0 || n.Offset+n.Size > int64(len(b)) {
				t.Fatalf("entry %+v lies outside the %d-byte archive", n, len(b))
			}
		}
		checkBounds(t, inspectCPIO("fuzz.cpio", b))
		if g := inspectGuestBundle(b, 0); g.Size > int64(len(b)) {
			t.Fatalf("bundle of %d bytes in %d", g.Size, len(b))
		} else {
			checkBounds(t, g)
		}
		detect(b)
	})
}

// A volume image fiano cannot open (EFI 1.1 compression, which VirtualBox
// uses for its DXE volume) is a file with the reason, not an empty file.
func TestInspectUnopenedSection(t *testing.T) {
	// EFI_COMPRESSION_SECTION: uncompressed length, type 1 (EFI standard).
	compressed := section(0x01, append([]byte{0, 0x10, 0, 0, 1}, bytes.Repeat([]byte{0x5A}, 64)...))
	fv := synthFV(t, synthGrow, 0x2000, synthFile{guid: "A4EF5A93-0000-4232-A1C4-F0910E6D1D9C", ftype: 0x0B, sections: [][]byte{compressed}})
	n, err := inspectFirmware(fv)
	if err != nil {
		t.Fatal(err)
	}
	if f := n.find("file", "A4EF5A93-0000-4232-A1C4-F0910E6D1D9C"); f == nil || f.Note != "EFI_SECTION_COMPRESSION not opened by fiano" || len(f.Children) != 0 {
		t.Errorf("file with an EFI-compressed volume: %+v", f)
	}
}

// TestInspectFlashDescriptor lists the regions of an Intel flash
// descriptor image, with the volumes of its BIOS region inside.
func TestInspectFlashDescriptor(t *testing.T) {
	bios := synthBase(t)
	img := append(make([]byte, 0x1000), bios...)
	copy(img[16:], flashSignature)
	img[0x16] = 0x04 // FLMAP0: the region section at 0x40
	img[0x18] = 0x06 // FLMAP1: the master section at 0x60
	// FLREG1 (BIOS): 4 KiB blocks 1 to 16; every other region is unused.
	binary.LittleEndian.PutUint16(img[0x44:], 1)
	binary.LittleEndian.PutUint16(img[0x46:], uint16(len(bios)/0x1000))
	if f := detect(img); f != formatFirmware {
		t.Fatalf("detected %q", f)
	}
	n, err := inspectFirmware(img)
	if err != nil {
		t.Fatal(err)
	}
	if n.Note != "Intel flash descriptor" || len(n.Children) != 1 {
		t.Fatalf("root %+v: want the descriptor note and one region", n)
	}
	r := n.Children[0]
	if r.Kind != "region" || r.Name != "BIOS" || r.Offset != 0x1000 || r.Size != int64(len(bios)) || len(r.Children) != 2 {
		t.Fatalf("BIOS region %+v", r)
	}
	if fv := r.find("fv", synthGrow); fv == nil || fv.Offset != 0 || fv.find("file", "Shell") == nil {
		t.Errorf("first volume of the BIOS region: %+v", fv)
	}
}

// A chip's guests region shows up in inspect, checked: a good bundle with
// its size, a damaged one with the reason.
func TestInspectGuestBundle(t *testing.T) {
	spec := synthSpec(t, minimalPE(5000))
	spec.Fills["data"] = bundle.Encode([]byte("the guests' cpio"))
	chip, err := BuildSPI(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	n, err := inspectFirmware(chip)
	if err != nil {
		t.Fatal(err)
	}
	g := n.find("guests", "guest bundle")
	if g == nil || g.Offset != 0 || g.Size != bundle.HeaderSize+16 || !strings.Contains(g.Note, "SHA-256 ok") {
		t.Fatalf("guests node: %+v", g)
	}
	chip[bundle.HeaderSize+2] ^= 1
	if n, err = inspectFirmware(chip); err != nil {
		t.Fatal(err)
	}
	if g := n.find("guests", "guest bundle"); g == nil || !strings.Contains(g.Warning, "SHA-256 of the archive") {
		t.Fatalf("damaged bundle node: %+v", g)
	}
}
