package boardcfg

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// hostileCase edits one line of valid (see load_test.go) into something a
// hostile or careless profile author could write; Load must refuse it at
// the file:line:col and field in want.
type hostileCase struct {
	name string
	old  string
	new  string
	want string
}

func runHostile(t *testing.T, cases []hostileCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(valid, c.old) {
				t.Fatalf("test bug: %q not in the valid profile", c.old)
			}
			dir := t.TempDir()
			p := writeProfile(t, dir, "t1.yaml", strings.Replace(valid, c.old, c.new, 1))
			before := dirFiles(t, dir)
			_, err := Load(p, dir)
			if err == nil {
				t.Fatalf("Load succeeded, want error containing %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error\n  %v\nwant it to contain\n  %s", err, c.want)
			}
			if after := dirFiles(t, dir); !slices.Equal(before, after) {
				t.Errorf("Load changed the profile directory: %v -> %v", before, after)
			}
		})
	}
}

// dirFiles lists every path under dir.
func dirFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err == nil {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// A package or version apt-get would read as an option (or anything else
// outside Debian's syntax) fails at load, at the value.
func TestHostilePackages(t *testing.T) {
	const pkg, ver = "    package: xen-hypervisor-4.17-amd64", `    version: "4.17"`
	runHostile(t, []hostileCase{
		{"package is an apt option", pkg, `    package: "-oAcquire::http::Proxy-Auto-Detect"`, `t1.yaml:6:14: components[0].package: package name "-oAcquire::http::Proxy-Auto-Detect" must start with a lower-case letter or digit`},
		{"package is --", pkg, `    package: "--"`, `t1.yaml:6:14: components[0].package: package name "--" must start`},
		{"package upper case", pkg, `    package: Xen`, `t1.yaml:6:14: components[0].package: package name "Xen" must start`},
		{"package with space", pkg, `    package: "xen -s"`, `t1.yaml:6:14: components[0].package: package name "xen -s" has ' '`},
		{"package with =", pkg, `    package: "xen=1"`, `t1.yaml:6:14: components[0].package: package name "xen=1" has '='`},
		{"package one char", pkg, `    package: x`, `t1.yaml:6:14: components[0].package: package name "x" is too short`},
		{"version is a path", ver, `    version: /path/script`, `t1.yaml:7:14: components[0].version: version "/path/script": the upstream version must start with a digit`},
		{"version is an option", ver, `    version: "-oAPT::Update::Pre-Invoke::=/tmp/x"`, `t1.yaml:7:14: components[0].version: version "-oAPT::Update::Pre-Invoke::=/tmp/x": the epoch`},
		{"version is -1", ver, `    version: "-1"`, `t1.yaml:7:14: components[0].version: version "-1": the upstream version must start with a digit`},
		{"version with space", ver, `    version: "4.17 -oX=y"`, `t1.yaml:7:14: components[0].version: version "4.17 -oX=y" has ' '`},
		{"version bad revision", ver, `    version: "4.17-deb_1"`, `t1.yaml:7:14: components[0].version: version "4.17-deb_1" has '_' in its revision`},
		{"version bad epoch", ver, `    version: "a:4.17"`, `t1.yaml:7:14: components[0].version: version "a:4.17": the epoch`},
	})
}

// A key given twice is refused in a profile that extends another and in
// the profile it extends, at the second occurrence, as without extends.
func TestDuplicateKeysWithExtends(t *testing.T) {
	for _, c := range []struct {
		name, base, child, want string
	}{
		{"child top level", valid, "extends: t1\nname: c\narch: amd64\narch: amd64\n", "child.yaml:4:1: arch: key appears twice"},
		{"child nested", valid, "extends: t1\nname: c\nhypervisor:\n  dom0:\n    memory: 512MiB\n    memory: 1GiB\n", "child.yaml:6:5: hypervisor.dom0.memory: key appears twice"},
		{"child extends twice", valid, "extends: t1\nname: c\nextends: t1\n", "child.yaml:3:1: extends: key appears twice"},
		{"child list item", valid, "extends: t1\nname: c\ncomponents:\n  - name: ovmf\n    version: \"1\"\n    version: \"2\"\n", "child.yaml:6:5: components[0].version: key appears twice"},
		{"child map", valid, "extends: t1\nname: c\ncomponents:\n  - name: ovmf\n    files: {code: a, code: b}\n", "child.yaml:5:22: components[0].files.code: key appears twice"},
		{"base overridden by child", strings.Replace(valid, "arch: amd64", "arch: amd64\narch: i386", 1), "extends: t1\nname: c\narch: amd64\n", "t1.yaml:4:1: arch: key appears twice"},
		{"base not overridden", strings.Replace(valid, "  cpu: qemu64,+svm", "  cpu: qemu64,+svm\n  cpu: max", 1), "extends: t1\nname: c\n", "t1.yaml:39:3: qemu.cpu: key appears twice"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			writeProfile(t, dir, "t1.yaml", c.base)
			_, err := Load(writeProfile(t, dir, "child.yaml", c.child), dir)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error\n  %v\nwant it to contain\n  %s", err, c.want)
			}
		})
	}
}

// Control characters are refused in every string, key and list item: they
// end up in xl configs, manifests, logs and command lines.
func TestControlCharacters(t *testing.T) {
	runHostile(t, []hostileCase{
		{"component name newline", "  - name: xen\n", `  - name: "xen\n"` + "\n", `t1.yaml:5:11: components[0].name: has '\n' (U+000A, a control character)`},
		{"component name escape", "  - name: xen\n", `  - name: "x\e[2Jen"` + "\n", `t1.yaml:5:11: components[0].name: has '\x1b'`},
		{"description CR", "description: test board", `description: "test\rboard"`, `t1.yaml:2:14: description: has '\r'`},
		{"description NUL", "description: test board", `description: "test\0board"`, `t1.yaml:2:14: description: has '\x00'`},
		{"description bidi override", "description: test board", `description: "test\u202eboard"`, `t1.yaml:2:14: description: has '\u202e'`},
		{"description block scalar", "description: test board", "description: |\n  test\n  board", `t1.yaml:2:14: description: has '\n'`},
		{"dom0 cmdline tab", "    cmdline: console=hvc0", `    cmdline: "console=hvc0\tinit=/x"`, `t1.yaml:20:14: hypervisor.dom0.cmdline: has '\t'`},
		{"xen options", "  options: console=com1", `  options: "console=com1\x85"`, `t1.yaml:17:12: hypervisor.options: has '\u0085'`},
		{"command", "  commands: [github.com/u-root/u-root/cmds/core/init]", `  commands: ["github.com/u-root/u-root/cmds/core/init\n-toolexec=x"]`, `t1.yaml:25:14: control_domain.commands[0]: has '\n'`},
		{"guest cmdline", "  memory: 2GiB\n", "  memory: 2GiB\nguests:\n  - {name: g, memory: 64MiB, kernel: dom0, cmdline: \"a\\x7fb\"}\n", `t1.yaml:41:53: guests[0].cmdline: has '\x7f'`},
		{"guest name", "  memory: 2GiB\n", "  memory: 2GiB\nguests:\n  - {name: \"g\\n\", memory: 64MiB, kernel: dom0}\n", `t1.yaml:41:12: guests[0].name: has '\n'`},
		{"file path", "files: {code: usr/share/OVMF/OVMF_CODE_4M.fd}", `files: {code: "usr/share/OVMF/\nOVMF_CODE_4M.fd"}`, `t1.yaml:14:19: components[1].files.code: has '\n'`},
		{"map key", "files: {code: usr/share/OVMF/OVMF_CODE_4M.fd}", `files: {"co\nde": usr/share/OVMF/OVMF_CODE_4M.fd}`, `t1.yaml:14:13: components[1].files: key: has '\n'`},
		{"unknown key", "arch: amd64", "arch: amd64\n\"col\\eour\": red", `t1.yaml:4:1: key: has '\x1b'`},
		{"region name", "{name: vpd,", `{name: "vp\td",`, `t1.yaml:34:16: outputs.spi.regions[0].name: has '\t'`},
		{"region name 300 characters", "{name: vpd,", "{name: " + strings.Repeat("v", 300) + ",", `t1.yaml:34:16: outputs.spi.regions[0].name: region name "` + strings.Repeat("v", 300) + `" is 300 bytes long: at most 64`},
	})
}

// Sizes whose arithmetic would wrap past 2^64, or that have no physical
// meaning, fail at load instead of wrapping into a value that passes.
func TestSizeOverflow(t *testing.T) {
	const qemuMem = "  memory: 2GiB\n"
	const vpd = "{name: vpd, start: 0, size: 64KiB, preserve: true}"
	runHostile(t, []hostileCase{
		{"guest memory near 2^64", qemuMem, qemuMem + "guests:\n  - {name: g, memory: 0xFFFFFFFFFFF00000, kernel: dom0}\n", `t1.yaml:41:23: guests[0].memory: 17592186044415MiB is more than the board's RAM (qemu.memory 2GiB)`},
		{"guest memory beyond RAM", qemuMem, qemuMem + "guests:\n  - {name: g, memory: 4GiB, kernel: dom0}\n", `t1.yaml:41:23: guests[0].memory: 4GiB is more than the board's RAM (qemu.memory 2GiB)`},
		{"guest memories that sum to 2^64", qemuMem, qemuMem + "guests:\n  - {name: g, memory: 0x8000000000000000, kernel: dom0}\n  - {name: h, memory: 0x8000000000000000, kernel: dom0}\n", `t1.yaml:42:23: guests[1].memory: 8589934592GiB is more than the board's RAM`},
		{"guest vcpus", qemuMem, qemuMem + "guests:\n  - {name: g, memory: 64MiB, vcpus: 0x7fffffffffffffff, kernel: dom0}\n", `t1.yaml:41:37: guests[0].vcpus: 9223372036854775807: want 0 (the default) to 512`},
		{"dom0 memory near 2^64", "    memory: 512MiB", "    memory: 0xFFFFFFFFFFF00000", `t1.yaml:19:13: hypervisor.dom0.memory: 17592186044415MiB is more than 1024GiB`},
		{"dom0 vcpus", "    memory: 512MiB", "    memory: 512MiB\n    vcpus: 100000", `t1.yaml:20:12: hypervisor.dom0.vcpus: 100000: want 0 (the default) to 512`},
		{"qemu memory", qemuMem, "  memory: 0xFFFFFFFFFFFFFFFF\n", `t1.yaml:39:11: qemu.memory: 18446744073709551615 is more than 1024GiB`},
		{"qemu smp", qemuMem, qemuMem + "  smp: -1\n", `t1.yaml:40:8: qemu.smp: -1: want 0 (the default) to 512`},
		{"usb size", "    size: 64MiB", "    size: 0xFFFFFFFFFFFFFFFF", `t1.yaml:28:11: outputs.usb.size: 18446744073709551615 is more than 64GiB`},
		{"chip size", "    chip_size: 16MiB", "    chip_size: 0xFFFFFFFFFFFFF000", `t1.yaml:31:16: outputs.spi.chip_size: 18014398509481980KiB is more than 256MiB`},
		{"chip size odd", "    chip_size: 16MiB", "    chip_size: 16777217", `t1.yaml:31:16: outputs.spi.chip_size: 16777217 is not a multiple of 4KiB`},
		{"region wraps", vpd, "{name: vpd, start: 0xFFFFFFFFFFFF0000, size: 0x20000, preserve: true}", `t1.yaml:34:54: outputs.spi.regions[0].size: region "vpd" start 0xffffffffffff0000 plus size 0x20000 wraps past 2^64`},
		{"region wraps to zero", vpd, "{name: vpd, start: 0x1000, size: 0xFFFFFFFFFFFFF000, preserve: true}", `t1.yaml:34:42: outputs.spi.regions[0].size: region "vpd" start 0x1000 plus size 0xfffffffffffff000 wraps past 2^64`},
		{"region past chip", vpd, "{name: vpd, start: 0x2000000, size: 64KiB, preserve: true}", `t1.yaml:34:45: outputs.spi.regions[0].size: region "vpd" ends at 0x2010000, past the 16MiB chip`},
		{"guests region past chip", vpd, "{name: vpd, start: 0x2000000, size: 64KiB, guests: true}", `outputs.spi.regions[0].size: region "vpd" ends at 0x2010000, past the 16MiB chip`},
		{"size 16EiB", "    chip_size: 16MiB", "    chip_size: 16EiB", `t1.yaml:31:16: outputs.spi.chip_size: "16EiB" is not a size`},
		{"size past 2^64", "    chip_size: 16MiB", "    chip_size: 17179869184GiB", `t1.yaml:31:16: outputs.spi.chip_size: "17179869184GiB" is too large`},
		{"size past 2^64 decimal", "    chip_size: 16MiB", "    chip_size: 18446744073709551616", `t1.yaml:31:16: outputs.spi.chip_size: "18446744073709551616" is too large`},
		{"size past 2^64 hex", "    chip_size: 16MiB", "    chip_size: 0x10000000000000000", `t1.yaml:31:16: outputs.spi.chip_size: "0x10000000000000000" is too large`},
	})
}
