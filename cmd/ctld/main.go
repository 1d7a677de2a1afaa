//go:build linux

// Command ctld is the fwbuild control-domain agent. It runs in dom0 as u-root's
// uinit: it prepares the mounts and kernel modules the Xen toolstack needs,
// starts xenstored, xen-init-dom0 and xenconsoled, and prints one line that a
// machine can parse: contract.Ready, or contract.Failed naming the step.
//
// It then exits, leaving the daemons running; u-root's init starts the
// operator shell after uinit exits.
//
// A board that keeps its guests in a flash region names it on the dom0
// command line (contract.GuestsRegion); ctld unpacks it before the ready
// line, or fails the "guests" step (see bundle.go).
//
// When the profile declares guests (xl configs in contract.GuestsDir), the
// ready line counts them, and a copy of ctld with -guests in its own
// session, started as ctld starts and let go after the ready line
// (earlyHelper, so its own start does not delay the guests), creates each autostart guest,
// forwards its console (contract.GuestConsole) and reports each guest with
// contract.GuestRunning, GuestFailed and GuestStopped.
//
// A profile with a management network or a data disk (contract.HostConfig
// in contract.HostConfigPath) makes the control domain a host. That work
// comes after the ready line, which keeps meaning "the toolstack answers"
// (a DHCP server or a disk must not hold back the operator shell), in the
// same detached helper, in this order: the management network
// (contract.Management, or FAILED network naming the NIC; network.go), the
// data disk (contract.DataDiskReady, or FAILED storage naming the disk;
// storage.go), the Redfish service (contract.RedfishUp, or FAILED unit or
// redfish; redfish.go), the guest images (images.go), then the guests,
// moved onto the data disk once and started from there (host.go). The
// helper then keeps running for the Redfish service.
//
// libxl runs ctld as the hotplug script of guests' vifs and vbds
// (contract.CtldPath in their xl configs): with XENBUS_PATH in the
// environment and online/offline/add/remove as its argument, ctld does what
// Xen's bash scripts vif-bridge and block do, and exits (hotplug.go).
//
// On the control domain's shell, `ctld status` and `ctld guests` report the
// hypervisor and the guests (operator.go).
//
// Package initramfs builds ctld into the u-root busybox from these very
// sources (embedded in fwbuild with the contract package), inside a module
// whose go.mod holds only u-root and what ctld imports.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/fwbuild/fwbuild/contract"
)

func main() {
	cfg := defaultConfig()
	if e, ok := hotplugCall(os.Args[1:], os.Getenv); ok {
		// libxl runs ctld as a vif's or vbd's hotplug script (hotplug.go).
		ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
		defer cancel()
		a := &agent{cfg: cfg, run: execRunner{}, sys: linuxSystem{}, xs: xsSocket{path: xenstoredSocket}, dev: linuxHost{}, out: os.Stderr}
		if err := a.hotplug(ctx, linuxHost{}, e); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	flag.StringVar(&cfg.XenBin, "xen-bin", "", "directory holding xenstored, xenconsoled, xen-init-dom0 and xl (default: newest /usr/lib/xen-*/bin)")
	flag.StringVar(&cfg.XenstoreBin, "xenstore-bin", cfg.XenstoreBin, "directory holding xenstore-list")
	flag.StringVar(&cfg.ModulesList, "modules", cfg.ModulesList, "file listing kernel modules to load, dependencies first")
	flag.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "time allowed for each daemon to become ready")
	flag.StringVar(&cfg.GuestsDir, "guests-dir", cfg.GuestsDir, "directory of guest xl configs, <name>.cfg")
	guests := flag.Bool("guests", false, "start the autostart guests and watch them (ctld runs itself this way after the ready line)")
	startName := flag.String("start", "", "start this guest and forward its console (`ctld start <guest>` runs itself this way)")
	waitGo := flag.Bool("wait-go", false, "with -guests: wait for the boot-time ctld's go line on file descriptor 3 first")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: ctld [flags]        bring the control domain up (boot time, as uinit)\n       ctld status|guests|unit  report on a running control domain\n       ctld start <guest>  start a guest, its console forwarded to this terminal\n       ctld quote <nonce-hex>  a TPM2 quote of PCRs 0-7 over the nonce, one line\n       ctld update FILE [-downgrade]  install a signed update artefact into the inactive ESP slot\n")
		flag.PrintDefaults()
	}
	flag.Parse()

	if flag.NArg() > 0 {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		if flag.Arg(0) == "quote" {
			if err := runQuote(ctx, flag.Args()[1:], os.Stdout); err != nil {
				fmt.Fprintf(os.Stderr, "ctld quote: %v\n", err)
				os.Exit(1)
			}
			return
		}
		a := &agent{cfg: cfg, run: execRunner{}, sys: linuxSystem{}, xs: xsSocket{path: xenstoredSocket}, out: os.Stdout}
		if flag.Arg(0) == "update" {
			if err := a.operatorUpdate(ctx, flag.Args()[1:], os.Stdout); err != nil {
				fmt.Fprintf(os.Stderr, "ctld update: %v\n", err)
				os.Exit(1)
			}
			return
		}
		spawn := func(name string) error { return startHelper(a.cfg, "-start", name) }
		if err := a.operate(ctx, flag.Args(), os.Stdout, spawn); err != nil {
			fmt.Fprintf(os.Stderr, "ctld %s: %v\n", flag.Arg(0), err)
			os.Exit(1)
		}
		return
	}

	if *guests || *startName != "" {
		// No overall timeout: consoles of running guests are forwarded
		// for as long as they run.
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		signal.Ignore(syscall.SIGHUP)
		// u-root's DHCP client logs each attempt with package log; ctld
		// prints its own line for the outcome.
		log.SetOutput(io.Discard)
		if *waitGo {
			f := os.NewFile(helperGoFD, "go")
			xenBin, ok, err := waitForGo(f)
			f.Close() // not for xl and the other programs it starts
			if err != nil {
				fmt.Fprintln(os.Stderr, "ctld:", err)
				os.Exit(1)
			}
			if !ok {
				return
			}
			cfg.XenBin = xenBin
		}
		a := &agent{cfg: cfg, run: execRunner{}, sys: linuxSystem{}, xs: xsSocket{path: xenstoredSocket}, dev: linuxHost{}, out: os.Stdout, steps: os.Stdout, clock: monotonic}
		if a.cfg.XenBin == "" {
			if err := a.findToolstack(ctx); err != nil {
				a.say(contract.GuestFailed{Reason: err.Error()})
				os.Exit(1)
			}
		}
		run := a.runGuests
		if *startName != "" {
			run = func(ctx context.Context) error { return a.startOne(ctx, *startName) }
		} else {
			a.slotsAtBoot(ctx)
		}
		if err := run(ctx); err != nil {
			os.Exit(1)
		}
		return
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()

	// Step lines time the boot (contract.Step); an operator's ctld status does without.
	a := &agent{cfg: cfg, run: execRunner{}, sys: linuxSystem{}, xs: xsSocket{path: xenstoredSocket}, out: os.Stdout, steps: os.Stdout, clock: monotonic}
	if a.sys.dialUnix(xenstoredSocket) == nil {
		fmt.Fprintln(os.Stderr, "ctld: the control domain is already up (xenstored answers): use `ctld status` or `ctld guests`")
		os.Exit(2)
	}
	// u-root's init starts the shell only once ctld exits, so the guests
	// are looked after by a detached copy, started now and let go after
	// the ready line (earlyHelper); without it, started then.
	early, earlyErr := startEarlyHelper(a.cfg)
	if earlyErr != nil {
		slog.Warn("ctld: guest helper not started ahead; starting it after the ready line", "err", earlyErr)
	}
	// start prints the status line itself, ready or FAILED.
	err := a.start(ctx)
	if err != nil {
		a.slotsAfterFailure(ctx, err)
	}
	if gs := a.autostart(); err == nil && (len(gs) > 0 || a.sys.exists(a.cfg.HostConfig) || a.bootPath() == contract.BootESP || a.spiSlotBoot()) {
		// Before the PCRs are read: the guests wait for nothing the TPM says.
		herr := errors.New("no early helper")
		if early != nil {
			herr = early.start(a.cfg.XenBin)
		}
		if herr != nil {
			herr = startHelper(a.cfg, "-guests")
		}
		if herr != nil {
			for _, g := range gs {
				a.say(contract.GuestFailed{Name: g.Name, Reason: herr.Error()})
			}
		}
	} else if early != nil {
		early.cancel()
	}
	if err == nil {
		a.reportMeasured() // the TPM's PCRs, right after the ready line (tpm.go)
	}
	releaseTTY()
	if err != nil {
		os.Exit(1)
	}
}
