package boardcfg

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// valid is a small complete profile; cases below edit single lines of it, so
// their expected line numbers are easy to read off.
const valid = `name: t1
description: test board
arch: amd64
components:
  - name: xen
    package: xen-hypervisor-4.17-amd64
    version: "4.17"
    sha256: fc074298a677325306662eea382cc4503339b8e1f4db54b24702b0b07cf6741d
    files: {efi: boot/xen.efi, gz: boot/xen.gz}
  - name: ovmf
    package: ovmf
    version: "2022"
    sha256: e73d3d1a8799f7f6fc16b73501d913edcdd86237556fbff30693e747e6dc262e
    files: {code: usr/share/OVMF/OVMF_CODE_4M.fd}
hypervisor:
  xen: xen
  options: console=com1
  dom0:
    memory: 512MiB
    cmdline: console=hvc0
    kernel:
      path: vmlinuz
control_domain:
  compression: xz
  commands: [github.com/u-root/u-root/cmds/core/init]
outputs:
  usb:
    size: 64MiB
  spi:
    firmware: ovmf:code
    chip_size: 16MiB
    payload_file: 7C04A583-9E3E-4F1C-AD65-E05268D0B4D1
    regions:
      - {name: vpd, start: 0, size: 64KiB, preserve: true}
      - {name: bios, start: 0x10000, size: 0xFF0000, firmware: true}
qemu:
  machine: q35
  cpu: qemu64,+svm
  memory: 2GiB
`

// writeProfile writes a profile, and next to it the kernel valid's
// hypervisor.dom0.kernel.path names (a profile's files are checked at load).
func writeProfile(t *testing.T, dir, name, text string) string {
	t.Helper()
	if k := filepath.Join(dir, "vmlinuz"); !exists(k) {
		if err := os.WriteFile(k, []byte("kernel"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadValid(t *testing.T) {
	dir := t.TempDir()
	p := writeProfile(t, dir, "t1.yaml", valid)
	b, err := Load(p, dir)
	if err != nil {
		t.Fatal(err)
	}
	if b.Outputs.SPI.ChipSize != 16<<20 || b.Outputs.SPI.Regions[1].Start != 0x10000 || b.Hypervisor.Dom0.Memory != 512<<20 {
		t.Errorf("sizes decoded wrong: %+v", b.Outputs.SPI)
	}
	if r, _ := b.Outputs.SPI.FirmwareRegion(); r.Name != "bios" {
		t.Errorf("firmware region = %q", r.Name)
	}
}

func TestShippedBoards(t *testing.T) {
	names, err := List("../boards")
	if err != nil || len(names) == 0 {
		t.Fatalf("List(../boards) = %v, %v", names, err)
	}
	for _, n := range names {
		p, err := Resolve(n, "../boards")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Load(p, "../boards"); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
}

func TestBadProfiles(t *testing.T) {
	cases := []struct {
		name    string
		old     string // line of valid to replace
		new     string
		wantErr string // must appear in the error, file:line included
	}{
		{"unknown key", "arch: amd64", "arch: amd64\ncolour: red", "t1.yaml:4:1: colour: unknown field"},
		{"unknown nested key", "    cmdline: console=hvc0", "    cmdline: console=hvc0\n    vcpu: 2", "t1.yaml:21:5: hypervisor.dom0.vcpu: unknown field"},
		{"wrong type", "  commands: [github.com/u-root/u-root/cmds/core/init]", "  commands: init", "t1.yaml:25:13: control_domain.commands: want a list"},
		{"wrong type bool", "preserve: true}", "preserve: yes-please}", "t1.yaml:34:54: outputs.spi.regions[0].preserve: want true or false"},
		{"wrong type int", "  memory: 2GiB", "  memory: 2GiB\n  smp: two", "t1.yaml:40:8: qemu.smp: want a whole number"},
		{"bad size", "    chip_size: 16MiB", "    chip_size: 16MB", `t1.yaml:31:16: outputs.spi.chip_size: "16MB" is not a size`},
		{"bad hex size", "start: 0x10000,", "start: 0x1G000,", `t1.yaml:35:29: outputs.spi.regions[1].start: "0x1G000" is not a size`},
		{"bad guid", "    payload_file: 7C04A583-9E3E-4F1C-AD65-E05268D0B4D1", "    payload_file: 7C04A583-9E3E-4F1C-AD65", `t1.yaml:32:19: outputs.spi.payload_file: "7C04A583-9E3E-4F1C-AD65" is not a GUID`},
		{"bad sha", "    sha256: e73d3d1a8799f7f6fc16b73501d913edcdd86237556fbff30693e747e6dc262e", "    sha256: e73d", `t1.yaml:13:13: components[1].sha256: "e73d" is not a SHA-256`},
		{"overlap", "start: 0x10000, size: 0xFF0000", "start: 0x8000, size: 0xFF8000", `t1.yaml:35:9: outputs.spi.regions[1]: region "bios" (0x8000-0xffffff) overlaps region "vpd" (0x0-0xffff)`},
		{"region past chip", "size: 0xFF0000", "size: 0x1000000", `t1.yaml:35:44: outputs.spi.regions[1].size: region "bios" ends at 0x1010000, past the 16MiB chip`},
		{"missing required", "  cpu: qemu64,+svm\n", "", "t1.yaml:37:3: qemu.cpu: required field is missing"},
		{"missing top-level", "description: test board\n", "", "t1.yaml:1:1: description: required field is missing"},
		{"missing in list item", "    package: ovmf\n", "", "t1.yaml:10:5: components[1].package: required field is missing"},
		{"dangling reference", "  xen: xen", "  xen: xen-hv", `t1.yaml:16:8: hypervisor.xen: no component named "xen-hv"`},
		{"bad firmware ref", "    firmware: ovmf:code", "    firmware: ovmf:vars", `t1.yaml:30:15: outputs.spi.firmware: component "ovmf" has no file with role "vars"`},
		{"two kernels", "      path: vmlinuz", "      path: vmlinuz\n      component: xen", "t1.yaml:22:7: hypervisor.dom0.kernel: give exactly one of"},
		{"duplicate key", "arch: amd64", "arch: amd64\narch: amd64", "t1.yaml:4:1: arch: key appears twice"},
		{"bad compression", "  compression: xz", "  compression: lz4", `t1.yaml:24:16: control_domain.compression: "lz4": want xz, xz-x86`},
		{"guest too big", "  memory: 2GiB\n", "  memory: 2GiB\nguests:\n  - {name: demo, memory: 1536MiB, kernel: dom0, autostart: true}\n", "t1.yaml:41:3: guests: guests need 1536MiB and dom0 512MiB, plus 128MiB for Xen: more than the board's 2GiB RAM"},
		{"guest duplicate", "  memory: 2GiB\n", "  memory: 2GiB\nguests:\n  - {name: demo, memory: 64MiB, kernel: dom0}\n  - {name: demo, memory: 64MiB, kernel: dom0}\n", `t1.yaml:42:12: guests[1].name: guest "demo" is declared twice`},
		{"guest missing kernel", "  memory: 2GiB\n", "  memory: 2GiB\nguests:\n  - {name: demo, memory: 64MiB}\n", "t1.yaml:41:5: guests[0].kernel: required field is missing"},
		{"guest bad kernel", "  memory: 2GiB\n", "  memory: 2GiB\nguests:\n  - {name: demo, memory: 64MiB, kernel: ovmf}\n", `t1.yaml:41:41: guests[0].kernel: "ovmf": want "dom0", a component with files.bzimage or {source, base, fragment}`},
		{"guest kernel build without a tarball", "  memory: 2GiB\n", "  memory: 2GiB\nguests:\n  - {name: demo, memory: 64MiB, kernel: {source: xen}}\n", `t1.yaml:41:50: guests[0].kernel.source: component "xen" needs files.tarball`},
		{"guest kernel build without fragment", "  memory: 2GiB\n", "  memory: 2GiB\nguests:\n  - {name: demo, memory: 64MiB, kernel: {source: xen}}\n", "guests[0].kernel.fragment: required field is missing"},
		{"guest kernel build bad base", "  memory: 2GiB\n", "  memory: 2GiB\nguests:\n  - {name: demo, memory: 64MiB, kernel: {source: xen, base: defconfig, fragment: g.config}}\n", `t1.yaml:41:61: guests[0].kernel.base: "defconfig": want tinyconfig or allnoconfig`},
		{"guest kernel build by path", "  memory: 2GiB\n", "  memory: 2GiB\nguests:\n  - {name: demo, memory: 64MiB, kernel: {path: vmlinuz}}\n", "t1.yaml:41:42: guests[0].kernel.path: unknown field (known: source, base, fragment, patches)"},
		{"guest kernel a list", "  memory: 2GiB\n", "  memory: 2GiB\nguests:\n  - {name: demo, memory: 64MiB, kernel: [dom0]}\n", "t1.yaml:41:41: guests[0].kernel: want dom0, a component name or a mapping {source, base, fragment, patches}, got a list"},
		{"guests region preserved", "preserve: true}", "preserve: true, guests: true}", `outputs.spi.regions[0].guests: region "vpd" holds the guests: it cannot also be preserve, firmware or fill`},
		{"two guests regions", "      - {name: vpd, start: 0, size: 64KiB, preserve: true}", "      - {name: g1, start: 0, size: 32KiB, guests: true}\n      - {name: g2, start: 0x8000, size: 32KiB, guests: true}", "outputs.spi.regions: at most one region may be marked guests: true (found 2)"},
		{"guests region not mapped", "    chip_size: 16MiB\n    payload_file: 7C04A583-9E3E-4F1C-AD65-E05268D0B4D1\n    regions:\n      - {name: vpd, start: 0, size: 64KiB, preserve: true}",
			"    chip_size: 32MiB\n    payload_file: 7C04A583-9E3E-4F1C-AD65-E05268D0B4D1\n    regions:\n      - {name: guests, start: 0, size: 64KiB, guests: true}",
			`t1.yaml:34:31: outputs.spi.regions[0].start: guests region "guests" starts 0x2000000 below the chip's end: only the top 16MiB of the chip is memory-mapped`},
		{"yaml syntax", "arch: amd64", "arch: [amd64", "t1.yaml: "},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(valid, c.old) {
				t.Fatalf("test bug: %q not in the valid profile", c.old)
			}
			dir := t.TempDir()
			p := writeProfile(t, dir, "t1.yaml", strings.Replace(valid, c.old, c.new, 1))
			_, err := Load(p, dir)
			if err == nil {
				t.Fatalf("Load succeeded, want error containing %q", c.wantErr)
			}
			if !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("error\n  %v\nwant it to contain\n  %s", err, c.wantErr)
			}
		})
	}
}

// Every region name a later stage (image's layout check, flashrom, the
// flasher) would refuse is refused at load, at the name.
func TestBadRegionNames(t *testing.T) {
	for _, c := range []struct{ name, want string }{
		{strings.Repeat("a", 65), "is 65 bytes long: at most 64"},
		{"my data", "has ' '"},
		{"a:b", "has ':'"},
		{"a\tb", "has '\\t'"},
		{"bíos", "has 'í'"},
		{"a/b", "has '/'"},
		{"", "required field is missing"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			text := strings.Replace(valid, "{name: vpd,", "{name: "+strconv.Quote(c.name)+",", 1)
			_, err := Load(writeProfile(t, dir, "t1.yaml", text), dir)
			if want := "t1.yaml:34:16: outputs.spi.regions[0].name: "; err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error\n  %v\nwant %s...%s", err, want, c.want)
			}
		})
	}
}

func TestExtends(t *testing.T) {
	dir := t.TempDir()
	writeProfile(t, dir, "t1.yaml", valid)
	child := `extends: t1
name: t1-small
description: t1 with an 8 MiB chip
components:
  - name: ovmf
    files: {code: usr/share/OVMF/OVMF_CODE_4M.fd, vars: usr/share/OVMF/OVMF_VARS_4M.fd}
outputs:
  spi:
    chip_size: 8MiB
    regions:
      - {name: vars, start: 0, size: 0x84000, preserve: true, fill: ovmf:vars}
      - {name: bios, start: 0x84000, size: 0x77C000, firmware: true}
`
	p := writeProfile(t, dir, "t1-small.yaml", child)
	b, err := Load(p, dir)
	if err != nil {
		t.Fatal(err)
	}
	if b.Name != "t1-small" || b.Arch != "amd64" || b.Hypervisor.Options != "console=com1" {
		t.Errorf("merge lost fields: %+v", b)
	}
	if b.Outputs.SPI.ChipSize != 8<<20 || len(b.Outputs.SPI.Regions) != 2 || b.Outputs.SPI.Regions[0].Name != "vpd" && b.Outputs.SPI.Regions[0].Name != "vars" {
		t.Errorf("spi not merged: %+v", b.Outputs.SPI)
	}
	ovmf, _ := b.Component("ovmf")
	if ovmf.Package != "ovmf" || ovmf.Files["vars"] == "" || len(b.Components) != 2 {
		t.Errorf("component merge by name failed: %+v (%d components)", ovmf, len(b.Components))
	}
	if l := b.Loc("outputs.spi.chip_size"); !strings.HasSuffix(l.File, "t1-small.yaml") || l.Line != 9 {
		t.Errorf("chip_size location = %v, want t1-small.yaml:9", l)
	}
	if l := b.Loc("hypervisor.options"); !strings.HasSuffix(l.File, "t1.yaml") || l.Line != 17 {
		t.Errorf("options location = %v, want t1.yaml:17", l)
	}

	// An error in the child names the child file, one in the base the base file.
	writeProfile(t, dir, "bad-child.yaml", "extends: t1.yaml\nname: bad\noutputs:\n  usb:\n    size: 1GB\n")
	if _, err := Load(filepath.Join(dir, "bad-child.yaml"), dir); err == nil || !strings.Contains(err.Error(), "bad-child.yaml:5:11: outputs.usb.size") {
		t.Errorf("child error = %v", err)
	}
	writeProfile(t, dir, "bad-ref.yaml", "extends: t1\nname: bad\nhypervisor:\n  dom0:\n    memory: 4GiB\n")
	if _, err := Load(filepath.Join(dir, "bad-ref.yaml"), dir); err == nil || !strings.Contains(err.Error(), "t1.yaml:39:11: qemu.memory: 2GiB leaves nothing for Xen") {
		t.Errorf("cross-file error = %v", err)
	}
	writeProfile(t, dir, "cycle-a.yaml", "extends: cycle-b\n")
	writeProfile(t, dir, "cycle-b.yaml", "extends: cycle-a\n")
	if _, err := Load(filepath.Join(dir, "cycle-a.yaml"), dir); err == nil || !strings.Contains(err.Error(), "extends cycle") {
		t.Errorf("cycle error = %v", err)
	}
	writeProfile(t, dir, "nobase.yaml", "name: x\nextends: nope\n")
	if _, err := Load(filepath.Join(dir, "nobase.yaml"), dir); err == nil || !strings.Contains(err.Error(), "nobase.yaml:2:10: extends: base profile") {
		t.Errorf("missing base error = %v", err)
	}
}

// Within one file a name given twice is a mistake even where lists merge by
// name across extends.
func TestExtendsKeepsDuplicateNames(t *testing.T) {
	dir := t.TempDir()
	writeProfile(t, dir, "t1.yaml", valid)
	p := writeProfile(t, dir, "child.yaml", "extends: t1\nname: child\nguests:\n  - {name: twin, memory: 64MiB, kernel: dom0}\n  - {name: twin, memory: 64MiB, kernel: dom0}\n")
	_, err := Load(p, dir)
	if err == nil || !strings.Contains(err.Error(), `child.yaml:5:12: guests[1].name: guest "twin" is declared twice`) {
		t.Fatalf("err = %v", err)
	}
}

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	writeProfile(t, dir, "t1.yaml", valid)
	if p, err := Resolve("t1", dir); err != nil || p != filepath.Join(dir, "t1.yaml") {
		t.Errorf("Resolve(t1) = %q, %v", p, err)
	}
	if p, err := Resolve(filepath.Join(dir, "t1.yaml"), "/nonexistent"); err != nil || !strings.HasSuffix(p, "t1.yaml") {
		t.Errorf("Resolve(path) = %q, %v", p, err)
	}
	if _, err := Resolve("nope", dir); err == nil || !strings.Contains(err.Error(), "known: t1") {
		t.Errorf("Resolve(nope) = %v", err)
	}
}

func TestSize(t *testing.T) {
	for in, want := range map[string]uint64{"8MiB": 8 << 20, "0x800000": 0x800000, "8388608": 8388608, "64KiB": 65536, "2G": 2 << 30, "16 MiB": 16 << 20} {
		var s Size
		if err := s.decodeScalar(in); err != nil || uint64(s) != want {
			t.Errorf("Size(%q) = %d, %v; want %d", in, s, err, want)
		}
	}
	for _, in := range []string{"8MB", "-1", "0x", "1.5MiB", "99999999999999999999GiB", "MiB"} {
		var s Size
		if err := s.decodeScalar(in); err == nil {
			t.Errorf("Size(%q) accepted as %d", in, s)
		}
	}
}

func TestExtendsReplacesKernelChoice(t *testing.T) {
	dir := t.TempDir()
	base := writeProfile(t, dir, "t1.yaml", strings.Replace(valid, "      path: vmlinuz", "      source: xen\n      fragment: x.config", 1))
	childDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(childDir, "other"), []byte("kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	child := writeProfile(t, childDir, "child.yaml", "extends: "+base+"\nname: child\nhypervisor:\n  dom0:\n    kernel:\n      path: other\n")
	b, err := Load(child, dir)
	if err != nil {
		t.Fatal(err)
	}
	if k := b.Hypervisor.Dom0.Kernel; k.Path != "other" || k.PathFile != realDir(childDir)+"/other" || k.Source != "" || k.Fragment != "" {
		t.Errorf("kernel = %+v, want only the child's path", k)
	}
}

func TestExtendsDropsSection(t *testing.T) {
	dir := t.TempDir()
	writeProfile(t, dir, "t1.yaml", valid)
	p := writeProfile(t, dir, "usb-only.yaml", "extends: t1\nname: usb-only\noutputs:\n  spi: null\n")
	b, err := Load(p, dir)
	if err != nil {
		t.Fatal(err)
	}
	if b.Outputs.SPI != nil || b.Outputs.USB.Size != 64<<20 {
		t.Errorf("outputs = %+v, want USB only", b.Outputs)
	}
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// A guest's kernel built from source: its fragment is resolved in the
// boards directory, where the field was given is kept, and the profile's
// shape survives printing.
func TestGuestKernelBuild(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "guest.config"), []byte("CONFIG_XEN=y\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "guest.patch"), []byte("--- a/x\n+++ b/x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(valid, "    files: {code: usr/share/OVMF/OVMF_CODE_4M.fd}\n",
		"    files: {code: usr/share/OVMF/OVMF_CODE_4M.fd}\n  - {name: src, package: linux-source-6.1, version: \"6.1\", sha256: e73d3d1a8799f7f6fc16b73501d913edcdd86237556fbff30693e747e6dc262e, files: {tarball: usr/src/linux.tar.xz}}\n", 1) +
		"guests:\n  - name: demo\n    memory: 64MiB\n    kernel:\n      source: src\n      base: tinyconfig\n      fragment: guest.config\n      patches: [guest.patch]\n  - {name: other, memory: 64MiB, kernel: dom0}\n"
	b, err := Load(writeProfile(t, dir, "t1.yaml", text), dir)
	if err != nil {
		t.Fatal(err)
	}
	k := b.Guests[0].Kernel
	if k.Build == nil || k.Build.Source != "src" || k.Build.Base != "tinyconfig" || k.Build.FragmentFile != filepath.Join(realDir(dir), "guest.config") || k.IsDom0() ||
		!slices.Equal(k.Build.PatchFiles, []string{filepath.Join(realDir(dir), "guest.patch")}) {
		t.Fatalf("guests[0].kernel = %+v (build %+v)", k, k.Build)
	}
	if l := b.Loc("guests[0].kernel.fragment"); l.Line != 47 {
		t.Errorf("fragment at %v, want line 47", l)
	}
	if !b.Guests[1].Kernel.IsDom0() || b.Guests[1].Kernel.Build != nil {
		t.Errorf("guests[1].kernel = %+v, want dom0", b.Guests[1].Kernel)
	}
	js, err := json.Marshal(b.Guests)
	if err != nil {
		t.Fatal(err)
	}
	// A patch that is not there, or one outside boards/, is refused where
	// the profile names it.
	for _, c := range []struct{ patch, want string }{
		{"missing.patch", `t1.yaml:48:17: guests[0].kernel.patches[0]: patch "missing.patch"`},
		{"../../etc/passwd", `guests[0].kernel.patches[0]: patch "../../etc/passwd"`},
	} {
		bad := strings.Replace(text, "patches: [guest.patch]", "patches: ["+c.patch+"]", 1)
		if _, err := Load(writeProfile(t, dir, "t1.yaml", bad), dir); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("patch %s: error %v, want %q", c.patch, err, c.want)
		}
	}
	for _, want := range []string{`"Kernel":{"source":"src","base":"tinyconfig","fragment":"guest.config","patches":["guest.patch"]}`, `"Kernel":"dom0"`} {
		if !strings.Contains(string(js), want) {
			t.Errorf("JSON %s lacks %s", js, want)
		}
	}
}
