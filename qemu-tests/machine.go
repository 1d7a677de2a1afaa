package qemutests

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Environment variables read by Run when the matching setting is left zero.
const (
	// envKVM set to "1" asks for KVM (used only if /dev/kvm works).
	envKVM = "FWBUILD_KVM"
	// envTimeoutScale overrides the factor applied to marker timeouts.
	envTimeoutScale = "FWBUILD_TIMEOUT_SCALE"
)

// Default scale of marker timeouts per accelerator.
const (
	tcgTimeoutScale = 3.0
	kvmTimeoutScale = 1.0
)

// Machine holds the plain settings QEMU is started from. Zero fields take the
// defaults noted on them.
type Machine struct {
	Binary    string // default "qemu-system-x86_64" (looked up in PATH)
	Machine   string // default "q35"
	CPU       string // default "qemu64,+svm" under TCG, "host" under KVM
	MemoryMiB int    // default 2048
	SMP       int    // default 2
	// Accel is "tcg", "kvm" or "" (TCG unless $FWBUILD_KVM=1). KVM falls
	// back to TCG when /dev/kvm does not work.
	Accel    string
	Firmware Firmware
	Disks    []Disk
	// Serial selects where the first serial port goes; the zero value is
	// QEMU's stdout.
	Serial Serial
	// Args are appended to the generated command line as they are.
	Args []string
}

// Serial is where the guest's first serial port goes.
type Serial int

const (
	// SerialStdio puts the serial port on QEMU's stdout (-serial stdio).
	SerialStdio Serial = iota
	// SerialSocket puts it on a unix-socket chardev that Run connects to;
	// QEMU's own stdout and stderr are still logged.
	SerialSocket
)

type firmwareKind int

const (
	fwNone firmwareKind = iota
	fwPflash
	fwBIOS
	fwSplit
	fwPflashFile
)

// Firmware is how the machine gets its UEFI: see PflashOVMF, BIOS and
// SplitPflash. The zero value adds no firmware option (SeaBIOS).
type Firmware struct {
	kind     firmwareKind
	code     string
	vars     string
	varsSize int64
}

// PflashOVMF maps code read-only as pflash unit 0 and a private copy of
// varsTemplate as unit 1; the template is never written.
func PflashOVMF(code, varsTemplate string) Firmware {
	return Firmware{kind: fwPflash, code: code, vars: varsTemplate}
}

// Persistent is f (a PflashOVMF firmware) with its variable store in the
// file vars, written in place: a copy of the template the first time, then
// whatever the last boot left, as a real machine's flash keeps it (boot
// options, BootOrder, BootNext).
func (f Firmware) Persistent(vars string) (Firmware, error) {
	if f.kind != fwPflash {
		return Firmware{}, errors.New("machine: only a pflash OVMF has a variable store to keep")
	}
	if _, err := os.Stat(vars); errors.Is(err, fs.ErrNotExist) {
		if _, err := copyFile(vars, f.vars); err != nil {
			return Firmware{}, err
		}
	}
	return Firmware{kind: fwPflashFile, code: f.code, vars: vars}, nil
}

// BIOS loads a whole chip image with -bios (up to 32 MiB, a multiple of
// 64 KiB); it is ROM, so UEFI variables are volatile.
func BIOS(path string) Firmware {
	return Firmware{kind: fwBIOS, code: path}
}

// SplitPflash boots an 8 MiB-or-smaller chip image whose first varsSize bytes
// are the variable store: a copy of that part becomes pflash unit 1 and the
// rest read-only unit 0. (CODE must be read-only: OVMF probes for its store
// inside it and would erase part of the payload.)
func SplitPflash(chip string, varsSize int64) Firmware {
	return Firmware{kind: fwSplit, code: chip, varsSize: varsSize}
}

type diskKind int

const (
	diskUSB diskKind = iota
	diskRaw
	diskVirtio
)

// Disk is a raw disk image attached to the machine.
type Disk struct {
	kind diskKind
	path string
	// ReadWrite lets the guest write to the image file. By default
	// writes go to a throw-away overlay (snapshot=on) so a test never
	// changes a built artefact.
	ReadWrite bool
	// serial and addr are a virtio disk's serial number and PCI slot.
	serial, addr string
}

// USBKey attaches path as a USB mass-storage device on an xHCI controller.
func USBKey(path string) Disk { return Disk{kind: diskUSB, path: path} }

// RawDisk attaches path as the machine's default disk type (SATA on q35).
func RawDisk(path string) Disk { return Disk{kind: diskRaw, path: path} }

// VirtioDisk attaches path as a virtio-blk PCI disk with a serial number
// (Linux shows it in /sys/block/vdX/serial) at PCI slot addr ("05.0"; ""
// lets QEMU choose), written through to the file (a data disk that must
// outlive the boot).
func VirtioDisk(path, serial, addr string) Disk {
	return Disk{kind: diskVirtio, path: path, serial: serial, addr: addr, ReadWrite: true}
}

// Path is the disk's image file.
func (d Disk) Path() string { return d.path }

// WithPath is the same disk (kind, serial, slot) backed by another file.
func (d Disk) WithPath(p string) Disk { d.path = p; return d }

// pflashMax is QEMU's limit on the total pflash size.
const pflashMax = 8 << 20

// resolveAccel picks the accelerator, and says why when it is not the one
// asked for.
func resolveAccel(asked string, getenv func(string) string, kvmCheck func() error, log *slog.Logger) (string, error) {
	switch asked {
	case "":
		if getenv(envKVM) != "1" {
			return "tcg", nil
		}
	case "tcg":
		return "tcg", nil
	case "kvm":
	default:
		return "", fmt.Errorf("machine: accel %q is not supported; use \"tcg\", \"kvm\" or leave it empty", asked)
	}
	if err := kvmCheck(); err != nil {
		log.Warn("qemu-tests: KVM asked for but not usable; using TCG", "err", err)
		return "tcg", nil
	}
	return "kvm", nil
}

// resolveScale returns the factor applied to marker timeouts.
func resolveScale(opt float64, accel string, getenv func(string) string) (float64, error) {
	if opt < 0 {
		return 0, fmt.Errorf("options: TimeoutScale %v is negative", opt)
	}
	if opt > 0 {
		return opt, nil
	}
	if v := getenv(envTimeoutScale); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			return 0, fmt.Errorf("$%s=%q: want a positive number such as 2 or 0.5", envTimeoutScale, v)
		}
		return f, nil
	}
	if accel == "kvm" {
		return kvmTimeoutScale, nil
	}
	return tcgTimeoutScale, nil
}

// kvmUsable reports why /dev/kvm cannot run a VM, or nil. It cannot tell
// whether a given guest runs under it (OVMF does not on nested hosts).
func kvmUsable() error {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	const kvmGetAPIVersion, kvmCreateVM = 0xAE00, 0xAE01
	v, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), kvmGetAPIVersion, 0)
	if errno != 0 {
		return fmt.Errorf("/dev/kvm: KVM_GET_API_VERSION: %w", errno)
	}
	if v != 12 {
		return fmt.Errorf("/dev/kvm: API version %d, want 12", v)
	}
	vm, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), kvmCreateVM, 0)
	if errno != 0 {
		return fmt.Errorf("/dev/kvm: KVM_CREATE_VM: %w", errno)
	}
	syscall.Close(int(vm))
	return nil
}

// qemuPath escapes a file name for a QEMU option value (commas double).
func qemuPath(p string) string { return strings.ReplaceAll(p, ",", ",,") }

// args returns QEMU's arguments for accel, writing the variable-store copies
// and split images it needs into work. socket is the serial chardev's path
// for SerialSocket.
func (m Machine) args(accel, work, socket string) ([]string, error) {
	machine, cpu, mem, smp := m.Machine, m.CPU, m.MemoryMiB, m.SMP
	if machine == "" {
		machine = "q35"
	}
	if cpu == "" {
		cpu = "qemu64,+svm"
		if accel == "kvm" {
			cpu = "host"
		}
	}
	if mem == 0 {
		mem = 2048
	}
	if smp == 0 {
		smp = 2
	}
	if mem < 0 || smp < 0 {
		return nil, fmt.Errorf("machine: MemoryMiB %d and SMP %d must not be negative", mem, smp)
	}
	a := []string{
		"-machine", machine, "-accel", accel, "-cpu", cpu,
		"-m", strconv.Itoa(mem), "-smp", strconv.Itoa(smp),
		"-nic", "none", "-nographic", "-no-reboot", "-monitor", "none",
	}
	switch m.Serial {
	case SerialStdio:
		a = append(a, "-serial", "stdio")
	case SerialSocket:
		a = append(a, "-chardev", "socket,id=fwserial0,server=on,wait=on,path="+qemuPath(socket),
			"-serial", "chardev:fwserial0")
	default:
		return nil, fmt.Errorf("machine: unknown Serial %d", m.Serial)
	}
	fw, err := m.Firmware.args(work)
	if err != nil {
		return nil, err
	}
	a = append(a, fw...)
	usb := 0
	for i, d := range m.Disks {
		if _, err := os.Stat(d.path); err != nil {
			return nil, fmt.Errorf("machine: disk %d: %w", i+1, err)
		}
		opt := "format=raw,file=" + qemuPath(d.path)
		if !d.ReadWrite {
			opt += ",snapshot=on"
		}
		switch d.kind {
		case diskUSB:
			if usb == 0 {
				a = append(a, "-device", "qemu-xhci,id=fwxhci")
			}
			id := fmt.Sprintf("fwusb%d", usb)
			a = append(a, "-drive", "if=none,id="+id+","+opt,
				"-device", "usb-storage,bus=fwxhci.0,drive="+id)
			usb++
		case diskRaw:
			a = append(a, "-drive", opt)
		case diskVirtio:
			id := fmt.Sprintf("fwvd%d", i)
			dev := "virtio-blk-pci,drive=" + id
			if d.serial != "" {
				dev += ",serial=" + qemuPath(d.serial)
			}
			if d.addr != "" {
				dev += ",addr=" + d.addr
			}
			a = append(a, "-drive", "if=none,id="+id+","+opt, "-device", dev)
		}
	}
	return append(a, m.Args...), nil
}

func (f Firmware) args(work string) ([]string, error) {
	switch f.kind {
	case fwNone:
		return nil, nil
	case fwBIOS:
		st, err := os.Stat(f.code)
		if err != nil {
			return nil, fmt.Errorf("machine: BIOS image: %w", err)
		}
		if st.Size()%(64<<10) != 0 || st.Size() > 32<<20 {
			return nil, fmt.Errorf("machine: BIOS image %s is %d bytes; QEMU's -bios needs a multiple of 64 KiB up to 32 MiB", f.code, st.Size())
		}
		return []string{"-bios", f.code}, nil
	case fwPflashFile:
		return pflashArgs(f.code, f.vars), nil
	case fwPflash:
		code, err := os.Stat(f.code)
		if err != nil {
			return nil, fmt.Errorf("machine: OVMF code: %w", err)
		}
		vars := filepath.Join(work, "vars.fd")
		n, err := copyFile(vars, f.vars)
		if err != nil {
			return nil, fmt.Errorf("machine: copy OVMF variable store template: %w", err)
		}
		if code.Size()+n > pflashMax {
			return nil, fmt.Errorf("machine: OVMF code %s and vars %s total %d bytes; QEMU's pflash takes at most %d (use BIOS for larger images)", f.code, f.vars, code.Size()+n, pflashMax)
		}
		return pflashArgs(f.code, vars), nil
	case fwSplit:
		data, err := os.ReadFile(f.code)
		if err != nil {
			return nil, fmt.Errorf("machine: chip image: %w", err)
		}
		if int64(len(data)) > pflashMax || f.varsSize <= 0 || f.varsSize >= int64(len(data)) {
			return nil, fmt.Errorf("machine: chip image %s is %d bytes and its variable store %d; split pflash needs 0 < store < size <= %d", f.code, len(data), f.varsSize, pflashMax)
		}
		code, vars := filepath.Join(work, "code.fd"), filepath.Join(work, "vars.fd")
		if err := os.WriteFile(vars, data[:f.varsSize], 0o644); err != nil {
			return nil, fmt.Errorf("machine: split chip image: %w", err)
		}
		if err := os.WriteFile(code, data[f.varsSize:], 0o444); err != nil {
			return nil, fmt.Errorf("machine: split chip image: %w", err)
		}
		return pflashArgs(code, vars), nil
	}
	return nil, errors.New("machine: unknown firmware kind")
}

func pflashArgs(code, vars string) []string {
	return []string{
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + qemuPath(code),
		"-drive", "if=pflash,format=raw,unit=1,file=" + qemuPath(vars),
	}
}

func copyFile(dst, src string) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return n, err
}
