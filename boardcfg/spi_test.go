package boardcfg

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// validSPI is outputs.spi of valid (load_test.go), which withSPI replaces.
const validSPI = `  spi:
    firmware: ovmf:code
    chip_size: 16MiB
    payload_file: 7C04A583-9E3E-4F1C-AD65-E05268D0B4D1
    regions:
      - {name: vpd, start: 0, size: 64KiB, preserve: true}
      - {name: bios, start: 0x10000, size: 0xFF0000, firmware: true}
`

// launcherSPI is the launcher layout of testdata/qemu-q35-launcher.yaml.
// Its regions are lines 36-41 of the profile withSPI makes.
const launcherSPI = `  spi:
    firmware: ovmf:code
    chip_size: 32MiB
    descriptor: generate
    mapped: 32MiB
    payload: region
    regions:
      - {name: fd, kind: descriptor, start: 0x0, size: 4KiB, preserve: true}
      - {name: vpd, kind: pd, start: 0x1000, size: 64KiB, preserve: true}
      - {name: me, kind: me, start: 0x11000, size: 0x3EF000, preserve: true}
      - {name: bios, kind: bios, firmware: true, start: 0x400000, size: 0x1C00000}
      - {name: guests, guests: true, start: 0x400000, size: 0x3F0000}
      - {name: payload, payload: true, start: 0x1000000, size: 0xC84000}
`

// withSPI is valid with spi as its outputs.spi.
func withSPI(t *testing.T, spi string) string {
	t.Helper()
	if !strings.Contains(valid, validSPI) {
		t.Fatal("test bug: validSPI is not valid's outputs.spi")
	}
	return strings.Replace(valid, validSPI, spi, 1)
}

func loadText(t *testing.T, text string) (*Board, error) {
	t.Helper()
	dir := t.TempDir()
	return Load(writeProfile(t, dir, "t1.yaml", text), dir)
}

func TestLauncherLayout(t *testing.T) {
	b, err := loadText(t, withSPI(t, launcherSPI))
	if err != nil {
		t.Fatal(err)
	}
	s := b.Outputs.SPI
	if s.Descriptor != DescriptorGenerate || s.Payload != PayloadRegion || s.Mapped != 32<<20 || s.MappedSize() != 32<<20 {
		t.Errorf("spi = %+v", s)
	}
	if s.Firmware.Ref != "ovmf:code" || s.Firmware.IsFile() {
		t.Errorf("firmware = %+v", s.Firmware)
	}
	p, ok := s.PayloadRegion()
	if !ok || p.Name != "payload" || p.Kind != "" {
		t.Errorf("payload region = %+v, %v", p, ok)
	}
	if a, err := s.CPUAddress(p); err != nil || a != 0xFF000000 {
		t.Errorf("CPUAddress(payload) = %#x, %v", a, err)
	}
	if r := s.Regions[0]; r.Kind != KindDescriptor || !r.Preserve {
		t.Errorf("fd = %+v", r)
	}
	fw, _ := s.FirmwareRegion()
	g, _ := s.GuestsRegion()
	if !fw.Contains(g) || !fw.Contains(p) || g.Contains(p) || !g.Nests() || fw.Nests() {
		t.Errorf("nesting: bios %+v guests %+v payload %+v", fw, g, p)
	}
}

// The layout the integrator plans for qemu-q35, as a board extending
// today's: it must load, and a legacy base's payload_file and grow_volume
// can be cleared.
func TestLauncherSample(t *testing.T) {
	b, err := Load("testdata/qemu-q35-launcher.yaml", "../boards")
	if err != nil {
		t.Fatal(err)
	}
	s := b.Outputs.SPI
	if s.PayloadFile != "" || s.GrowVolume != "" || s.ChipSize != 32<<20 || len(s.Regions) != 6 || s.Payload != PayloadRegion {
		t.Errorf("spi = %+v", s)
	}
	g, _ := s.GuestsRegion()
	if a, err := s.CPUAddress(g); err != nil || a != 0xFE400000 {
		t.Errorf("CPUAddress(guests) = %#x, %v", a, err)
	}
}

func TestLauncherRules(t *testing.T) {
	const (
		fd      = "{name: fd, kind: descriptor, start: 0x0, size: 4KiB, preserve: true}"
		vpd     = "{name: vpd, kind: pd, start: 0x1000, size: 64KiB, preserve: true}"
		me      = "{name: me, kind: me, start: 0x11000, size: 0x3EF000, preserve: true}"
		bios    = "{name: bios, kind: bios, firmware: true, start: 0x400000, size: 0x1C00000}"
		guests  = "{name: guests, guests: true, start: 0x400000, size: 0x3F0000}"
		payload = "{name: payload, payload: true, start: 0x1000000, size: 0xC84000}"
		shell   = "7C04A583-9E3E-4F1C-AD65-E05268D0B4D1"
	)
	cases := []struct {
		name, base, old, new string
		want                 []string // each must appear in the error
	}{
		{"unknown kind", launcherSPI, "kind: pd", "kind: flash",
			[]string{`t1.yaml:37:27: outputs.spi.regions[1].kind: "flash" is not an Intel flash descriptor region: want one of descriptor, bios, me, gbe, pd, ec`}},
		{"bad descriptor", launcherSPI, "descriptor: generate", "descriptor: yes",
			[]string{`t1.yaml:32:17: outputs.spi.descriptor: "yes": want generate`}},
		{"descriptor region too big", launcherSPI, fd, "{name: fd, kind: descriptor, start: 0x0, size: 8KiB, preserve: true}",
			[]string{`t1.yaml:36:9: outputs.spi.regions[0]: descriptor region "fd" is at 0x0, 8KiB: it must start at 0 and be 4KiB`}},
		{"descriptor region not at 0", launcherSPI, fd + "\n      - " + vpd, "{name: vpd, kind: pd, start: 0x0, size: 64KiB, preserve: true}\n      - {name: fd, kind: descriptor, start: 0x10000, size: 4KiB, preserve: true}",
			[]string{`outputs.spi.regions[1]: descriptor region "fd" is at 0x10000, 4KiB: it must start at 0`}},
		{"no descriptor region", launcherSPI, "name: fd, kind: descriptor,", "name: fd,",
			[]string{"outputs.spi.regions: descriptor: generate needs a region of kind descriptor (start 0, size 4KiB)"}},
		{"no bios kind", launcherSPI, "kind: bios, ", "",
			[]string{"outputs.spi.regions: descriptor: generate needs a region of kind bios", `outputs.spi.regions[3].kind: the firmware region "bios" is kind "": with descriptor: generate it is the BIOS region, give it kind: bios`}},
		{"kind twice", launcherSPI, "kind: pd", "kind: me",
			[]string{`t1.yaml:38:26: outputs.spi.regions[2].kind: region "me" is kind me, as is region "vpd": a descriptor has one me region`}},
		{"kinded regions overlap", launcherSPI, "guests: true,", "guests: true, kind: gbe,",
			[]string{`outputs.spi.regions[4]: region "guests" (0x400000-0x7effff) overlaps region "bios" (0x400000-0x1ffffff): regions of the descriptor (those with a kind) must be disjoint`,
				`outputs.spi.regions[4]: region "guests" (kind gbe) lies within the BIOS region 0x400000-0x1ffffff`}},
		{"bios not at the chip's end", launcherSPI, "chip_size: 32MiB", "chip_size: 64MiB",
			[]string{"outputs.spi.regions: the bios regions end at 0x2000000, not at the end of the 64MiB chip: the chipset maps the BIOS region's top at 4 GiB"}},
		{"kinds without descriptor: generate", launcherSPI, "    descriptor: generate\n", "    descriptor: \"\"\n", nil},

		{"bad payload", launcherSPI, "payload: region", "payload: flash",
			[]string{`t1.yaml:34:14: outputs.spi.payload: "flash": want region (in the region marked payload: true), volume`}},
		{"launcher with payload_file", launcherSPI, "    payload: region\n", "    payload: region\n    payload_file: " + shell + "\n",
			[]string{"t1.yaml:35:19: outputs.spi.payload_file: payload: region: the launcher does not replace a file: remove payload_file"}},
		{"launcher with grow_volume", launcherSPI, "    payload: region\n", "    payload: region\n    grow_volume: 48DB5E17-707C-472D-91CD-1613E7EF51B0\n",
			[]string{"outputs.spi.grow_volume: payload: region: the launcher does not replace a file"}},
		{"payload region missing", launcherSPI, "      - " + payload + "\n", "",
			[]string{"outputs.spi.regions: payload: region needs exactly one region marked payload: true (found 0)"}},
		{"two payload regions", launcherSPI, payload, payload + "\n      - {name: p2, payload: true, start: 0x1C84000, size: 0x1000}",
			[]string{"payload: region needs exactly one region marked payload: true (found 2)"}},
		{"payload region, payload volume", launcherSPI, "payload: region", "payload: volume",
			[]string{`t1.yaml:41:34: outputs.spi.regions[5].payload: region "payload" is marked payload: true, but outputs.spi.payload is "volume": set payload: region`}},
		{"payload region, legacy payload", validSPI, "      - {name: bios,", "      - {name: p, payload: true, start: 0xF00000, size: 0x10000}\n      - {name: bios,",
			[]string{`outputs.spi.regions[1].payload: region "p" is marked payload: true, but outputs.spi.payload is "": set payload: region`}},
		{"payload region also guests", launcherSPI, "payload: true,", "payload: true, guests: true,",
			[]string{`outputs.spi.regions[5].payload: region "payload" holds the flash payload: it cannot also be preserve, firmware, fill or guests`}},
		{"payload region below Intel's window", launcherSPI, payload, "{name: payload, payload: true, start: 0xF00000, size: 0xC84000}",
			[]string{`t1.yaml:41:47: outputs.spi.regions[5].start: payload region "payload" starts 0x1100000 below the chip's end: the launcher reads it through the memory-mapped window, which on Intel chipsets is the top 16MiB of the BIOS region (outputs.spi.mapped does not widen it)`}},
		{"payload volume", launcherSPI, "payload: region", "payload: volume", nil}, // (with the region's mark removed below)
		{"legacy without payload_file", validSPI, "    payload_file: " + shell + "\n", "",
			[]string{"outputs.spi.payload_file: required field is missing: give the GUID of the FFS file whose PE32 the payload replaces, or set outputs.spi.payload to region or volume"}},

		{"guests past the default window", launcherSPI, "    mapped: 32MiB\n", "",
			[]string{`outputs.spi.regions[4].start: guests region "guests" starts 0x1c00000 below the chip's end: only the top 16MiB of the chip is memory-mapped, where ctld reads it: move the region up, or set outputs.spi.mapped`}},
		{"guests past a smaller window", validSPI, "    chip_size: 16MiB\n", "    chip_size: 16MiB\n    mapped: 8MiB\n    grow_volume: \"\"\n",
			nil}, // no guests region: fine
		{"mapped past the chip", launcherSPI, "mapped: 32MiB", "mapped: 64MiB",
			[]string{"t1.yaml:33:13: outputs.spi.mapped: 64MiB is more than the 32MiB chip: at most the whole chip is mapped"}},
		{"mapped unaligned", launcherSPI, "mapped: 32MiB", "mapped: 0x1000800",
			[]string{"outputs.spi.mapped: 16386KiB is not a multiple of 4KiB"}},

		{"nested guests in legacy layout", validSPI, "      - {name: bios,", "      - {name: guests, guests: true, start: 0x800000, size: 0x100000}\n      - {name: bios,", nil},
		{"guests partly in the firmware region", validSPI, "{name: bios, start: 0x10000, size: 0xFF0000, firmware: true}",
			"{name: bios, start: 0x10000, size: 0x800000, firmware: true}\n      - {name: guests, guests: true, start: 0x800000, size: 0x100000}",
			[]string{`outputs.spi.regions[2]: region "guests" (0x800000-0x8fffff) overlaps region "bios" (0x10000-0x80ffff): regions may not share bytes, except that a guests, payload or unit region may lie entirely inside the firmware region`}},
		{"other region inside the firmware region", validSPI, "      - {name: bios,", "      - {name: bios,",
			nil}, // placeholder, replaced below
		{"nested regions overlap", launcherSPI, guests, "{name: guests, guests: true, start: 0x400000, size: 0xD00000}",
			[]string{`outputs.spi.regions[5]: region "payload" (0x1000000-0x1c83fff) overlaps region "guests" (0x400000-0x10fffff): the guests, payload and unit regions inside the firmware region must not overlap each other`}},
		{"unit region", launcherSPI, payload, payload + "\n      - {name: unit, unit: true, start: 0x7F0000, size: 64KiB}", nil},
		{"unit region too big", launcherSPI, payload, payload + "\n      - {name: unit, unit: true, start: 0x7E0000, size: 128KiB}",
			[]string{`outputs.spi.regions[6].size: unit region "unit" is 128KiB: give it 4KiB to 64KiB`}},
		{"unit region also preserve", launcherSPI, payload, payload + "\n      - {name: unit, unit: true, preserve: true, start: 0x7F0000, size: 64KiB}",
			[]string{`outputs.spi.regions[6].unit: region "unit" holds the unit's credential record: it cannot also be preserve, firmware, fill, guests or payload`}},
		{"unit region outside the firmware region", launcherSPI, "size: 0x3EF000, preserve: true}", "size: 0x3DF000, preserve: true}\n      - {name: unit, unit: true, start: 0x3F0000, size: 64KiB}",
			[]string{`outputs.spi.regions[3].start: unit region "unit" must lie inside the firmware region (the only region the CPU sees)`}},
		{"unit region overlaps guests", launcherSPI, payload, payload + "\n      - {name: unit, unit: true, start: 0x7E0000, size: 64KiB}",
			[]string{`the guests, payload and unit regions inside the firmware region must not overlap each other`}},
		{"two unit regions", launcherSPI, payload, payload + "\n      - {name: unit, unit: true, start: 0x7F0000, size: 32KiB}\n      - {name: unit2, unit: true, start: 0x7F8000, size: 32KiB}",
			[]string{`outputs.spi.regions: at most one region may be marked unit: true (found 2)`}},
		{"nested with grow_volume", validSPI, "    regions:\n", "    grow_volume: 48DB5E17-707C-472D-91CD-1613E7EF51B0\n    regions:\n      - {name: guests, guests: true, start: 0x800000, size: 0x100000}\n",
			[]string{`outputs.spi.regions[0]: region "guests" lies inside the firmware region "bios", which grow_volume fills entirely`}},

		{"remove", validSPI, "    regions:\n", "    remove: [Shell, 2d2358b4-e96c-484d-b2dd-7c2edfc7d56f, \"Platform Dxe\"]\n    regions:\n", nil},
		{"remove bad GUID", validSPI, "    regions:\n", "    remove: [2D2358B4-E96C-484D-B2DD]\n    regions:\n",
			[]string{`t1.yaml:33:14: outputs.spi.remove[0]: "2D2358B4-E96C-484D-B2DD" looks like a file GUID but is not one: want XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX`}},
		{"remove twice", validSPI, "    regions:\n", "    remove: [Shell, Shell]\n    regions:\n",
			[]string{`outputs.spi.remove[1]: "Shell" is already listed at outputs.spi.remove[0]: list each file once`}},
		{"remove GUID twice", validSPI, "    regions:\n", "    remove: [2D2358B4-E96C-484D-B2DD-7C2EDFC7D56F, 2d2358b4-e96c-484d-b2dd-7c2edfc7d56f]\n    regions:\n",
			[]string{`outputs.spi.remove[1]: "2d2358b4-e96c-484d-b2dd-7c2edfc7d56f" is already listed`}},
		{"remove non-ASCII", validSPI, "    regions:\n", "    remove: [Shéll]\n    regions:\n",
			[]string{`outputs.spi.remove[0]: UI name "Shéll" has byte 0xc3 at 2: only printable ASCII`}},
		{"remove empty", validSPI, "    regions:\n", "    remove: [\"\"]\n    regions:\n",
			[]string{"outputs.spi.remove[0]: empty name: give a file GUID or UI name"}},
		{"remove too long", validSPI, "    regions:\n", "    remove: [" + strings.Repeat("x", 129) + "]\n    regions:\n",
			[]string{"outputs.spi.remove[0]: UI name is 129 bytes long: at most 128"}},
		{"remove the payload slot", validSPI, "    regions:\n", "    remove: [" + strings.ToLower(shell) + "]\n    regions:\n",
			[]string{`outputs.spi.remove[0]: "7c04a583-9e3e-4f1c-ad65-e05268d0b4d1" is payload_file, whose PE32 the payload replaces`}},

		{"firmware list", validSPI, "firmware: ovmf:code", "firmware: [ovmf, code]",
			[]string{"t1.yaml:30:15: outputs.spi.firmware: want component:role or a mapping {path, sha256}, got a list"}},
		{"firmware empty", validSPI, "firmware: ovmf:code", "firmware:",
			[]string{"outputs.spi.firmware: empty value; give component:role (e.g. ovmf:code) or {path: FILE, sha256: HEX}"}},
		{"firmware empty mapping", validSPI, "firmware: ovmf:code", "firmware: {}",
			[]string{"t1.yaml:30:15: outputs.spi.firmware: empty mapping; give component:role"}},
		{"firmware path without sha256", validSPI, "firmware: ovmf:code", "firmware: {path: fw.fd}",
			[]string{"outputs.spi.firmware: path without sha256: add sha256: HEX"}},
		{"firmware sha256 without path", validSPI, "firmware: ovmf:code", "firmware: {sha256: " + strings.Repeat("ab", 32) + "}",
			[]string{"outputs.spi.firmware: sha256 without path: add path: FILE"}},
		{"firmware unknown key", validSPI, "firmware: ovmf:code", "firmware: {path: fw.fd, sha256: " + strings.Repeat("ab", 32) + ", ref: ovmf:code}",
			[]string{"outputs.spi.firmware.ref: unknown field (known: path, sha256)"}},
		{"firmware bad sha256", validSPI, "firmware: ovmf:code", "firmware: {path: fw.fd, sha256: abc}",
			[]string{`outputs.spi.firmware.sha256: "abc" is not a SHA-256`}},
		{"firmware path twice", validSPI, "firmware: ovmf:code", "firmware: {path: a, path: b, sha256: " + strings.Repeat("ab", 32) + "}",
			[]string{"outputs.spi.firmware.path: key appears twice"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			old, new := c.old, c.new
			spi := c.base
			switch c.name {
			case "other region inside the firmware region":
				old, new = "    regions:\n", "    regions:\n      - {name: vars, start: 0x20000, size: 0x10000}\n"
				c.want = []string{`region "vars" (0x20000-0x2ffff) overlaps region "bios" (0x10000-0xffffff)`}
			case "payload volume":
				spi = strings.Replace(spi, "      - "+payload+"\n", "", 1)
			}
			if !strings.Contains(spi, old) {
				t.Fatalf("test bug: %q not in the base", old)
			}
			_, err := loadText(t, withSPI(t, strings.Replace(spi, old, new, 1)))
			if c.want == nil {
				if err != nil {
					t.Fatalf("want no error, got %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Load succeeded, want %q", c.want)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n  %v\nwant it to contain\n  %s", err, w)
				}
			}
		})
	}
}

func TestRemoveCanonical(t *testing.T) {
	b, err := loadText(t, strings.Replace(valid, "    regions:\n", "    remove: [Shell, 2d2358b4-e96c-484d-b2dd-7c2edfc7d56f]\n    regions:\n", 1))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := b.Outputs.SPI.Remove, []string{"Shell", "2D2358B4-E96C-484D-B2DD-7C2EDFC7D56F"}; !slices.Equal(got, want) {
		t.Errorf("remove = %q, want %q", got, want)
	}
}

func TestCPUAddress(t *testing.T) {
	s16 := &SPI{ChipSize: 16 << 20}
	s32 := &SPI{ChipSize: 32 << 20}
	s32m := &SPI{ChipSize: 32 << 20, Mapped: 32 << 20}
	s8 := &SPI{ChipSize: 8 << 20}
	for _, c := range []struct {
		name string
		s    *SPI
		r    Region
		want uint64 // 0: an error
	}{
		{"16MiB chip, bios", s16, Region{Name: "bios", Start: 0x10000, Size: 0xFF0000}, 0xFF010000},
		{"16MiB chip, start", s16, Region{Name: "vpd", Start: 0, Size: 0x10000}, 0xFF000000},
		{"16MiB chip, last page", s16, Region{Name: "top", Start: 0xFFF000, Size: 0x1000}, 0xFFFFF000},
		{"16MiB chip, past the end", s16, Region{Name: "over", Start: 0xFFF000, Size: 0x2000}, 0},
		{"32MiB chip, top 16MiB", s32, Region{Name: "payload", Start: 0x1000000, Size: 0xC84000}, 0xFF000000},
		{"32MiB chip, below the default window", s32, Region{Name: "guests", Start: 0x400000, Size: 0x3F0000}, 0},
		{"32MiB chip, straddling the window", s32, Region{Name: "x", Start: 0xFFF000, Size: 0x2000}, 0},
		{"32MiB chip mapped whole, guests", s32m, Region{Name: "guests", Start: 0x400000, Size: 0x3F0000}, 0xFE400000},
		{"32MiB chip mapped whole, start", s32m, Region{Name: "fd", Start: 0, Size: 0x1000}, 0xFE000000},
		{"8MiB chip, default window is the chip", s8, Region{Name: "vpd", Start: 0, Size: 0x10000}, 0xFF800000},
		{"huge region", s16, Region{Name: "huge", Start: 0x1000, Size: ^Size(0)}, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.s.CPUAddress(c.r)
			if c.want == 0 {
				if err == nil || !strings.Contains(err.Error(), "is not inside the memory-mapped top") || !strings.Contains(err.Error(), "outputs.spi.mapped") {
					t.Fatalf("CPUAddress = %#x, %v; want an error", got, err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("CPUAddress = %#x, %v; want %#x", got, err, c.want)
			}
			if m := c.s.MappedAddress(uint64(c.r.Start)); m != got {
				t.Errorf("MappedAddress = %#x, CPUAddress %#x", m, got)
			}
		})
	}
	if s8.MappedSize() != 8<<20 || s32.MappedSize() != 16<<20 || s32m.MappedSize() != 32<<20 {
		t.Errorf("MappedSize = %v %v %v", s8.MappedSize(), s32.MappedSize(), s32m.MappedSize())
	}
}

// fwProfile is valid with its base firmware given as a file.
func fwProfile(path, sum string) string {
	return strings.Replace(valid, "    firmware: ovmf:code\n", "    firmware:\n      path: "+path+"\n      sha256: "+sum+"\n", 1)
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestFirmwareFile(t *testing.T) {
	image := []byte("vendor firmware image")
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "vendor"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "vendor", "fw.fd"), image, 0o644); err != nil {
		t.Fatal(err)
	}
	real := filepath.Join(realDir(dir), "vendor", "fw.fd")

	t.Run("right hash", func(t *testing.T) {
		b, err := Load(writeProfile(t, dir, "t1.yaml", fwProfile("vendor/fw.fd", strings.ToUpper(sha(image)))), dir)
		if err != nil {
			t.Fatal(err)
		}
		fw := b.Outputs.SPI.Firmware
		if fw.Ref != "" || fw.Path != "vendor/fw.fd" || string(fw.SHA256) != sha(image) || fw.File != real || !fw.IsFile() || fw.String() != "vendor/fw.fd" {
			t.Errorf("firmware = %+v", fw)
		}
		if data, err := fw.Read(); err != nil || string(data) != string(image) {
			t.Errorf("Read = %q, %v", data, err)
		}
		if err := b.CheckFiles(); err != nil {
			t.Errorf("CheckFiles = %v", err)
		}
	})
	t.Run("wrong hash", func(t *testing.T) {
		wrong := strings.Repeat("ab", 32)
		b, err := Load(writeProfile(t, dir, "t1.yaml", fwProfile("vendor/fw.fd", wrong)), dir)
		if err != nil {
			t.Fatalf("Load hashes the image (the build's work): %v", err)
		}
		want := "outputs.spi.firmware: " + real + ": SHA-256 is " + sha(image) + ", the profile pins " + wrong + " (" + filepath.Join(dir, "t1.yaml") + ":32:15): this is not the image the profile names"
		if _, err := b.Outputs.SPI.Firmware.Read(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Read error\n  %v\nwant\n  %s", err, want)
		}
		if err := b.CheckFiles(); err == nil || !strings.Contains(err.Error(), "t1.yaml:31:7: "+want) {
			t.Errorf("CheckFiles error\n  %v\nwant\n  t1.yaml:31:7: %s", err, want)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		_, err := Load(writeProfile(t, dir, "t1.yaml", fwProfile("vendor/none.fd", sha(image))), dir)
		if want := `t1.yaml:31:13: outputs.spi.firmware.path: firmware image "vendor/none.fd" (` + filepath.Join(dir, "vendor/none.fd") + ") does not exist"; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error\n  %v\nwant\n  %s", err, want)
		}
	})
	t.Run("removed after load", func(t *testing.T) {
		tmp := filepath.Join(dir, "vendor", "tmp.fd")
		os.WriteFile(tmp, image, 0o644)
		b, err := Load(writeProfile(t, dir, "t1.yaml", fwProfile("vendor/tmp.fd", sha(image))), dir)
		if err != nil {
			t.Fatal(err)
		}
		os.Remove(tmp)
		want := "outputs.spi.firmware: " + filepath.Join(realDir(dir), "vendor", "tmp.fd") + " cannot be read"
		if _, err := b.Outputs.SPI.Firmware.Read(); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "the profile pins SHA-256 "+sha(image)) {
			t.Errorf("Read error\n  %v\nwant\n  %s...the profile pins SHA-256 %s", err, want, sha(image))
		}
		if err := b.CheckFiles(); err == nil || !strings.Contains(err.Error(), "t1.yaml:31:7: "+want) {
			t.Errorf("CheckFiles error %v", err)
		}
	})
	t.Run("symlink out of the tree", func(t *testing.T) {
		outside := filepath.Join(t.TempDir(), "host.fd")
		os.WriteFile(outside, image, 0o644)
		if err := os.Symlink(outside, filepath.Join(dir, "vendor", "link.fd")); err != nil {
			t.Fatal(err)
		}
		_, err := Load(writeProfile(t, dir, "t1.yaml", fwProfile("vendor/link.fd", sha(image))), dir)
		if want := `outputs.spi.firmware.path: firmware image "vendor/link.fd" resolves to ` + realDir(filepath.Dir(outside)) + "/host.fd, outside " + realDir(dir) + ": put the file there (symlinks count where they point)"; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error\n  %v\nwant\n  %s", err, want)
		}
	})
	t.Run("dot-dot out of the tree", func(t *testing.T) {
		_, err := Load(writeProfile(t, dir, "t1.yaml", fwProfile("../../../etc/passwd", sha(image))), dir)
		if err == nil || !strings.Contains(err.Error(), "outputs.spi.firmware.path: firmware image \"../../../etc/passwd\"") {
			t.Errorf("error = %v", err)
		}
	})
	t.Run("directory", func(t *testing.T) {
		_, err := Load(writeProfile(t, dir, "t1.yaml", fwProfile("vendor", sha(image))), dir)
		if err == nil || !strings.Contains(err.Error(), `outputs.spi.firmware.path: firmware image "vendor" is not a regular file`) {
			t.Errorf("error = %v", err)
		}
	})
	t.Run("too large", func(t *testing.T) {
		big := filepath.Join(dir, "vendor", "big.fd")
		f, err := os.Create(big)
		if err != nil {
			t.Fatal(err)
		}
		f.Truncate(MaxFirmwareFile + 1) // sparse: no disk used
		f.Close()
		_, err = Load(writeProfile(t, dir, "t1.yaml", fwProfile("vendor/big.fd", sha(image))), dir)
		if err == nil || !strings.Contains(err.Error(), `outputs.spi.firmware.path: firmware image "vendor/big.fd" is 268435457 bytes: at most 268435456`) {
			t.Errorf("error = %v", err)
		}
	})
	t.Run("component form", func(t *testing.T) {
		b, err := Load(writeProfile(t, dir, "t1.yaml", valid), dir)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Outputs.SPI.Firmware.Read(); err == nil || !strings.Contains(err.Error(), `outputs.spi.firmware: "ovmf:code" is a component file`) {
			t.Errorf("Read = %v", err)
		}
		if err := b.CheckFiles(); err != nil {
			t.Errorf("CheckFiles = %v", err)
		}
	})
	t.Run("both set in Go", func(t *testing.T) {
		b, err := Load(writeProfile(t, dir, "t1.yaml", valid), dir)
		if err != nil {
			t.Fatal(err)
		}
		b.Outputs.SPI.Firmware.Path = "x.fd"
		if err := b.validate(); err == nil || !strings.Contains(err.Error(), "outputs.spi.firmware: give either component:role or {path, sha256}, not both") {
			t.Errorf("validate = %v", err)
		}
	})
}

// Under extends, outputs.spi.firmware is replaced whole: a file path
// resolves against the profile that gives it and never inherits the base's
// hash; the other new fields merge like every SPI key.
func TestExtendsFirmware(t *testing.T) {
	image := []byte("vendor firmware image")
	baseDir, childDir := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(baseDir, "fw.fd"), image, 0o644)
	os.WriteFile(filepath.Join(childDir, "fw.fd"), append(image, '2'), 0o644)
	base := writeProfile(t, baseDir, "t1.yaml", strings.Replace(fwProfile("fw.fd", sha(image)), "    chip_size: 16MiB\n", "    chip_size: 16MiB\n    remove: [Shell]\n", 1))

	load := func(text string) (*Board, error) {
		return Load(writeProfile(t, childDir, "child.yaml", "extends: "+base+"\nname: child\n"+text), baseDir)
	}
	b, err := load("outputs:\n  spi:\n    firmware: ovmf:code\n")
	if err != nil {
		t.Fatal(err)
	}
	if fw := b.Outputs.SPI.Firmware; fw.Ref != "ovmf:code" || fw.Path != "" || fw.SHA256 != "" || fw.File != "" {
		t.Errorf("component over file: %+v", fw)
	}
	if !slices.Equal(b.Outputs.SPI.Remove, []string{"Shell"}) {
		t.Errorf("remove not inherited: %q", b.Outputs.SPI.Remove)
	}
	b, err = load("outputs:\n  spi:\n    firmware: {path: fw.fd, sha256: " + sha(append(image, '2')) + "}\n    remove: [Setup]\n")
	if err != nil {
		t.Fatal(err)
	}
	if fw := b.Outputs.SPI.Firmware; fw.File != filepath.Join(realDir(childDir), "fw.fd") {
		t.Errorf("child's path resolved to %q, want the child's directory", fw.File)
	}
	if err := b.CheckFiles(); err != nil {
		t.Errorf("CheckFiles = %v", err)
	}
	if !slices.Equal(b.Outputs.SPI.Remove, []string{"Setup"}) {
		t.Errorf("remove not replaced: %q", b.Outputs.SPI.Remove)
	}
	if _, err = load("outputs:\n  spi:\n    firmware: {path: fw.fd}\n"); err == nil || !strings.Contains(err.Error(), "child.yaml:5:15: outputs.spi.firmware: path without sha256") {
		t.Errorf("a child's path inherited the base's hash: %v", err)
	}
	// A file over a component: the base's firmware key goes entirely.
	b, err = Load(writeProfile(t, childDir, "child2.yaml", "extends: "+filepath.Join(baseDir, "t1.yaml")+"\nname: child\n"), baseDir)
	if err != nil || b.Outputs.SPI.Firmware.File != filepath.Join(realDir(baseDir), "fw.fd") {
		t.Fatalf("inherited file: %+v, %v", b.Outputs.SPI, err)
	}

	// The launcher fields merge key by key like the others.
	writeProfile(t, baseDir, "launcher.yaml", withSPI(t, launcherSPI))
	b, err = Load(writeProfile(t, childDir, "l2.yaml", "extends: "+filepath.Join(baseDir, "launcher.yaml")+"\nname: l2\noutputs:\n  spi:\n    remove: [Shell]\n"), baseDir)
	if err != nil {
		t.Fatal(err)
	}
	if s := b.Outputs.SPI; s.Descriptor != DescriptorGenerate || s.Payload != PayloadRegion || s.Mapped != 32<<20 || len(s.Regions) != 6 || s.Regions[3].Kind != KindBIOS || !s.Regions[5].Payload {
		t.Errorf("launcher fields not inherited: %+v", s)
	}
	_, err = Load(writeProfile(t, childDir, "l3.yaml", "extends: "+filepath.Join(baseDir, "launcher.yaml")+"\nname: l3\noutputs:\n  spi:\n    payload: volume\n"), baseDir)
	if err == nil || !strings.Contains(err.Error(), `launcher.yaml:41:34: outputs.spi.regions[5].payload: region "payload" is marked payload: true, but outputs.spi.payload is "volume"`) {
		t.Errorf("err = %v", err)
	}
}

// What `fwbuild check` prints (the board as YAML) loads again to the same
// SPI output, in both firmware shapes; JSON keeps a component reference a
// string.
func TestFirmwareMarshal(t *testing.T) {
	image := []byte("vendor firmware image")
	for _, text := range []string{withSPI(t, launcherSPI), fwProfile("fw.fd", sha(image))} {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "fw.fd"), image, 0o644)
		b, err := Load(writeProfile(t, dir, "t1.yaml", text), dir)
		if err != nil {
			t.Fatal(err)
		}
		out, err := yaml.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		again, err := Load(writeProfile(t, dir, "again.yaml", string(out)), dir)
		if err != nil {
			t.Fatalf("printed board does not load: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(b.Outputs.SPI.Firmware.File, again.Outputs.SPI.Firmware.File) {
			t.Errorf("firmware file %q, again %q", b.Outputs.SPI.Firmware.File, again.Outputs.SPI.Firmware.File)
		}
		b.Outputs.SPI.Firmware.pin, again.Outputs.SPI.Firmware.pin = Loc{}, Loc{}
		if !reflect.DeepEqual(b.Outputs.SPI, again.Outputs.SPI) {
			t.Errorf("round trip:\n%+v\n%+v", b.Outputs.SPI, again.Outputs.SPI)
		}
		j, _ := json.Marshal(b.Outputs.SPI)
		if want := `"Firmware":"ovmf:code"`; b.Outputs.SPI.Firmware.Ref != "" && !strings.Contains(string(j), want) {
			t.Errorf("JSON %s, want %s", j, want)
		}
		if want := `"Firmware":{"Path":"fw.fd","SHA256":"` + sha(image) + `"}`; b.Outputs.SPI.Firmware.Path != "" && !strings.Contains(string(j), want) {
			t.Errorf("JSON %s, want %s", j, want)
		}
	}
}
