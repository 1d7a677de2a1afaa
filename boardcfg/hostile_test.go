package boardcfg

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
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

// hostTree is a build host in miniature: a secret file, a boards directory
// and a profile directory beside it, plus files that must never be read.
type hostTree struct {
	top, boards, prof string
}

const secretText = "root:SECRET-HASH:19000:0:99999:7:::\n"

func newHostTree(t *testing.T) hostTree {
	t.Helper()
	top := t.TempDir()
	h := hostTree{top: top, boards: filepath.Join(top, "boards"), prof: filepath.Join(top, "prof")}
	for _, d := range []string{h.boards, h.prof, filepath.Join(h.boards, "fragments")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, text string) {
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(top, "secret"), secretText)
	write(filepath.Join(top, "secret.yaml"), secretText)
	write(filepath.Join(h.boards, "fragments", "ok.config"), "CONFIG_XEN=y\n")
	write(filepath.Join(h.boards, "include-out.config"), "#include \"../secret\"\n")
	write(filepath.Join(h.boards, "include-zero.config"), "CONFIG_A=y\n#include </dev/zero>\n")
	write(filepath.Join(h.boards, "include-link.config"), "#include link.config\n")
	write(filepath.Join(h.boards, "include-fifo.config"), "#include \"fifo.config\"\n")
	write(filepath.Join(h.boards, "cycle.config"), "#include \"cycle.config\"\n")
	for i := 0; i < 20; i++ {
		write(filepath.Join(h.boards, fmt.Sprintf("fan%d.config", i)), fmt.Sprintf("#include \"fan%d.config\"\n#include \"fan%d.config\"\n", i+1, i+1))
	}
	write(filepath.Join(h.boards, "fan20.config"), "CONFIG_A=y\n")
	write(filepath.Join(h.boards, "big.config"), strings.Repeat("# padding\n", 1<<17))
	write(filepath.Join(h.boards, "t1.yaml"), valid)
	write(filepath.Join(h.boards, "vmlinuz"), "kernel")
	write(filepath.Join(h.boards, "evil.yaml"), "extends: ../secret.yaml\n")
	write(filepath.Join(h.prof, "vmlinuz"), "kernel")
	write(filepath.Join(h.prof, "big.yaml"), "name: big\n"+strings.Repeat("# padding\n", 1<<17))
	for link, target := range map[string]string{
		filepath.Join(h.boards, "link.config"): filepath.Join(top, "secret"),
		filepath.Join(h.boards, "zero.config"): "/dev/zero",
		filepath.Join(h.boards, "up"):          top,
		filepath.Join(h.prof, "link-vmlinuz"):  filepath.Join(top, "secret"),
		filepath.Join(h.prof, "base.yaml"):     filepath.Join(top, "secret.yaml"),
		filepath.Join(h.prof, "boards"):        h.boards,
	} {
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	for _, fifo := range []string{filepath.Join(h.boards, "fifo.config"), filepath.Join(h.prof, "fifo.yaml"), filepath.Join(h.prof, "fifo-vmlinuz")} {
		if err := syscall.Mkfifo(fifo, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A sparse kernel past the bound: nothing reads it, only stat sizes it.
	f, err := os.Create(filepath.Join(h.prof, "huge-vmlinuz"))
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(MaxKernelFile + 1)
	f.Close()
	return h
}

// Every file a profile names on the host (kernel fragment and its includes,
// kernel path, extends) is confined, regular and bounded, checked at load
// with file:line:col and the field, and no error shows a refused file's
// content. Nothing is created anywhere.
func TestHostilePaths(t *testing.T) {
	const kernel = "      path: vmlinuz"
	const xenFiles = "    files: {efi: boot/xen.efi, gz: boot/xen.gz}"
	// fragment turns valid into a board that builds its kernel from source
	// with the given fragment (line 23, column 17).
	fragment := func(f string) string {
		return strings.Replace(strings.Replace(valid, kernel, "      source: xen\n      fragment: "+f, 1),
			xenFiles, "    files: {efi: boot/xen.efi, gz: boot/xen.gz, tarball: linux.tar.xz}", 1)
	}
	path := func(p string) string { return strings.Replace(valid, kernel, "      path: "+p, 1) }
	const fragAt = "t1.yaml:23:17: hypervisor.dom0.kernel.fragment: "
	const pathAt = "t1.yaml:22:13: hypervisor.dom0.kernel.path: "
	for _, c := range []struct {
		name    string
		profile string // written to prof/t1.yaml
		want    string // "" means Load succeeds
	}{
		{"fragment ok", fragment("fragments/ok.config"), ""},
		{"fragment etc/shadow", fragment("../../../../../../../../etc/shadow"), fragAt + `fragment "../../../../../../../../etc/shadow" resolves to /etc/shadow, outside BOARDS:`},
		{"fragment beside boards", fragment("../secret"), fragAt + `fragment "../secret" resolves to TOP/secret, outside BOARDS:`},
		{"fragment dev/zero", fragment("../../../../../../../../dev/zero"), fragAt + `fragment "../../../../../../../../dev/zero" resolves to /dev/zero, outside BOARDS:`},
		{"fragment absolute", fragment("/etc/shadow"), fragAt + `"/etc/shadow": give a path relative to the boards directory`},
		{"fragment symlink out", fragment("link.config"), fragAt + `fragment "link.config" resolves to TOP/secret, outside BOARDS:`},
		{"fragment symlink to device", fragment("zero.config"), fragAt + `fragment "zero.config" resolves to /dev/zero, outside BOARDS:`},
		{"fragment through directory symlink", fragment("up/secret"), fragAt + `fragment "up/secret" resolves to TOP/secret, outside BOARDS:`},
		{"fragment FIFO", fragment("fifo.config"), fragAt + `fragment "fifo.config" is not a regular file`},
		{"fragment directory", fragment("fragments"), fragAt + `fragment "fragments" is not a regular file`},
		{"fragment huge", fragment("big.config"), fragAt + `fragment "big.config" is 1310720 bytes: at most 1048576`},
		{"fragment missing", fragment("nope.config"), fragAt + `fragment "nope.config" (BOARDS/nope.config) does not exist`},
		{"fragment includes outside", fragment("include-out.config"), fragAt + `BOARDS/include-out.config:1: read fragment: TOP/secret is outside BOARDS:`},
		{"fragment includes a device", fragment("include-zero.config"), fragAt + `BOARDS/include-zero.config:2: read fragment: /dev/zero is outside BOARDS:`},
		{"fragment includes through a symlink", fragment("include-link.config"), fragAt + `BOARDS/include-link.config:1: read fragment: TOP/secret is outside BOARDS:`},
		{"fragment includes a FIFO", fragment("include-fifo.config"), fragAt + `BOARDS/include-fifo.config:1: read fragment: BOARDS/fifo.config is not a regular file`},
		{"fragment include cycle", fragment("cycle.config"), fragAt + `BOARDS/cycle.config:1: include cycle: BOARDS/cycle.config -> BOARDS/cycle.config`},
		{"fragment include fan-out", fragment("fan0.config"), fragAt + "BOARDS/fan19.config:1: read fragment: more than 256 fragment files read"},
		{"kernel ok", path("vmlinuz"), ""},
		{"kernel ok in boards", path("boards/vmlinuz"), ""},
		{"kernel etc/shadow", path("/etc/shadow"), pathAt + `kernel "/etc/shadow" resolves to /etc/shadow, outside PROF and BOARDS:`},
		{"kernel beside profile", path("../secret"), pathAt + `kernel "../secret" resolves to TOP/secret, outside PROF and BOARDS:`},
		{"kernel dev/zero", path("../../../../../../../dev/zero"), pathAt + `kernel "../../../../../../../dev/zero" resolves to /dev/zero, outside PROF and BOARDS:`},
		{"kernel symlink out", path("link-vmlinuz"), pathAt + `kernel "link-vmlinuz" resolves to TOP/secret, outside PROF and BOARDS:`},
		{"kernel FIFO", path("fifo-vmlinuz"), pathAt + `kernel "fifo-vmlinuz" is not a regular file`},
		{"kernel directory", path("."), pathAt + `kernel "." is not a regular file`},
		{"kernel huge", path("huge-vmlinuz"), pathAt + `kernel "huge-vmlinuz" is 268435457 bytes: at most 268435456`},
		{"extends ok by name", "extends: t1\nname: c\n", ""},
		{"extends ok by path", "extends: ../boards/t1.yaml\nname: c\n", ""},
		{"extends beside profile", "extends: ../secret.yaml\nname: c\n", `t1.yaml:1:10: extends: base profile "../secret.yaml" resolves to TOP/secret.yaml, outside PROF and BOARDS:`},
		{"extends etc/passwd", "extends: /etc/passwd\nname: c\n", `t1.yaml:1:10: extends: base profile "/etc/passwd" resolves to /etc/passwd, outside PROF and BOARDS:`},
		{"extends dev/zero", "extends: ../../../../../../../dev/zero\nname: c\n", `t1.yaml:1:10: extends: base profile "../../../../../../../dev/zero" resolves to /dev/zero, outside PROF and BOARDS:`},
		{"extends symlink out", "extends: base.yaml\nname: c\n", `t1.yaml:1:10: extends: base profile "base.yaml" resolves to TOP/secret.yaml, outside PROF and BOARDS:`},
		{"extends FIFO", "extends: fifo.yaml\nname: c\n", `t1.yaml:1:10: extends: base profile "fifo.yaml" is not a regular file`},
		{"extends huge", "extends: big.yaml\nname: c\n", `t1.yaml:1:10: extends: base profile "big.yaml" is 1310730 bytes: at most 1048576`},
		{"extends a name with ..", "extends: ..\nname: c\n", `t1.yaml:1:10: extends: "..": want a board name`},
		{"base extends outside", "extends: evil\nname: c\n", `evil.yaml:1:10: extends: base profile "../secret.yaml" resolves to TOP/secret.yaml, outside BOARDS:`},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHostTree(t)
			p := filepath.Join(h.prof, "t1.yaml")
			if err := os.WriteFile(p, []byte(c.profile), 0o644); err != nil {
				t.Fatal(err)
			}
			before := dirFiles(t, h.top)
			_, err := Load(p, h.boards)
			want := strings.NewReplacer("BOARDS", h.boards, "PROF", h.prof, "TOP", h.top).Replace(c.want)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("Load: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), want)):
				t.Fatalf("error\n  %v\nwant it to contain\n  %s", err, want)
			case err != nil && strings.Contains(err.Error(), "SECRET"):
				t.Fatalf("error shows a refused file's content: %v", err)
			}
			if after := dirFiles(t, h.top); !slices.Equal(before, after) {
				t.Errorf("Load changed the host tree: %v -> %v", before, after)
			}
		})
	}
}

// Strings that reach command lines, configs and package roots are refused
// at load when the later stage would misread them.
func TestHostileStrings(t *testing.T) {
	const cmds = "  commands: [github.com/u-root/u-root/cmds/core/init]"
	const cmdline = "    cmdline: console=hvc0"
	runHostile(t, []hostileCase{
		{"command is a go flag", cmds, `  commands: ["-toolexec=/tmp/x.sh"]`, `t1.yaml:25:14: control_domain.commands[0]: "-toolexec=/tmp/x.sh": want the Go import path of a command`},
		{"command with space", cmds, `  commands: ["github.com/u-root/u-root/cmds/core/init -x"]`, `t1.yaml:25:14: control_domain.commands[0]: "github.com/u-root/u-root/cmds/core/init -x": want the Go import path`},
		{"toolstack file escapes", cmds, cmds + "\n  toolstack:\n    packages: [xen]\n    files: [usr/../../../etc/shadow]", `t1.yaml:28:13: control_domain.toolstack.files[0]: "usr/../../../etc/shadow": give a path inside the packages, without ..`},
		{"toolstack module escapes", cmds, cmds + "\n  toolstack:\n    packages: [xen]\n    modules: [../x.ko]", `t1.yaml:28:15: control_domain.toolstack.modules[0]: "../x.ko": give a path inside the packages`},
		{"toolstack symlink escapes", cmds, cmds + "\n  toolstack:\n    packages: [xen]\n    symlinks: {../../x: /bin/sh}", `t1.yaml:28:25: control_domain.toolstack.symlinks.../../x: "../../x" -> "/bin/sh": give a path in the archive`},
		{"file role", "files: {code: usr/share/OVMF/OVMF_CODE_4M.fd}", `files: {code: usr/share/OVMF/OVMF_CODE_4M.fd, "a b": x}`, `t1.yaml:14:58: components[1].files.a b: role "a b": use lower-case letters`},
		{"dom0 cmdline quote", cmdline, `    cmdline: console=hvc0 init="/bin/sh -c x"`, `t1.yaml:20:14: hypervisor.dom0.cmdline: '"' at byte 18: quotes and backslashes cannot be passed through GRUB`},
		{"dom0 cmdline non-ASCII", cmdline, `    cmdline: console=hvc0 é`, `t1.yaml:20:14: hypervisor.dom0.cmdline: byte 13 is 0xc3: only printable ASCII`},
		{"dom0 cmdline too long", cmdline, "    cmdline: " + strings.Repeat("x", 2049), `t1.yaml:20:14: hypervisor.dom0.cmdline: 2049 bytes long: at most 2048`},
		{"xen options too long", "  options: console=com1", "  options: " + strings.Repeat("x", 1025), `t1.yaml:17:12: hypervisor.options: 1025 bytes long: at most 1024`},
		{"xen options backslash", "  options: console=com1", `  options: console=com1\x`, `t1.yaml:17:12: hypervisor.options: '\\' at byte 12`},
		{"guest cmdline too long", "  memory: 2GiB\n", "  memory: 2GiB\nguests:\n  - {name: g, memory: 64MiB, kernel: dom0, cmdline: " + strings.Repeat("x", 2049) + "}\n", `t1.yaml:41:53: guests[0].cmdline: 2049 bytes long: at most 2048`},
		{"description too long", "description: test board", "description: " + strings.Repeat("x", 257), `t1.yaml:2:14: description: 257 bytes long: at most 256`},
		{"board name too long", "name: t1", "name: " + strings.Repeat("t", 65), `t1.yaml:1:7: name: "` + strings.Repeat("t", 65) + `": use lower-case letters, digits and - . _ +, at most 64`},
		{"component name", "  - name: xen\n", "  - name: \"xen;rm -rf\"\n", `t1.yaml:5:11: components[0].name: "xen;rm -rf": a component name is lower-case letters`},
	})
}

// qemu.machine and qemu.cpu become QEMU option values.
func TestHostileQEMU(t *testing.T) {
	runHostile(t, []hostileCase{
		{"machine sub-options", "  machine: q35", "  machine: q35,memory-backend=x", `t1.yaml:37:12: qemu.machine: "q35,memory-backend=x": want a QEMU machine type`},
		{"machine option", "  machine: q35", `  machine: "-drive"`, `t1.yaml:37:12: qemu.machine: "-drive": want a QEMU machine type`},
		{"cpu with space", "  cpu: qemu64,+svm", `  cpu: "qemu64 -bios x"`, `t1.yaml:38:8: qemu.cpu: "qemu64 -bios x": want a QEMU CPU model`},
		{"cpu empty feature", "  cpu: qemu64,+svm", `  cpu: "qemu64,,x"`, `t1.yaml:38:8: qemu.cpu: "qemu64,,x": want a QEMU CPU model`},
	})
}
