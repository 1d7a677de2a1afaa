package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

// hostTool is something a later stage runs on the build host, and the Debian
// package that provides it.
type hostTool struct {
	Name    string `json:"name"`
	Check   string `json:"check"` // a command on PATH, or a file path
	Package string `json:"package"`
	Why     string `json:"why"`
	Found   bool   `json:"found"`
}

func hostTools() []hostTool {
	return []hostTool{
		{Name: "apt-get", Check: "apt-get", Package: "apt", Why: "fetch pinned components"},
		{Name: "qemu-system-x86_64", Check: "qemu-system-x86_64", Package: "qemu-system-x86", Why: "boot tests"},
		{Name: "OVMF", Check: "/usr/share/OVMF/OVMF_CODE_4M.fd", Package: "ovmf", Why: "host OVMF for booting images by hand (builds use the pinned one)"},
		{Name: "grub-mkimage", Check: "grub-mkimage", Package: "grub-common", Why: "flash payload (GRUB standalone image)"},
		{Name: "grub x86_64-efi modules", Check: "/usr/lib/grub/x86_64-efi/modinfo.sh", Package: "grub-efi-amd64-bin", Why: "grub-mkimage needs its platform files"},
		{Name: "flashrom", Check: "flashrom", Package: "flashrom", Why: "fwbuild flash spi"},
		{Name: "ssh", Check: "ssh", Package: "openssh-client", Why: "the console test drives ctld's SSH console with the real OpenSSH client"},
		{Name: "sshpass", Check: "sshpass", Package: "sshpass", Why: "the console test gives OpenSSH the unit's password non-interactively"},
		{Name: "xz", Check: "xz", Package: "xz-utils", Why: "initramfs and firmware compression"},
		{Name: "zstd", Check: "zstd", Package: "zstd", Why: "zstd initramfs"},
		{Name: "cpio", Check: "cpio", Package: "cpio", Why: "inspecting archives, kernel build"},
		{Name: "fsck.fat", Check: "fsck.fat", Package: "dosfstools", Why: "checking the USB image"},
		{Name: "mtools", Check: "mcopy", Package: "mtools", Why: "reading FAT images in tests"},
		{Name: "sgdisk", Check: "sgdisk", Package: "gdisk", Why: "checking the USB image's GPT, writing a foreign data disk in the host boot test"},
		{Name: "mke2fs", Check: "mke2fs", Package: "e2fsprogs", Why: "guest images' ext4 root file systems (mke2fs, debugfs, e2fsck)"},
		{Name: "debugfs", Check: "debugfs", Package: "e2fsprogs", Why: "guest images: fixed inode times and owners"},
		{Name: "e2fsck", Check: "e2fsck", Package: "e2fsprogs", Why: "checking the ext4 file system ctld makes on a data disk"},
		{Name: "losetup", Check: "losetup", Package: "mount", Why: "USB flashing tests on loop devices"},
		{Name: "objdump", Check: "objdump", Package: "binutils", Why: "inspecting payload sections"},
		{Name: "gcc", Check: "gcc", Package: "gcc", Why: "dom0 kernel build, the launcher DXE driver"},
		{Name: "ld", Check: "ld", Package: "binutils", Why: "the launcher DXE driver (ld, objcopy)"},
		{Name: "UEFIExtract", Check: "UEFIExtract", Package: "uefitool-cli", Why: "tests that re-parse chip images with an independent parser"},
		{Name: "OVMF.fd", Check: "/usr/share/ovmf/OVMF.fd", Package: "ovmf", Why: "fit tests on the 2 MiB OVMF build"},
		{Name: "sbverify", Check: "sbverify", Package: "sbsigntool", Why: "tests that check the payloads' Authenticode signatures independently"},
		{Name: "osslsigncode", Check: "osslsigncode", Package: "osslsigncode", Why: "tests that check the payloads' Authenticode signatures independently"},
		{Name: "swtpm", Check: "swtpm", Package: "swtpm", Why: "boot tests give each machine a TPM 2.0 (measured boot, quotes)"},
		{Name: "swtpm_setup", Check: "swtpm_setup", Package: "swtpm-tools", Why: "swtpm's state tools (swtpm_setup, swtpm_ioctl) for inspecting a test's TPM"},
		{Name: "sushy", Check: "/usr/lib/python3/dist-packages/sushy/__init__.py", Package: "python3-sushy", Why: "ctld's Redfish tests drive the service with OpenStack's Redfish library"},
		{Name: "redfishtool", Check: "redfishtool", Package: "redfishtool", Why: "ctld's Redfish tests drive the service with DMTF's CLI"},
		{Name: "curl", Check: "curl", Package: "curl", Why: "ctld's UpdateService test pushes an artefact as multipart/form-data with curl -F"},
		{Name: "libc headers", Check: "/usr/include/stdio.h", Package: "libc6-dev", Why: "dom0 kernel build (host programs); gcc only recommends it"},
		{Name: "make", Check: "make", Package: "make", Why: "dom0 kernel build"},
		{Name: "bc", Check: "bc", Package: "bc", Why: "dom0 kernel build"},
		{Name: "bison", Check: "bison", Package: "bison", Why: "dom0 kernel build"},
		{Name: "flex", Check: "flex", Package: "flex", Why: "dom0 kernel build"},
		{Name: "libelf headers", Check: "/usr/include/gelf.h", Package: "libelf-dev", Why: "dom0 kernel build (objtool)"},
		{Name: "openssl headers", Check: "/usr/include/openssl/ssl.h", Package: "libssl-dev", Why: "dom0 kernel build"},
		{Name: "perl", Check: "perl", Package: "perl", Why: "dom0 kernel build"},
		{Name: "patch", Check: "patch", Package: "patch", Why: "kernel builds with patches (qemu-q35's demo guest kernel)"},
		{Name: "file", Check: "file", Package: "file", Why: "tests that identify outputs"},
		{Name: "pgrep", Check: "pgrep", Package: "procps", Why: "tests that check no child process survives"},
		{Name: "git", Check: "git", Package: "git", Why: "the version test builds fwbuild from a clone; a `go run` fwbuild asks git for its revision"},
		{Name: "bash-completion", Check: "/usr/share/bash-completion/bash_completion", Package: "bash-completion", Why: "`fwbuild completion bash` scripts need it (as every cobra tool's do); the completion test"},
		{Name: "gcab", Check: "gcab", Package: "gcab", Why: "tests that read the update cabinet with libgcab, fwupd's reader"},
		{Name: "fwupdtool", Check: "fwupdtool", Package: "fwupd", Why: "tests that have fwupd's own tool parse the update cabinet"},
		{Name: "go", Check: "go", Package: "", Why: "u-root builds the control domain with the Go toolchain (install Go >= 1.25 from go.dev)"},
	}
}

func (t *hostTool) probe() {
	if strings.HasPrefix(t.Check, "/") {
		_, err := os.Stat(t.Check)
		t.Found = err == nil
		return
	}
	_, err := exec.LookPath(t.Check)
	t.Found = err == nil
}

func (e *env) doctorCommand() *cobra.Command {
	var fix bool
	c := &cobra.Command{
		Use:     "doctor [--fix]",
		Short:   "check the host tools fwbuild needs (--fix installs them)",
		Example: "  fwbuild doctor\n  sudo fwbuild doctor --fix\n  fwbuild doctor --json",
		Args:    noArgs,
		RunE:    runE(func(*cobra.Command, []string) error { return e.doctor(&fix) }),
	}
	c.Flags().BoolVar(&fix, "fix", false, "install what is missing with apt-get (as root)")
	return c
}

func (e *env) doctor(fix *bool) error {
	tools := hostTools()
	var missing []string
	seen := map[string]bool{}
	noPkg := []string{}
	for i := range tools {
		tools[i].probe()
		if tools[i].Found {
			continue
		}
		if tools[i].Package == "" {
			noPkg = append(noPkg, tools[i].Name+": "+tools[i].Why)
		} else if !seen[tools[i].Package] {
			seen[tools[i].Package] = true
			missing = append(missing, tools[i].Package)
		}
	}
	install := "apt-get update && apt-get install -y --no-install-recommends " + strings.Join(missing, " ")
	if !*fix {
		if e.json {
			if err := e.printJSON(map[string]any{"tools": tools, "missing_packages": missing, "install": install}); err != nil {
				return err
			}
		} else {
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			for _, t := range tools {
				state := "ok"
				if !t.Found {
					state = "MISSING"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", state, t.Name, t.Package, t.Why)
			}
			tw.Flush()
			if len(missing) > 0 {
				fmt.Fprintf(e.stdout, "\nto install what is missing (as root):\n  %s\nor run: fwbuild doctor --fix\n", install)
			}
		}
		if len(missing)+len(noPkg) > 0 {
			return fmt.Errorf("%d host tools missing", len(missing)+len(noPkg))
		}
		return nil
	}
	if len(noPkg) > 0 {
		return fmt.Errorf("cannot install with apt: %s", strings.Join(noPkg, "; "))
	}
	if len(missing) == 0 {
		// fetch needs apt's package lists even when every tool is installed.
		if lists, _ := filepath.Glob("/var/lib/apt/lists/*_Packages*"); len(lists) == 0 {
			cmd := exec.CommandContext(e.ctx, "apt-get", "update", "-q")
			cmd.Stdout, cmd.Stderr = e.stderr, e.stderr
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("apt-get update: %w (run as root on a Debian 12 host)", err)
			}
		}
		fmt.Fprintln(e.stdout, "all host tools present")
		return nil
	}
	fmt.Fprintf(e.stderr, "running: %s\n", install)
	for _, argv := range [][]string{
		{"apt-get", "update", "-q"},
		append([]string{"apt-get", "install", "-y", "-q", "--no-install-recommends"}, missing...),
	} {
		cmd := exec.CommandContext(e.ctx, argv[0], argv[1:]...)
		cmd.Stdout, cmd.Stderr = e.stderr, e.stderr
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: %w (run as root on a Debian 12 host)", strings.Join(argv, " "), err)
		}
	}
	for i := range tools {
		if tools[i].probe(); !tools[i].Found {
			return fmt.Errorf("%s still missing after installing %s", tools[i].Name, tools[i].Package)
		}
	}
	fmt.Fprintln(e.stdout, "all host tools present")
	return nil
}
