package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fwbuild/fwbuild/boardcfg"
	"github.com/fwbuild/fwbuild/image"
	"github.com/fwbuild/fwbuild/internal/testdeps"
	"github.com/fwbuild/fwbuild/launcher"
)

// vendorBoards writes, into a copy of the boards directory, profiles that
// extend qemu-q35 with firmware nobody here wrote, named by path and
// SHA-256: the two third-party images of testdata/firmware (BIOS regions)
// and a full-chip image with an Intel flash descriptor, a random ME region
// and a GbE region around stock OVMF. It returns the directory and the
// firmware files by board.
func vendorBoards(t *testing.T) (string, map[string]string) {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("cp", "-r", "../../boards/.", dir).CombinedOutput(); err != nil {
		t.Fatalf("copy boards: %v: %s", err, out)
	}
	files := map[string]string{}
	write := func(board, file string, data []byte, spi string) {
		p := filepath.Join(dir, "vendor", file)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		profile := fmt.Sprintf("extends: qemu-q35\nname: %s\noutputs:\n  spi:\n    firmware: {path: vendor/%s, sha256: %s}\n%s",
			board, file, hex.EncodeToString(sum[:]), spi)
		if err := os.WriteFile(filepath.Join(dir, board+".yaml"), []byte(profile), 0o644); err != nil {
			t.Fatal(err)
		}
		files[board] = p
	}
	galago, err := os.ReadFile(sharedFirmware(t, "minplatform-galagopro3-GALAGOPRO3.fd", "ba2170c6c1cfd893b065f4aa9e2b708c7b3089e4a456a72834bb85c323077f96"))
	if err != nil {
		t.Fatal(err)
	}
	vbox, err := os.ReadFile(sharedFirmware(t, "vbox-5.0.0-VBoxEFI64.fd", "c3bacb98568a4647e20aa897788e45ce50691010da9609d26eaabbee9d617569"))
	if err != nil {
		t.Fatal(err)
	}
	// galago (6 MiB) with the payload and the guests does not fit 16 MiB.
	write("vendor-galago", "galago.fd", galago, `    chip_size: 32MiB
    descriptor: ""
    mapped: 32MiB
    payload: region
    regions:
      - {name: bios, firmware: true, start: 0x0, size: 32MiB}
      - {name: guests, guests: true, start: 0x0, size: 0x600000}
      - {name: payload, payload: true, start: 0xE00000, size: 0xC00000}   # up to galago, the top 6 MiB
`)
	write("vendor-vbox", "vbox.fd", vbox, `    chip_size: 16MiB
    descriptor: ""
    mapped: 16MiB
    payload: region
    regions:
      - {name: bios, firmware: true, start: 0x0, size: 16MiB}
      - {name: guests, guests: true, start: 0x0, size: 0x3C0000}
      - {name: payload, payload: true, start: 0x3C0000, size: 0xA40000}
control_domain:
  compression: xz-x86   # qemu-q35's zstd control domain is for its 32 MiB chip
`)
	write("vendor-fullchip", "chip.bin", fullChip(t), `    chip_size: 32MiB
    descriptor: image
    mapped: 32MiB
    payload: region
    regions:
      # The BIOS region starts right after the GbE region: the guests below the top 16 MiB.
      - {name: guests, guests: true, start: 0x900000, size: 0x600000}
      - {name: payload, payload: true, start: 0x1000000, size: 0xC84000}
`)
	return dir, files
}

// fullChip is a 32 MiB image as a vendor ships it: descriptor, ME (random,
// with the "$MN2" marker real ME firmware carries), GbE, and the BIOS region
// in the top 16 MiB holding stock OVMF at its top.
func fullChip(t *testing.T) []byte {
	t.Helper()
	const size = 32 << 20
	fd, err := image.WriteDescriptor(size, []image.DescriptorRegion{
		{Kind: "descriptor", Start: 0, Size: 0x1000},
		{Kind: "me", Start: 0x1000, Size: 0x7FF000},
		{Kind: "gbe", Start: 0x800000, Size: 0x2000},
		{Kind: "bios", Start: 0x802000, Size: 0x17FE000},
	})
	if err != nil {
		t.Fatal(err)
	}
	chip := bytes.Repeat([]byte{0xFF}, size)
	copy(chip, fd)
	r := rand.New(rand.NewChaCha8([32]byte{'m', 'e'}))
	for i := 0x1000; i < 0x802000; i++ {
		chip[i] = byte(r.Uint32())
	}
	copy(chip[0x1000+0x10:], "$MN2")
	ovmf, err := os.ReadFile(testdeps.File(t, "ovmf", "code"))
	if err != nil {
		t.Fatal(err)
	}
	copy(chip[size-len(ovmf):], ovmf)
	return chip
}

// changedSpan is the range of the firmware region in which out differs from in.
func changedSpan(in, out []byte) (lo, hi int) {
	lo, hi = -1, -1
	for i := range in {
		if in[i] != out[i] {
			if lo < 0 {
				lo = i
			}
			hi = i + 1
		}
	}
	return lo, hi
}

// The build takes firmware that fwbuild did not write, named by path and
// SHA-256: the launcher lands in the DXE volume (UEFIExtract, an
// independent parser, lists it), every byte outside the one top-level
// volume that holds the DXE volume is as it was, and flash-map.svg is an
// SVG showing every region. A full-chip image keeps its descriptor, ME and
// GbE regions byte for byte, its layout comes from its descriptor, and
// flashing writes only its BIOS region.
func TestVendorFirmwareBuilds(t *testing.T) {
	uefiextract, err := exec.LookPath("UEFIExtract")
	if err != nil {
		t.Fatal("UEFIExtract not found: apt-get install -y uefitool-cli")
	}
	boards, files := vendorBoards(t)
	cache := testdeps.CacheDir(t)
	for _, name := range []string{"vendor-galago", "vendor-vbox", "vendor-fullchip"} {
		t.Run(name, func(t *testing.T) {
			out := t.TempDir()
			var o, e bytes.Buffer
			code := run(context.Background(), []string{"--boards", boards, "--cache", cache, "build", "--board", name, "--out", out}, &o, &e)
			if code != 0 {
				t.Fatalf("build: exit %d\n%s%s", code, o.String(), e.String())
			}
			b, err := boardcfg.Load(filepath.Join(boards, name+".yaml"), boards)
			if err != nil {
				t.Fatal(err)
			}
			in, err := os.ReadFile(files[name])
			if err != nil {
				t.Fatal(err)
			}
			chip, err := os.ReadFile(filepath.Join(out, "spi.bin"))
			if err != nil {
				t.Fatal(err)
			}
			layout, err := os.ReadFile(filepath.Join(out, "spi.layout"))
			if err != nil {
				t.Fatal(err)
			}
			regions := b.Outputs.SPI.Regions
			if b.Outputs.SPI.Descriptor == boardcfg.DescriptorImage {
				if regions, err = image.ChipLayout(in, regions); err != nil {
					t.Fatal(err)
				}
			}
			var fw boardcfg.Region
			for _, r := range regions {
				if r.Firmware {
					fw = r
				}
				if !strings.Contains(string(layout), fmt.Sprintf("%08x:%08x %s\n", uint64(r.Start), uint64(r.End()), r.Name)) {
					t.Errorf("spi.layout lacks region %s:\n%s", r.Name, layout)
				}
			}

			// The firmware sits at the top of the firmware region (a full chip: is the chip).
			base, got := in, chip
			if b.Outputs.SPI.Descriptor != boardcfg.DescriptorImage {
				got = chip[uint64(fw.End())+1-uint64(len(in)) : uint64(fw.End())+1]
			} else {
				for _, r := range regions {
					if r.Preserve && !bytes.Equal(chip[r.Start:r.End()+1], in[r.Start:r.End()+1]) {
						t.Errorf("region %s (%s) of the full-chip image changed", r.Name, r.Kind)
					}
				}
				if !strings.Contains(string(layout), "00000000:00000fff fd\n") || !strings.Contains(string(layout), "00001000:007fffff me\n") ||
					!strings.Contains(string(layout), "00800000:00801fff gbe\n") || !strings.Contains(string(layout), "00802000:01ffffff bios\n") {
					t.Errorf("spi.layout is not the descriptor's:\n%s", layout)
				}
				// Only what fwbuild put into the BIOS region counts as changed below.
				base = append([]byte(nil), in...)
				for _, r := range b.Outputs.SPI.Regions {
					if r.Payload || r.Guests {
						copy(base[r.Start:r.End()+1], chip[r.Start:r.End()+1])
					}
				}
			}
			lo, hi := changedSpan(base, got)
			if lo < 0 {
				t.Fatal("the firmware did not change: no launcher inserted")
			}
			fit, err := image.Fit(context.Background(), image.FitSpec{Firmware: in})
			if err != nil {
				t.Fatal(err)
			}
			offset := uint64(0)
			if b.Outputs.SPI.Descriptor == boardcfg.DescriptorImage {
				offset = uint64(fw.Start)
			}
			inside := ""
			for _, v := range fit.Volumes {
				if v.TopLevel && offset+v.Offset <= uint64(lo) && uint64(hi) <= offset+v.Offset+v.Length {
					inside = v.Name
				}
			}
			if inside == "" {
				t.Errorf("bytes changed at %#x-%#x, outside any one top-level volume", lo, hi)
			}

			// UEFIExtract parses the chip and finds the launcher.
			p := filepath.Join(t.TempDir(), "spi.bin")
			os.WriteFile(p, chip, 0o644)
			cmd := exec.Command(uefiextract, p, "report")
			if o, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("UEFIExtract: %v: %s", err, o)
			}
			report, err := os.ReadFile(p + ".report.txt")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(report), launcher.FileGUID) {
				t.Errorf("UEFIExtract's report does not list the launcher %s", launcher.FileGUID)
			}

			// flash-map.svg: an SVG document naming every region.
			svg, err := os.ReadFile(filepath.Join(out, "flash-map.svg"))
			if err != nil {
				t.Fatal(err)
			}
			var doc struct {
				XMLName xml.Name
			}
			if err := xml.Unmarshal(svg, &doc); err != nil || doc.XMLName.Local != "svg" {
				t.Errorf("flash-map.svg: %v, root %q", err, doc.XMLName.Local)
			}
			for _, r := range regions {
				if !bytes.Contains(svg, []byte(">"+r.Name+"<")) && !bytes.Contains(svg, []byte(">"+r.Name+" ")) {
					t.Errorf("flash-map.svg does not show region %s", r.Name)
				}
			}

			if b.Outputs.SPI.Descriptor == boardcfg.DescriptorImage {
				flashOnlyBIOS(t, boards, cache, name, out, chip, regions)
			}

			// fwbuild fit on the same firmware, text and JSON: the launcher fits where the build put it.
			var ft, fe bytes.Buffer
			if code := run(context.Background(), []string{"fit", files[name]}, &ft, &fe); code != 0 || !strings.Contains(ft.String(), "fits in DXE volume") {
				t.Errorf("fit %s: exit %d\n%s%s", files[name], code, ft.String(), fe.String())
			}
			ft.Reset()
			var rep image.FitReport
			if code := run(context.Background(), []string{"--json", "fit", files[name]}, &ft, &fe); code != 0 {
				t.Errorf("--json fit: exit %d: %s", code, fe.String())
			} else if err := json.Unmarshal(ft.Bytes(), &rep); err != nil || !rep.Launcher.Fits || !strings.HasSuffix(rep.Launcher.Where, rep.DXEVolume) {
				t.Errorf("--json fit: %v: %+v", err, rep.Launcher)
			}
		})
	}
}

// flashOnlyBIOS flashes the built full-chip image into an emulated chip
// that holds other data everywhere: only the BIOS region may change.
func flashOnlyBIOS(t *testing.T, boards, cache, board, out string, img []byte, regions []boardcfg.Region) {
	t.Helper()
	chip := filepath.Join(t.TempDir(), "chip.bin")
	before := noise(3, len(img))
	os.WriteFile(chip, before, 0o644)
	var o, e bytes.Buffer
	code := run(context.Background(), []string{"--boards", boards, "--cache", cache, "flash", "spi", "--board", board, "--out", out,
		"--programmer", fmt.Sprintf("dummy:emulate=VARIABLE_SIZE,size=%d,image=%s", len(img), chip)}, &o, &e)
	if code != 0 {
		t.Fatalf("flash spi: exit %d\n%s%s", code, o.String(), e.String())
	}
	now, _ := os.ReadFile(chip)
	for _, r := range regions {
		span := func(b []byte) []byte { return b[r.Start : r.End()+1] }
		switch {
		case r.Firmware && !bytes.Equal(span(now), span(img)):
			t.Errorf("BIOS region %s is not the image's after flashing", r.Name)
		case !r.Firmware && r.Preserve && !bytes.Equal(span(now), span(before)):
			t.Errorf("region %s (%s) was written", r.Name, r.Kind)
		}
	}
	if !strings.Contains(o.String()+e.String(), "wrote and verified bios") {
		t.Errorf("flash output does not say it wrote bios:\n%s%s", o.String(), e.String())
	}
}

// A firmware image whose SHA-256 is not the pinned one, or that is missing,
// is refused by check and build alike, naming the file and both hashes (or
// the file), and the build writes nothing.
func TestVendorFirmwareWrongHash(t *testing.T) {
	boards, files := vendorBoards(t)
	p := filepath.Join(boards, "vendor-vbox.yaml")
	text, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	const right = "c3bacb98568a4647e20aa897788e45ce50691010da9609d26eaabbee9d617569"
	const wrong = "c3bacb98568a4647e20aa897788e45ce50691010da9609d26eaabbee9d617560"
	os.WriteFile(p, bytes.Replace(text, []byte(right), []byte(wrong), 1), 0o644)
	cache := t.TempDir()
	for _, cmd := range [][]string{{"check"}, {"build", "--out", filepath.Join(t.TempDir(), "out")}} {
		var o, e bytes.Buffer
		args := append([]string{"--boards", boards, "--cache", cache, cmd[0], "--board", "vendor-vbox"}, cmd[1:]...)
		code := run(context.Background(), args, &o, &e)
		msg := e.String()
		if code != 1 || !strings.Contains(msg, "outputs.spi.firmware: "+files["vendor-vbox"]) || !strings.Contains(msg, "SHA-256 is "+right) || !strings.Contains(msg, "the profile pins "+wrong) {
			t.Errorf("%s: exit %d, stderr:\n%s", cmd[0], code, msg)
		}
		if len(cmd) > 1 {
			if _, err := os.Stat(cmd[2]); err == nil {
				t.Errorf("a refused build created %s", cmd[2])
			}
		}
	}
	os.Remove(files["vendor-vbox"])
	os.WriteFile(p, text, 0o644)
	var o, e bytes.Buffer
	if code := run(context.Background(), []string{"--boards", boards, "--cache", cache, "check", "--board", "vendor-vbox"}, &o, &e); code != 1 ||
		!strings.Contains(e.String(), "vendor/vbox.fd") || !strings.Contains(e.String(), "does not exist") {
		t.Errorf("missing firmware: exit %d, stderr:\n%s", code, e.String())
	}
}
