package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/fwbuild/fwbuild/internal/boottest"
	"github.com/fwbuild/fwbuild/internal/pipeline"
	qemutests "github.com/fwbuild/fwbuild/qemu-tests"
)

func cmdTest(e *env, args []string) error {
	fs := e.flags("test", "--board B [--path usb|spi|all] [--out DIR] [--keep-logs] [--keys DIR]")
	board := fs.String("board", "", "board name or profile path")
	path := fs.String("path", "all", "boot path: usb, spi or all")
	out := fs.String("out", "", "build output directory (default: out/<board>)")
	keep := fs.Bool("keep-logs", false, "keep the console logs of passing boots too")
	verbose := fs.Bool("console", false, "copy QEMU's console to stderr")
	fs.StringVar(&e.keys, "keys", os.Getenv("FWBUILD_KEYS"), "owner's key directory for the build (see fwbuild build --keys)")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	var paths []string
	switch *path {
	case "all":
		paths = boottest.Paths
	case qemutests.ChainUSB, qemutests.ChainSPI:
		paths = []string{*path}
	default:
		return usagef("--path %q: want usb, spi or all", *path)
	}
	b, res, err := e.build(*board, *out, "")
	if err != nil {
		return err
	}
	cacheDir, err := e.cache()
	if err != nil {
		return err
	}
	comps, err := pipeline.Fetch(e.ctx, b, cacheDir, e.log)
	if err != nil {
		return err
	}
	logDir := filepath.Join(res.OutDir, "test-logs")
	var reports []boottest.Report
	var failed []error
	for _, p := range paths {
		if b.Outputs.SPI == nil && p == qemutests.ChainSPI {
			if *path == qemutests.ChainSPI {
				return fmt.Errorf("board %s has no SPI output (outputs.spi) to boot", b.Name)
			}
			continue
		}
		fmt.Fprintf(e.stderr, "[%s] boot %s path (QEMU, %s) ...\n", b.Name, p, accelName())
		opts := qemutests.Options{Logger: e.log, OnMarker: func(m qemutests.Match) {
			if !e.json {
				fmt.Fprintf(e.stdout, "  %-6s %8.1fs  %-10s %s\n", p, m.At.Seconds(), m.Marker.Name, m.Line)
			}
		}}
		if *verbose {
			opts.Console = e.stderr
		}
		rep, err := boottest.Run(e.ctx, boottest.Spec{Board: b, Comps: comps, OutDir: res.OutDir, Path: p, WorkDir: logDir}, opts)
		reports = append(reports, rep)
		if err != nil {
			var me *qemutests.MarkerError
			if errors.As(err, &me) {
				fmt.Fprintf(e.stderr, "%v\n", me)
			}
			failed = append(failed, fmt.Errorf("%s path: %w", p, err))
			continue
		}
		if !e.json {
			fmt.Fprintf(e.stdout, "  %-6s PASS: ready in %.1fs (xen=%s dom0_mem=%d guests=%d), all %d markers in %.1fs\n", p, rep.ReadyAt.Seconds(),
				rep.Ready.Xen, rep.Ready.Dom0MemMiB, rep.Ready.Guests, len(rep.Result.Matches), rep.Result.Elapsed.Seconds())
		}
		if !*keep {
			os.Remove(rep.LogPath)
		}
	}
	if e.json {
		if err := e.printJSON(map[string]any{"build": res, "boots": reports}); err != nil {
			return err
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("boot test failed (logs in %s): %w", logDir, errors.Join(failed...))
	}
	if !*keep {
		os.Remove(logDir)
	}
	return nil
}

func accelName() string {
	if os.Getenv("FWBUILD_KVM") == "1" {
		return "KVM if usable"
	}
	return "TCG"
}
