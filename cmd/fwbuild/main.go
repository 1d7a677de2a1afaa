// Command fwbuild turns a board profile into virtualization-ready firmware:
// Xen + dom0 + a u-root control domain as a UEFI payload, in a USB/ESP disk
// image and an SPI chip image, flashed and boot-tested.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/fwbuild/fwbuild/internal/progress"
)

// usageError makes main exit with 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// runError marks an error a command's RunE returned, as opposed to one cobra
// found on the command line (unknown command, bad flag, wrong argument count):
// those are usage errors.
type runError struct{ err error }

func (e runError) Error() string { return e.err.Error() }
func (e runError) Unwrap() error { return e.err }

// env is what every command gets: global options, output streams, logger.
type env struct {
	ctx       context.Context
	stdout    io.Writer
	stderr    io.Writer
	log       *slog.Logger
	json      bool
	verbose   bool
	boardsDir string
	cacheDir  string
	// progress draws bars when stderr is a terminal (and neither --json nor
	// -v is given); otherwise it is a no-op and the plain lines stay.
	progress progress.Reporter
	// isTerminal says whether a writer is a terminal (tests substitute it).
	isTerminal func(io.Writer) bool
	// keys is the owner's key directory (build/test --keys).
	keys string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	e := &env{ctx: ctx, stdout: stdout, stderr: stderr, isTerminal: isTerminal}
	root := e.rootCommand()
	root.SetArgs(oldSpellings(root, args))
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetContext(ctx)
	cmd, err := root.ExecuteC()
	if t, ok := e.progress.(*termProgress); ok {
		t.Close()
	}
	if err == nil {
		return 0
	}
	name := "fwbuild"
	if cmd != nil {
		name = cmd.CommandPath()
	}
	var re runError
	var ue usageError
	switch {
	case errors.As(err, &re) && !errors.As(re.err, &ue):
		fmt.Fprintf(stderr, "%s: %v\n", name, re.err)
		return 1
	default:
		// A usage error, from a command or from cobra.
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		if cmd != nil && !errors.As(err, &re) {
			cmd.SetOut(stderr)
			cmd.Usage()
		} else {
			fmt.Fprintf(stderr, "`%s --help` describes it.\n", name)
		}
		return 2
	}
}

const usageTemplate = `usage:{{if .Runnable}} {{.UseLine}}{{end}}{{if .HasAvailableSubCommands}}{{if .Runnable}}
      {{end}} {{.CommandPath}} <command> [flags]{{end}}{{if gt (len .Aliases) 0}}

aliases: {{.NameAndAliases}}{{end}}{{if .HasExample}}

examples:
{{.Example}}{{end}}{{if .HasAvailableSubCommands}}

commands:{{range .Commands}}{{if (or .IsAvailableCommand (eq .Name "help"))}}
  {{rpad .Name .NamePadding }} {{.Short}}{{end}}{{end}}{{end}}{{if .HasAvailableLocalFlags}}

flags:
{{.LocalFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}{{if .HasAvailableInheritedFlags}}

global flags (anywhere on the line):
{{.InheritedFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}{{if .HasAvailableSubCommands}}

` + "`{{.CommandPath}} <command> --help`" + ` describes a command.{{end}}

exit codes: 0 ok, 1 failure, 2 usage.
`

func (e *env) rootCommand() *cobra.Command {
	var showVersion bool
	root := &cobra.Command{
		Use:   "fwbuild",
		Short: "build Xen + a u-root control domain into UEFI payloads, USB and SPI images",
		Long: "fwbuild reads a board profile (boards/<name>.yaml), builds Xen, a dom0 kernel and a u-root control\n" +
			"domain into UEFI payloads, and places them in a USB/ESP disk image and an SPI chip image.",
		Example: "  fwbuild doctor --fix\n  fwbuild build --board qemu-q35\n  fwbuild test --board qemu-q35 --path usb\n  fwbuild boards --json",
		// Errors are printed by run, which also picks the exit code.
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if showVersion {
				_, err := fmt.Fprintf(e.stdout, "fwbuild %s\n", currentVersion().Short())
				return err
			}
			// run prints the usage with this error.
			return usagef("a command is required")
		},
		PersistentPreRunE: func(c *cobra.Command, args []string) error {
			e.setup()
			return nil
		},
	}
	root.SetUsageTemplate(usageTemplate)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		msg := err.Error()
		// Go's flag package said it this way; scripts and tests match it.
		for _, p := range []string{"unknown flag: ", "unknown shorthand flag: "} {
			if rest, ok := strings.CutPrefix(msg, p); ok {
				msg = "flag provided but not defined: " + rest
			}
		}
		return usageError{msg}
	})
	// Not cobra's Version field: that would ask for the version (git, for a
	// go run binary) on every start.
	root.Flags().BoolVar(&showVersion, "version", false, "print the version on one line (the version command says more)")
	pf := root.PersistentFlags()
	pf.BoolVar(&e.json, "json", false, "machine-readable JSON output")
	pf.StringVar(&e.boardsDir, "boards", os.Getenv("FWBUILD_BOARDS"), "directory of board profiles (default: ./boards, else the built-in ones; env FWBUILD_BOARDS)")
	pf.StringVar(&e.cacheDir, "cache", "", "cache directory (default: $FWBUILD_CACHE, $XDG_CACHE_HOME/fwbuild or ~/.cache/fwbuild)")
	pf.BoolVarP(&e.verbose, "verbose", "v", false, "debug logging (and plain progress lines instead of bars)")
	root.MarkPersistentFlagDirname("boards")
	root.MarkPersistentFlagDirname("cache")

	root.AddCommand(
		e.boardsCommand(), e.checkCommand(), e.fetchCommand(), e.doctorCommand(), e.buildCommand(),
		e.testCommand(), e.inspectCommand(), e.flashCommand(), e.provisionCommand(), e.fitCommand(), e.keysCommand(), e.attestCommand(), e.remoteCommand(), e.cacheCommand(), e.versionCommand(),
	)
	root.CompletionOptions.HiddenDefaultCmd = false
	return root
}

// setup runs once the global flags are parsed: the logger and the progress reporter.
func (e *env) setup() {
	level := slog.LevelInfo
	if e.verbose {
		level = slog.LevelDebug
	}
	out := e.stderr
	if !e.json && !e.verbose && e.isTerminal(e.stderr) {
		t := newTermProgress(e.stderr)
		e.progress = t
		// Lines written while a bar is drawn go above it.
		out = t.LineWriter()
		e.stderr = out
	} else {
		e.progress = progress.Nop()
	}
	e.log = slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: level, ReplaceAttr: dropTime}))
	e.ctx = progress.WithReporter(e.ctx, e.progress)
}

// runE adapts a command's function: its errors are the command's, not cobra's.
func runE(f func(c *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(c *cobra.Command, args []string) error {
		if err := f(c, args); err != nil {
			return runError{err}
		}
		return nil
	}
}

// noArgs refuses positional arguments the way fwbuild always has.
func noArgs(_ *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unexpected arguments: %s", strings.Join(args, " "))
	}
	return nil
}

// oldSpellings rewrites Go-flag-style single-dash long flags (-board, -json)
// into pflag's --board, so command lines written for earlier fwbuilds keep
// working. Only names some command defines are rewritten, values of flags
// that take one are left alone, and nothing after "--" is touched.
func oldSpellings(root *cobra.Command, args []string) []string {
	takesValue := map[string]bool{"help": false, "version": false}
	var walk func(c *cobra.Command)
	add := func(f *pflag.Flag) { takesValue[f.Name] = f.NoOptDefVal == "" }
	walk = func(c *cobra.Command) {
		c.LocalFlags().VisitAll(add)
		c.PersistentFlags().VisitAll(add)
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			out = append(out, args[i:]...)
			break
		}
		name, hasValue := "", false
		switch {
		case strings.HasPrefix(a, "--"):
			name, _, hasValue = strings.Cut(a[2:], "=")
		case strings.HasPrefix(a, "-") && len(a) > 2:
			n, _, hv := strings.Cut(a[1:], "=")
			if _, ok := takesValue[n]; ok && len(n) > 1 {
				a, name, hasValue = "-"+a, n, hv
			}
		}
		out = append(out, a)
		if tv, ok := takesValue[name]; ok && tv && !hasValue && i+1 < len(args) {
			i++
			out = append(out, args[i])
		}
	}
	return out
}

// dropTime keeps log lines short on a terminal: timings are reported as durations.
func dropTime(groups []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey && len(groups) == 0 {
		return slog.Attr{}
	}
	return a
}

func (e *env) printJSON(v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
