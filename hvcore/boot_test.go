package hvcore

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fwbuild/fwbuild/internal/testdeps"
	qemutests "github.com/fwbuild/fwbuild/qemu-tests"
)

// initMarker is printed by the test initramfs's /init.
const initMarker = "HVCORE-TEST-INIT: hello from the initramfs"

// initSource is a static /init: it mounts devtmpfs (the archive has no
// /dev/console), prints the marker on the console and powers off, which
// makes Xen power off and QEMU exit.
const initSource = `package main

import (
	"os"
	"syscall"
)

func main() {
	os.Mkdir("/dev", 0o755)
	syscall.Mount("devtmpfs", "/dev", "devtmpfs", 0, "")
	if f, err := os.OpenFile("/dev/console", os.O_WRONLY, 0); err == nil {
		f.WriteString("` + initMarker + `\n")
		f.Close()
	}
	syscall.Sync()
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}
`

// testInitramfs builds the /init above and packs it as a newc cpio.
func testInitramfs(t *testing.T) []byte {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatal("go not found on PATH (needed to build the test /init)")
	}
	dir := t.TempDir()
	for name, body := range map[string]string{"go.mod": "module hvcoretestinit\n\ngo 1.22\n", "main.go": initSource} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", "init", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOWORK=off", "GOFLAGS=", "GOTOOLCHAIN=local")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the test /init: %v\n%s", err, out)
	}
	bin, err := os.ReadFile(filepath.Join(dir, "init"))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	entry := func(name string, mode uint32, data []byte) {
		fmt.Fprintf(&b, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			1, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
		b.WriteString(name + "\x00")
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
		b.Write(data)
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
	}
	entry("init", 0o100755, bin)
	entry("TRAILER!!!", 0, nil)
	return b.Bytes()
}

func needHostTools(t *testing.T, tools map[string]string) {
	t.Helper()
	for tool, pkg := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: apt-get install %s", tool, pkg)
		}
	}
}

// espImage puts payload on a FAT ESP as the removable-media boot loader.
func espImage(t *testing.T, payload []byte) string {
	t.Helper()
	dir := t.TempDir()
	efi, img := filepath.Join(dir, "BOOTX64.EFI"), filepath.Join(dir, "esp.img")
	if err := os.WriteFile(efi, payload, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"mkfs.vfat", "-C", img, "65536"},
		{"mmd", "-i", img, "::/EFI", "::/EFI/BOOT"},
		{"mcopy", "-i", img, efi, "::/EFI/BOOT/BOOTX64.EFI"},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return img
}

// bootExpect boots esp with OVMF under TCG and waits for markers in order
// on the serial console. One vCPU: TCG runs it on one host thread, which
// keeps the boot time steady on a busy two-core machine.
func bootExpect(t *testing.T, code, vars, esp string, markers []string) {
	t.Helper()
	var ms []qemutests.Marker
	for _, m := range markers {
		ms = append(ms, qemutests.Substring(m, m, 0))
	}
	m := qemutests.Machine{SMP: 1, Firmware: qemutests.PflashOVMF(code, vars), Disks: []qemutests.Disk{qemutests.RawDisk(esp)}}
	if _, err := qemutests.Run(context.Background(), m, ms, qemutests.Options{
		LogPath:  filepath.Join(t.TempDir(), "console.log"),
		OnMarker: func(mt qemutests.Match) { t.Logf("%6.1fs %s", mt.At.Seconds(), mt.Marker.Name) },
	}); err != nil {
		t.Fatal(err)
	}
}

// TestBootPayloads boots both payloads with Debian's Xen and dom0 kernel
// and a tiny initramfs, and follows the serial console to the initramfs.
func TestBootPayloads(t *testing.T) {
	needHostTools(t, map[string]string{"qemu-system-x86_64": "qemu-system-x86", "mkfs.vfat": "dosfstools",
		"mcopy": "mtools", "mmd": "mtools", "grub-mkimage": "grub-common", "xz": "xz-utils"})
	initrd := testInitramfs(t)
	kernel := readFile(t, "linux-image", "bzimage")
	if err := CheckDom0Kernel(kernel, readFile(t, "linux-image", "config"), "linux-image-amd64"); err != nil {
		t.Fatal(err)
	}
	cfg, err := XenConfig(XenConfigSpec{XenOptions: testXenOpts, Dom0Cmdline: testDom0Opts})
	if err != nil {
		t.Fatal(err)
	}
	unified, err := UnifiedEFI(readFile(t, "xen", "efi"), Sections{Config: cfg, Kernel: kernel, Ramdisk: initrd})
	if err != nil {
		t.Fatal(err)
	}
	s := grubSpec(t)
	s.Kernel, s.Initrd = kernel, initrd
	grub, err := buildGrubData(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}

	// "Bootloader:" tells which path Xen came up through; the command lines
	// prove that xen.cfg / grub.cfg reached Xen and dom0.
	code, vars := testdeps.File(t, "ovmf", "code"), testdeps.File(t, "ovmf", "vars")
	tail := []string{"(XEN) Command line: " + testXenOpts, "Linux version 6.1", "Command line: " + testDom0Opts, initMarker}
	// In parallel: each QEMU runs one vCPU thread, so two fit on two cores.
	t.Run("unified-esp", func(t *testing.T) {
		t.Parallel()
		bootExpect(t, code, vars, espImage(t, unified), append([]string{"(XEN) Xen version 4.17", "(XEN) Bootloader: EFI"}, tail...))
	})
	t.Run("grub", func(t *testing.T) {
		t.Parallel()
		bootExpect(t, code, vars, espImage(t, grub), append([]string{"(XEN) Xen version 4.17", "(XEN) Bootloader: GRUB"}, tail...))
	})
}
