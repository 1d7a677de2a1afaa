//go:build linux

// Command guestinit is /init of fwbuild's test guests: a static binary (built
// with CGO_ENABLED=0) that proves a guest domain booted. It mounts proc, sys
// and devtmpfs (and xenfs when the kernel has it), reads the domain's id from
// xenstore, prints
//
//	fwbuild-guest <name>: up domid=<n>
//
// on the console, or "fwbuild-guest <name>: FAILED <step>: <error>", and
// then powers the domain off or idles, as the kernel command line says:
//
//	fwbuild.guest=<name> fwbuild.after=poweroff|run
//
// Package initramfs builds it from a copy embedded in fwbuild, so it may
// import only the standard library.
package main

import (
	"fmt"
	"io"
	"os"
	"syscall"
	"time"
)

func main() {
	con := console()
	p := setup(con)
	if p.After == "run" {
		// Sleep rather than block forever: as PID 1 with nothing else
		// to run, select{} would be a runtime deadlock panic.
		for {
			time.Sleep(time.Hour)
		}
	}
	syscall.Sync()
	err := syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
	// PID 1 must not exit (the kernel would panic), so idle.
	fmt.Fprintf(con, "fwbuild-guest %s: FAILED poweroff: %v\n", p.Name, err)
	for {
		time.Sleep(time.Hour)
	}
}

// setup does the work and prints the status line; it returns the command
// line parameters, the defaults when they cannot be read.
func setup(con io.Writer) params {
	p := params{Name: "unnamed", After: "poweroff"}
	fail := func(step string, err error) params {
		fmt.Fprintf(con, "fwbuild-guest %s: FAILED %s: %v\n", p.Name, step, err)
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
	q, err := parseCmdline(string(cmdline))
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
	fmt.Fprintf(con, "fwbuild-guest %s: up domid=%s\n", p.Name, domid)
	return p
}

func readDomid() (string, error) {
	var errs []error
	for _, dev := range []string{"/dev/xen/xenbus", "/proc/xen/xenbus"} {
		f, err := os.OpenFile(dev, os.O_RDWR, 0)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		defer f.Close()
		id, err := xsReadKey(f, "domid")
		if err == nil && !isDigits(id) {
			err = fmt.Errorf("xenstore: domid is %q, not a number", id)
		}
		return id, err
	}
	return "", fmt.Errorf("no xenbus device (is this a Xen guest with CONFIG_XEN_XENBUS_FRONTEND?): %v", errs)
}

// console is where the status line goes: /dev/console, which the kernel
// also gave init as its standard output if it existed at boot.
func console() io.Writer {
	if f, err := os.OpenFile("/dev/console", os.O_WRONLY|syscall.O_NOCTTY, 0); err == nil {
		return f
	}
	return os.Stdout
}
