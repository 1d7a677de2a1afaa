//go:build linux

// Command guestinit is /init of fwbuild's test guests: a static binary (built
// with CGO_ENABLED=0) that proves a guest domain booted. It mounts proc, sys
// and devtmpfs (and xenfs when the kernel has it), reads the domain's id from
// xenstore, prints contract.GuestUp on the console (or contract.GuestInitFailed),
// and then powers the domain off or idles, as the kernel command line's
// contract.GuestParams say.
//
// Package initramfs builds it from these sources (embedded in fwbuild with
// the contract package), so it may import only the standard library and
// the contract package.
package main

import (
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/fwbuild/fwbuild/contract"
)

func main() {
	con := console()
	p := setup(con)
	if p.After == contract.AfterRun {
		// Sleep rather than block forever: as PID 1 with nothing else
		// to run, select{} would be a runtime deadlock panic.
		for {
			time.Sleep(time.Hour)
		}
	}
	syscall.Sync()
	err := syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
	// PID 1 must not exit (the kernel would panic), so idle.
	fmt.Fprintln(con, contract.GuestInitFailed{Name: p.Name, Step: "poweroff", Reason: err.Error()})
	for {
		time.Sleep(time.Hour)
	}
}

// setup does the work and prints the status line; it returns the command
// line parameters, the defaults when they cannot be read.
func setup(con io.Writer) contract.GuestParams {
	p := contract.GuestParams{Name: "unnamed", After: contract.AfterPoweroff}
	fail := func(step string, err error) contract.GuestParams {
		fmt.Fprintln(con, contract.GuestInitFailed{Name: p.Name, Step: step, Reason: err.Error()})
		return p
	}
	for _, m := range []struct{ target, fstype string }{{"/proc", "proc"}, {"/sys", "sysfs"}, {"/dev", "devtmpfs"}} {
		os.MkdirAll(m.target, 0o755)
		if err := syscall.Mount(m.fstype, m.target, m.fstype, 0, ""); err != nil && err != syscall.EBUSY {
			return fail("mount", fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err))
		}
	}
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return fail("cmdline", err)
	}
	q, err := contract.ParseGuestParams(string(cmdline))
	if q.Name != "" {
		p.Name = q.Name
	}
	if q.After != "" {
		p.After = q.After
	}
	if err != nil {
		return fail("cmdline", err)
	}
	// xenfs gives /proc/xen/xenbus where the kernel lacks /dev/xen/xenbus;
	// a kernel without xenfs is fine when the device exists.
	if os.MkdirAll("/proc/xen", 0o755) == nil {
		syscall.Mount("xenfs", "/proc/xen", "xenfs", 0, "")
	}
	domid, err := readDomid()
	if err != nil {
		return fail("xenstore", err)
	}
	fmt.Fprintln(con, contract.GuestUp{Name: p.Name, DomID: domid})
	return p
}

func readDomid() (int, error) {
	var errs []error
	for _, dev := range []string{"/dev/xen/xenbus", "/proc/xen/xenbus"} {
		f, err := os.OpenFile(dev, os.O_RDWR, 0)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		defer f.Close()
		v, err := xsReadKey(f, "domid")
		if err != nil {
			return 0, err
		}
		return parseDomid(v)
	}
	return 0, fmt.Errorf("no xenbus device (is this a Xen guest with CONFIG_XEN_XENBUS_FRONTEND?): %v", errs)
}

// console is where the status line goes: /dev/console, which the kernel
// also gave init as its standard output if it existed at boot.
func console() io.Writer {
	if f, err := os.OpenFile("/dev/console", os.O_WRONLY|syscall.O_NOCTTY, 0); err == nil {
		return f
	}
	return os.Stdout
}
