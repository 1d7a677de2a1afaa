// Command fwbuild turns a board profile into virtualization-ready firmware:
// Xen + dom0 + a u-root control domain as a UEFI payload, in a USB/ESP disk
// image and an SPI chip image, flashed and boot-tested.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// usageError makes main exit with 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// env is what every command gets: global options, output streams, logger.
type env struct {
	ctx       context.Context
	stdout    io.Writer
	stderr    io.Writer
	log       *slog.Logger
	json      bool
	boardsDir string
	cacheDir  string
	keys      string // the owner's key directory (build --keys)
}

type command struct {
	summary string
	run     func(e *env, args []string) error
}

func commands() map[string]command {
	return map[string]command{
		"boards":  {"list the board profiles", cmdBoards},
		"build":   {"run the pipeline and write every artefact (or --only a stage)", cmdBuild},
		"check":   {"validate a board profile and print it merged", cmdCheck},
		"fetch":   {"download, verify and unpack a board's pinned components", cmdFetch},
		"doctor":  {"check the host tools fwbuild needs (--fix installs them)", cmdDoctor},
		"test":    {"build if needed and boot the artefacts in QEMU, checking the boot chain", cmdTest},
		"inspect": {"show the volumes/files of a chip image, partitions of a disk image, sections of a payload", cmdInspect},
		"flash":   {"write images: flash spi (flashrom) or flash usb (block device or file)", cmdFlash},
		"fit":     {"check whether the launcher and payload fit a firmware image, and what to remove if not", cmdFit},
		"keys":    {"create a test Secure Boot key set (PK, KEK, db) for build --keys", cmdKeys},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("fwbuild", flag.ContinueOnError)
	fs.SetOutput(stderr)
	e := &env{ctx: ctx, stdout: stdout, stderr: stderr}
	fs.BoolVar(&e.json, "json", false, "machine-readable JSON output")
	fs.StringVar(&e.boardsDir, "boards", os.Getenv("FWBUILD_BOARDS"), "directory of board profiles (default: ./boards, else the built-in ones; env FWBUILD_BOARDS)")
	fs.StringVar(&e.cacheDir, "cache", "", "cache directory (default: $FWBUILD_CACHE, $XDG_CACHE_HOME/fwbuild or ~/.cache/fwbuild)")
	verbose := fs.Bool("v", false, "debug logging")
	cmds := commands()
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: fwbuild [global flags] <command> [flags]\n\ncommands:\n")
		names := make([]string, 0, len(cmds))
		for n := range cmds {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(stderr, "  %-8s %s\n", n, cmds[n].summary)
		}
		fmt.Fprintf(stderr, "\nglobal flags:\n")
		fs.PrintDefaults()
		fmt.Fprintf(stderr, "\n`fwbuild <command> -h` describes a command. Exit codes: 0 ok, 1 failure, 2 usage.\n")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	e.log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level, ReplaceAttr: dropTime}))
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	c, ok := cmds[fs.Arg(0)]
	if !ok {
		fmt.Fprintf(stderr, "fwbuild: unknown command %q\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	err := c.run(e, fs.Args()[1:])
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "fwbuild %s: %v\n", fs.Arg(0), err)
		return 2
	default:
		fmt.Fprintf(stderr, "fwbuild %s: %v\n", fs.Arg(0), err)
		return 1
	}
}

// dropTime keeps log lines short on a terminal: timings are reported as durations.
func dropTime(groups []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey && len(groups) == 0 {
		return slog.Attr{}
	}
	return a
}

// flags returns a flag set for a command whose parse errors are usage errors.
func (e *env) flags(name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet("fwbuild "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "usage: fwbuild %s %s\n\nflags:\n", name, usage)
		fs.PrintDefaults()
	}
	return fs
}

func (e *env) parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	return nil
}

func (e *env) printJSON(v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
