package main

import (
	"fmt"
	"path/filepath"
	"text/tabwriter"
	"time"

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

func cmdBoards(e *env, args []string) error {
	fs := e.flags("boards", "")
	if err := e.parse(fs, args); err != nil {
		return err
	}
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

// boardCommand parses the flags of a command that takes only --board and
// loads the board.
func (e *env) boardCommand(name string, args []string) (*boardcfg.Board, error) {
	fs := e.flags(name, "--board B")
	board := fs.String("board", "", "board name or profile path")
	if err := e.parse(fs, args); err != nil {
		return nil, err
	}
	return e.loadBoard(*board)
}

func cmdCheck(e *env, args []string) error {
	b, err := e.boardCommand("check", args)
	if err != nil {
		return err
	}
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

func cmdFetch(e *env, args []string) error {
	b, err := e.boardCommand("fetch", args)
	if err != nil {
		return err
	}
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
