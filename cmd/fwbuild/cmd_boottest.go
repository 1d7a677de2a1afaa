package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/fwbuild/fwbuild/internal/boottest"
	"github.com/fwbuild/fwbuild/internal/pipeline"
	qemutests "github.com/fwbuild/fwbuild/qemu-tests"
	"github.com/spf13/cobra"
)

func (e *env) testCommand() *cobra.Command {
	var o testOptions
	c := &cobra.Command{
		Use:   "test --board B [--path usb|spi|all] [--out DIR] [--keep-logs] [--console] [--keys DIR]",
		Short: "build if needed and boot the artefacts in QEMU, checking the boot chain",
		Long: "test builds the board (reusing the cache), then boots usb.img on stock OVMF and spi.bin as the\n" +
			"machine's flash in QEMU (TCG), printing each marker of the chain firmware -> Xen -> dom0 -> ctld\n" +
			"with its time. FWBUILD_KVM=1 asks for KVM; FWBUILD_TIMEOUT_SCALE scales the marker timeouts.",
		Example: "  fwbuild test --board qemu-q35\n  fwbuild test --board qemu-q35 --path spi --console",
		Args:    noArgs,
		RunE:    runE(func(*cobra.Command, []string) error { return e.runTest(o) }),
	}
	e.boardFlag(c, &o.board, "board name or profile path")
	c.Flags().StringVar(&o.path, "path", "all", "boot path: usb, spi or all")
	c.Flags().StringVar(&o.out, "out", "", "build output directory (default: out/<board>)")
	c.Flags().BoolVar(&o.keep, "keep-logs", false, "keep the console logs of passing boots too")
	c.Flags().BoolVar(&o.console, "console", false, "copy QEMU's console to stderr")
	e.keysFlag(c, "owner's key directory for the build (see fwbuild build --keys; env FWBUILD_KEYS)")
	c.MarkFlagDirname("out")
	c.RegisterFlagCompletionFunc("path", cobra.FixedCompletions([]string{"usb", "spi", "all"}, cobra.ShellCompDirectiveNoFileComp))
	return c
}

type testOptions struct {
	board, path, out string
	keep, console    bool
}

func (e *env) runTest(o testOptions) error {
	board, path, out, keep, verbose := &o.board, &o.path, &o.out, &o.keep, &o.console
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
				line := withoutPrompt(m.Line)
				if len(line) > 100 && m.Marker.Name == "ctld-quote" {
					line = fmt.Sprintf("%s... (%d bytes)", line[:100], len(line))
				}
				fmt.Fprintf(e.stdout, "  %-6s %8.1fs  %-10s %s\n", p, m.At.Seconds(), m.Marker.Name, line)
			}
		}}
		if *verbose {
			opts.Console = e.stderr
		}
		rep, err := boottest.Run(e.ctx, boottest.Spec{Board: b, Comps: comps, OutDir: res.OutDir, Path: p, WorkDir: logDir}, opts)
		reports = append(reports, rep)
		if !e.json && len(rep.Timeline.Links) > 0 {
			fmt.Fprintf(e.stdout, "  %-6s timeline (console arrival times; ctld's steps on dom0's clock):\n", p)
			rep.Timeline.Format(e.stdout, "         ")
		}
		if err != nil {
			var me *qemutests.MarkerError
			if errors.As(err, &me) {
				fmt.Fprintf(e.stderr, "%v\n", me)
			}
			failed = append(failed, fmt.Errorf("%s path: %w", p, err))
			continue
		}
		if !e.json {
			fmt.Fprintf(e.stdout, "  %-6s PASS: ready in %.1fs (xen=%s dom0_mem=%d guests=%d), all %d markers in %.1fs; PCRs 4 and 7 as predicted, quote verified\n", p, rep.ReadyAt.Seconds(),
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

// shellPrompt is the prompt of the control domain's shell (u-root's gosh).
// Output that ctld prints while the shell waits lands behind it on the
// console line.
const shellPrompt = "$ "

// withoutPrompt drops shell prompts from the start of a console line, so
// that a marker's line is printed as its program printed it.
func withoutPrompt(line string) string {
	for {
		rest := strings.TrimLeft(line, " \t")
		if !strings.HasPrefix(rest, shellPrompt) {
			return line
		}
		line = rest[len(shellPrompt):]
	}
}

func accelName() string {
	if os.Getenv("FWBUILD_KVM") == "1" {
		return "KVM if usable"
	}
	return "TCG"
}
