package qemutests

// Tests that boot real QEMU with Debian's OVMF (and Xen, Linux, GRUB for the
// boot-chain markers), under TCG.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/internal/testdeps"
)

// helperEnv makes the test binary act as the parent of QEMU for
// TestKillParentLeavesNoQEMU instead of running tests.
const helperEnv = "FWBUILD_QEMUTESTS_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(helperMain())
	}
	os.Exit(m.Run())
}

// requireTool fails the test when a host tool is missing, naming the package.
func requireTool(t testing.TB, tool, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		t.Fatalf("%s not found: apt-get install -y %s", tool, pkg)
	}
}

func requireQEMU(t testing.TB) { requireTool(t, "qemu-system-x86_64", "qemu-system-x86") }

// stockOVMF boots Debian's OVMF (the qemu-q35 board's pinned package).
func stockOVMF(t testing.TB) Firmware {
	return PflashOVMF(testdeps.File(t, "ovmf", "code"), testdeps.File(t, "ovmf", "vars"))
}

// shellMarkers are what stock OVMF prints with no bootable disk: BDS falls
// back to the built-in UEFI Shell, which prints its banner and, after a 5 s
// startup.nsh countdown, its prompt.
func shellMarkers() []Marker {
	return []Marker{
		Regexp("bds", `BdsDxe: starting Boot[0-9A-F]{4} "(EFI Internal Shell)"`, TimeoutFirmware),
		Substring("shell", "UEFI Interactive Shell", 10*time.Second),
		Substring("prompt", "Shell>", 10*time.Second),
	}
}

func logMatches(t testing.TB, res Result) {
	for _, m := range res.Matches {
		t.Logf("%8.3fs %-8s %q %s", m.At.Seconds(), m.Marker.Name, m.Values, m.Line)
	}
}

func TestOVMFShell(t *testing.T) {
	requireQEMU(t)
	for _, serial := range []Serial{SerialStdio, SerialSocket} {
		t.Run(fmt.Sprintf("serial=%d", serial), func(t *testing.T) {
			var pid int
			res, err := Run(context.Background(), Machine{Firmware: stockOVMF(t), Serial: serial, MemoryMiB: 512},
				shellMarkers(), Options{LogPath: filepath.Join(t.TempDir(), "serial.log"), OnStart: func(p int) { pid = p }})
			if err != nil {
				t.Fatal(err)
			}
			logMatches(t, res)
			if got := res.Matches[0].Values; len(got) != 1 || got[0] != "EFI Internal Shell" {
				t.Errorf("bds values %q", got)
			}
			// The Shell waits 5 s for a key before its prompt.
			if d := res.Matches[2].At - res.Matches[1].At; d < 4*time.Second {
				t.Errorf("prompt %v after the banner; want the 5 s countdown in between", d)
			}
			if res.Accel != "tcg" {
				t.Errorf("accel %q, want tcg by default", res.Accel)
			}
			log, err := os.ReadFile(res.LogPath)
			if err != nil || !strings.Contains(string(log), "UEFI Interactive Shell") {
				t.Errorf("console log %s lacks the banner (%v)", res.LogPath, err)
			}
			assertGroupGone(t, pid)
		})
	}
}

// A marker that cannot appear fails with the tail of a real console.
func TestOVMFMissingMarker(t *testing.T) {
	requireQEMU(t)
	markers := append(shellMarkers()[:2], Substring("xen", "(XEN) Xen version", 2*time.Second))
	_, err := Run(context.Background(), Machine{Firmware: stockOVMF(t), MemoryMiB: 512}, markers,
		Options{LogPath: filepath.Join(t.TempDir(), "serial.log"), TimeoutScale: 1})
	var me *MarkerError
	if !errors.As(err, &me) || !errors.Is(err, ErrMarkerTimeout) || me.Missing.Name != "xen" {
		t.Fatalf("err = %v, want a timeout on marker xen", err)
	}
	if !strings.Contains(strings.Join(me.Tail, "\n"), "UEFI Interactive Shell") {
		t.Errorf("tail lacks the Shell banner: %q", me.Tail)
	}
	t.Log(err)
}

// Cancelling the context mid-boot (OVMF has reached BDS) kills QEMU at once
// and leaves nothing in its process group.
func TestCancelMidBootLeavesNoQEMU(t *testing.T) {
	requireQEMU(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var pid int
	var cancelled time.Time
	markers := append(shellMarkers()[:1], Substring("never", "never printed", 10*time.Minute))
	_, err := Run(ctx, Machine{Firmware: stockOVMF(t), MemoryMiB: 512}, markers, Options{
		LogPath: filepath.Join(t.TempDir(), "serial.log"),
		OnStart: func(p int) {
			pid = p
			if !becomesQEMU(p) {
				t.Errorf("pid %d is not QEMU", p)
			}
		},
		OnMarker: func(Match) { cancelled = time.Now(); cancel() },
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if d := time.Since(cancelled); d > 5*time.Second {
		t.Errorf("Run returned %v after the cancel", d)
	}
	assertDead(t, pid, time.Second)
	assertGroupGone(t, pid)
}

// When the Go process that started QEMU is SIGKILLed (no deferred cleanup
// runs), the kernel kills QEMU through Pdeathsig.
func TestKillParentLeavesNoQEMU(t *testing.T) {
	requireQEMU(t)
	helper := exec.Command(os.Args[0], "-test.run=^$")
	helper.Env = append(os.Environ(), helperEnv+"=1",
		"HELPER_OVMF_CODE="+testdeps.File(t, "ovmf", "code"),
		"HELPER_OVMF_VARS="+testdeps.File(t, "ovmf", "vars"),
		"HELPER_LOG="+filepath.Join(t.TempDir(), "serial.log"))
	helper.Stderr = os.Stderr
	out, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	qemuPid := 0
	t.Cleanup(func() {
		helper.Process.Kill()
		helper.Wait()
		if qemuPid > 0 && isQEMU(qemuPid) {
			syscall.Kill(qemuPid, syscall.SIGKILL) // do not leave a stray after a failure
		}
	})
	lines := bufio.NewScanner(out)
	midBoot := false
	for !midBoot && lines.Scan() {
		f := strings.Fields(lines.Text())
		switch {
		case len(f) == 2 && f[0] == "qemu-pid":
			qemuPid, _ = strconv.Atoi(f[1])
		case len(f) == 2 && f[0] == "marker" && f[1] == "bds":
			midBoot = true
		}
	}
	if qemuPid == 0 || !midBoot {
		t.Fatalf("helper did not report QEMU's pid (%d) and the BDS marker (%v): %v", qemuPid, midBoot, lines.Err())
	}
	if !isQEMU(qemuPid) {
		t.Fatalf("pid %d is not a running QEMU", qemuPid)
	}
	if err := helper.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	helper.Wait()
	assertDead(t, qemuPid, 10*time.Second)
	assertGroupGone(t, qemuPid)
}

// helperMain runs in the child test binary: it boots OVMF, reports QEMU's
// pid and the first marker on stdout, and waits for ever (until killed).
func helperMain() int {
	fw := PflashOVMF(os.Getenv("HELPER_OVMF_CODE"), os.Getenv("HELPER_OVMF_VARS"))
	shell := shellMarkers()
	_, err := Run(context.Background(), Machine{Firmware: fw, MemoryMiB: 512},
		[]Marker{shell[0], Substring("never", "never printed", time.Hour)},
		Options{
			LogPath:  os.Getenv("HELPER_LOG"),
			OnStart:  func(pid int) { fmt.Printf("qemu-pid %d\n", pid) },
			OnMarker: func(m Match) { fmt.Printf("marker %s\n", m.Marker.Name) },
		})
	fmt.Fprintln(os.Stderr, "helper: Run returned:", err)
	return 1
}

// isQEMU reports whether pid is a live QEMU process.
// becomesQEMU is isQEMU for a process just started: exec has returned to
// the parent before the kernel fills in the new program's command line
// (load_elf_binary sets it after the close-on-exec pipe that signals success
// is closed), so an empty one is read again for a moment.
func becomesQEMU(pid int) bool {
	for end := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if isQEMU(pid) {
			return true
		}
		if time.Now().After(end) {
			return false
		}
	}
}

func isQEMU(pid int) bool {
	cmd, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	st, ok := procStat(pid)
	return err == nil && ok && st.state != "Z" && strings.Contains(string(cmd), "qemu-system")
}

// fatImage makes a FAT32 image of sizeMiB holding files (image path ->
// host path), with mkfs.vfat and mcopy as a USB key would be made by hand.
func fatImage(t testing.TB, sizeMiB int, files map[string]string) string {
	t.Helper()
	requireTool(t, "mkfs.vfat", "dosfstools")
	requireTool(t, "mcopy", "mtools")
	img := filepath.Join(t.TempDir(), "usb.img")
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	}
	run("mkfs.vfat", "-F", "32", "-C", img, strconv.Itoa(sizeMiB<<10))
	dirs := map[string]bool{}
	for dst := range files {
		for d := filepath.Dir(dst); d != "/" && d != "."; d = filepath.Dir(d) {
			dirs[d] = true
		}
	}
	for len(dirs) > 0 { // parents first
		for d := range dirs {
			if !dirs[filepath.Dir(d)] {
				run("mmd", "-i", img, "::"+d)
				delete(dirs, d)
			}
		}
	}
	for dst, src := range files {
		run("mcopy", "-i", img, src, "::"+dst)
	}
	return img
}

func writeFile(t testing.TB, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Xen's command line for QEMU tests (FIELD-NOTES: bootscrub=false saves
// 10-16 s per boot under TCG; no noreboot, so a crash ends QEMU).
const testXenOptions = "console=com1 com1=115200,8n1 loglvl=all guest_loglvl=all dom0_mem=512M,max:512M bootscrub=false"

// checkVersions asserts the xen and linux captures against qemu-q35's pins.
func checkVersions(t *testing.T, res Result) {
	for _, m := range res.Matches {
		switch m.Marker.Name {
		case "xen":
			if !strings.HasPrefix(m.Values[0], "4.17.") {
				t.Errorf("Xen version %q, want 4.17.x", m.Values[0])
			}
		case "linux":
			if !strings.HasPrefix(m.Values[0], "6.1.0-") {
				t.Errorf("Linux version %q, want 6.1.0-*", m.Values[0])
			}
		}
	}
}

// The USB chain's markers up to the dom0 kernel, on a hand-made key: stock
// OVMF boots Debian's xen.efi as EFI/BOOT/BOOTX64.EFI, which reads
// BOOTX64.cfg and starts Debian's kernel as dom0 (it panics later for want
// of an initramfs; the kernel's banner is all this test needs).
func TestBootChainUSBMarkers(t *testing.T) {
	requireQEMU(t)
	cfg := writeFile(t, t.TempDir(), "BOOTX64.cfg", "[global]\ndefault=xen\n\n[xen]\noptions="+testXenOptions+
		"\nkernel=vmlinuz console=hvc0 earlyprintk=xen\n")
	usb := fatImage(t, 64, map[string]string{
		"/EFI/BOOT/BOOTX64.EFI": testdeps.File(t, "xen", "efi"),
		"/EFI/BOOT/BOOTX64.cfg": cfg,
		"/EFI/BOOT/vmlinuz":     testdeps.File(t, "linux-image", "bzimage"),
	})
	chain, err := BootChain(ChainUSB)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), Machine{Firmware: stockOVMF(t), Disks: []Disk{USBKey(usb)}},
		chain[:3], Options{LogPath: filepath.Join(t.TempDir(), "serial.log")})
	if err != nil {
		t.Fatal(err)
	}
	logMatches(t, res)
	if d := res.Matches[0].Values[0]; !strings.Contains(d, "QEMU USB HARDDRIVE") {
		t.Errorf("boot option %q, want QEMU's USB disk", d)
	}
	checkVersions(t, res)
}

// The SPI chain's GRUB, Xen and Linux markers: a GRUB standalone image whose
// memdisk holds xen.gz, the kernel and a grub.cfg (as hvcore builds the flash
// payload), started here from a USB key; from flash the launcher's line and
// the BDS line differ, and TestBootSPI and TestLauncherOnOVMF2M check those.
func TestBootChainGRUBMarkers(t *testing.T) {
	requireQEMU(t)
	requireTool(t, "grub-mkimage", "grub-common")
	requireTool(t, "tar", "tar")
	dir := t.TempDir()
	md := filepath.Join(dir, "memdisk")
	if err := os.MkdirAll(filepath.Join(md, "boot", "grub"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, md, "boot/grub/grub.cfg", "serial --unit=0 --speed=115200\nterminal_output serial console\n"+
		"multiboot2 /xen.gz "+testXenOptions+"\nmodule2 /vmlinuz console=hvc0 earlyprintk=xen\nboot\n")
	for dst, src := range map[string]string{"xen.gz": testdeps.File(t, "xen", "gz"), "vmlinuz": testdeps.File(t, "linux-image", "bzimage")} {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, md, dst, string(data))
	}
	tarPath := filepath.Join(dir, "memdisk.tar")
	grubEFI := filepath.Join(dir, "grubx64.efi")
	for _, c := range [][]string{
		{"tar", "-C", md, "-cf", tarPath, "."},
		{"grub-mkimage", "-O", "x86_64-efi", "-d", testdeps.File(t, "grub", "modules"), "-p", "(memdisk)/boot/grub",
			"-m", tarPath, "-o", grubEFI, "memdisk", "tar", "normal", "configfile", "echo", "serial", "terminal",
			"multiboot2", "gzio", "xzio", "boot"},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(c, " "), err, out)
		}
	}
	usb := fatImage(t, 64, map[string]string{"/EFI/BOOT/BOOTX64.EFI": grubEFI})
	usbChain, _ := BootChain(ChainUSB)
	spiChain, _ := BootChain(ChainSPI)
	markers := append([]Marker{usbChain[0]}, spiChain[2:5]...) // bds(USB), grub, xen, linux
	res, err := Run(context.Background(), Machine{Firmware: stockOVMF(t), Disks: []Disk{USBKey(usb)}},
		markers, Options{LogPath: filepath.Join(dir, "serial.log")})
	if err != nil {
		t.Fatal(err)
	}
	logMatches(t, res)
	checkVersions(t, res)
}

// BenchmarkOVMFShell measures stock OVMF under TCG from QEMU's start to the
// UEFI Shell's prompt (which includes the Shell's 5 s countdown), and
// reports the time to BDS separately.
func BenchmarkOVMFShell(b *testing.B) {
	requireQEMU(b)
	fw := stockOVMF(b)
	markers := shellMarkers()
	log := filepath.Join(b.TempDir(), "serial.log")
	var total, bds time.Duration
	n := 0
	for b.Loop() {
		res, err := Run(context.Background(), Machine{Firmware: fw, MemoryMiB: 512}, markers, Options{LogPath: log})
		if err != nil {
			b.Fatal(err)
		}
		total += res.Elapsed
		bds += res.Matches[0].At
		n++
	}
	b.ReportMetric(total.Seconds()/float64(n), "s/boot")
	b.ReportMetric(bds.Seconds()/float64(n), "s-to-bds/boot")
}
