package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fwbuild/fwbuild/boardcfg"
	"github.com/fwbuild/fwbuild/internal/cache"
	"github.com/fwbuild/fwbuild/internal/pipeline"
)

func (e *env) cache() (string, error) {
	if e.cacheDir != "" {
		return e.cacheDir, nil
	}
	return cache.DefaultDir()
}

func (e *env) boards() (string, error) {
	c, err := e.cache()
	if err != nil {
		return "", err
	}
	return pipeline.BoardsDir(e.boardsDir, c)
}

// loadBoard resolves --board (a name or a profile path) and loads it.
func (e *env) loadBoard(arg string) (*boardcfg.Board, error) {
	if arg == "" {
		return nil, usagef("--board is required (a name from `fwbuild boards`, or a path to a profile)")
	}
	dir, err := e.boards()
	if err != nil {
		return nil, err
	}
	p, err := boardcfg.Resolve(arg, dir)
	if err != nil {
		return nil, err
	}
	return boardcfg.Load(p, dir)
}

// boardFlag adds --board, which completes the names in the boards directory.
func (e *env) boardFlag(c *cobra.Command, p *string, usage string) {
	c.Flags().StringVar(p, "board", "", usage)
	c.RegisterFlagCompletionFunc("board", e.completeBoards)
}

func (e *env) completeBoards(_ *cobra.Command, _ []string, prefix string) ([]cobra.Completion, cobra.ShellCompDirective) {
	dir, err := e.boards()
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	names, err := boardcfg.List(dir)
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	var out []cobra.Completion
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		// --board also takes a profile's path.
		return nil, cobra.ShellCompDirectiveDefault
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

func (e *env) boardsCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "boards",
		Short:   "list the board profiles",
		Example: "  fwbuild boards\n  fwbuild boards --json\n  fwbuild boards --boards ./my-boards",
		Args:    noArgs,
		RunE:    runE(func(*cobra.Command, []string) error { return e.listBoards() }),
	}
}

func (e *env) listBoards() error {
	dir, err := e.boards()
	if err != nil {
		return err
	}
	names, err := boardcfg.List(dir)
	if err != nil {
		return err
	}
	type row struct {
		Name        string `json:"name"`
		Description string `json:"description"`
		File        string `json:"file"`
		Error       string `json:"error,omitempty"`
	}
	var rows []row
	for _, n := range names {
		p := filepath.Join(dir, n+".yaml")
		r := row{Name: n, File: p}
		if b, err := boardcfg.Load(p, dir); err != nil {
			r.Error = err.Error()
		} else {
			r.Description = b.Description
		}
		rows = append(rows, r)
	}
	if e.json {
		return e.printJSON(rows)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	for _, r := range rows {
		d := r.Description
		if r.Error != "" {
			d = "INVALID: " + r.Error
		}
		fmt.Fprintf(tw, "%s\t%s\n", r.Name, d)
	}
	return tw.Flush()
}

// boardCommand is a command that takes only --board: run gets the loaded board.
func (e *env) boardCommand(name, short, example string, run func(*boardcfg.Board) error) *cobra.Command {
	var board string
	c := &cobra.Command{
		Use:     name + " --board B",
		Short:   short,
		Example: example,
		Args:    noArgs,
		RunE: runE(func(*cobra.Command, []string) error {
			b, err := e.loadBoard(board)
			if err != nil {
				return err
			}
			return run(b)
		}),
	}
	e.boardFlag(c, &board, "board name or profile path")
	return c
}

func (e *env) checkCommand() *cobra.Command {
	return e.boardCommand("check", "validate a board profile and print it merged (extends: applied)",
		"  fwbuild check --board qemu-q35\n  fwbuild check --board ./vendor/board.yaml --json", e.check)
}

func (e *env) fetchCommand() *cobra.Command {
	return e.boardCommand("fetch", "download, verify and unpack a board's pinned components",
		"  fwbuild fetch --board qemu-q35", e.fetch)
}

func (e *env) check(b *boardcfg.Board) error {
	// A firmware image named by path must be the one the profile pins.
	if err := b.CheckFiles(); err != nil {
		return err
	}
	if e.json {
		return e.printJSON(b)
	}
	fmt.Fprintf(e.stdout, "# %s: valid (from %v)\n", b.Name, b.Files)
	return printYAML(e.stdout, b)
}

func (e *env) fetch(b *boardcfg.Board) error {
	cacheDir, err := e.cache()
	if err != nil {
		return err
	}
	start := time.Now()
	comps, err := pipeline.Fetch(e.ctx, b, cacheDir, e.log)
	if err != nil {
		return err
	}
	type row struct {
		Component  string `json:"component"`
		Package    string `json:"package"`
		Version    string `json:"version"`
		SHA256     string `json:"sha256"`
		Root       string `json:"root"`
		Downloaded bool   `json:"downloaded"`
	}
	var rows []row
	downloaded := 0
	for _, c := range b.Components {
		f := comps[c.Name]
		rows = append(rows, row{c.Name, c.Package, c.Version, string(c.SHA256), f.Root, f.Downloaded})
		if f.Downloaded {
			downloaded++
		}
	}
	if e.json {
		return e.printJSON(rows)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	for _, r := range rows {
		state := "cached"
		if r.Downloaded {
			state = "downloaded"
		}
		fmt.Fprintf(tw, "%s\t%s=%s\t%s\t%s\n", r.Component, r.Package, r.Version, state, r.Root)
	}
	tw.Flush()
	fmt.Fprintf(e.stdout, "%d components (%d downloaded) in %v, cache %s\n", len(rows), downloaded, time.Since(start).Round(time.Millisecond), cacheDir)
	return nil
}
