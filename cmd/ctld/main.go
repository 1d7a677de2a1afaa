//go:build linux

// Command ctld is the fwbuild control-domain agent. It runs in dom0 as u-root's
// uinit: it prepares the mounts and kernel modules the Xen toolstack needs,
// starts xenstored, xen-init-dom0 and xenconsoled, and prints one line that a
// machine can parse:
//
//	fwbuild-ctld: ready xen=<version> dom0_mem=<MiB> guests=<n>
//
// or, when a step fails:
//
//	fwbuild-ctld: FAILED <step>: <error>
//
// It then exits, leaving the daemons running; u-root's init starts the
// operator shell after uinit exits.
//
// ctld is built into the u-root busybox by package initramfs from a copy of
// these files embedded in fwbuild, so it may import only the standard library.
package main

import (
	"context"
	"flag"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	cfg := defaultConfig()
	flag.StringVar(&cfg.XenBin, "xen-bin", "", "directory holding xenstored, xenconsoled, xen-init-dom0 and xl (default: newest /usr/lib/xen-*/bin)")
	flag.StringVar(&cfg.XenstoreBin, "xenstore-bin", cfg.XenstoreBin, "directory holding xenstore-list")
	flag.StringVar(&cfg.ModulesList, "modules", cfg.ModulesList, "file listing kernel modules to load, dependencies first")
	flag.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "time allowed for each daemon to become ready")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()

	a := &agent{cfg: cfg, run: execRunner{}, sys: linuxSystem{}, out: os.Stdout}
	// start prints the status line itself, ready or FAILED.
	err := a.start(ctx)
	releaseTTY()
	if err != nil {
		os.Exit(1)
	}
}
