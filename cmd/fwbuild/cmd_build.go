package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fwbuild/fwbuild/boardcfg"
	"github.com/fwbuild/fwbuild/internal/pipeline"
)

// epoch honours SOURCE_DATE_EPOCH, the reproducible-builds convention.
func epoch() (time.Time, error) {
	v := os.Getenv("SOURCE_DATE_EPOCH")
	if v == "" {
		return pipeline.DefaultEpoch, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 315532800 {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: want seconds since 1970, at least 315532800 (1980: FAT timestamps start there)", v)
	}
	return time.Unix(n, 0).UTC(), nil
}

func (e *env) build(board, out, only string) (*boardcfg.Board, *pipeline.Result, error) {
	b, err := e.loadBoard(board)
	if err != nil {
		return nil, nil, err
	}
	cacheDir, err := e.cache()
	if err != nil {
		return nil, nil, err
	}
	boardsDir, err := e.boards()
	if err != nil {
		return nil, nil, err
	}
	ep, err := epoch()
	if err != nil {
		return nil, nil, err
	}
	if out == "" {
		out = defaultOut(b.Name)
	}
	start := time.Now()
	res, err := pipeline.Build(e.ctx, pipeline.Options{
		Board: b, BoardsDir: boardsDir, CacheDir: cacheDir, OutDir: out, Only: only, Epoch: ep, Log: e.log, Keys: e.keys,
		Progress: func(stage string, took time.Duration, cached bool) {
			if e.json {
				return
			}
			switch {
			case took < 0:
				fmt.Fprintf(e.stderr, "[%s] %s ...\n", b.Name, stage)
			case cached:
				fmt.Fprintf(e.stderr, "[%s] %s: cached (%v)\n", b.Name, stage, took.Round(time.Millisecond))
			default:
				fmt.Fprintf(e.stderr, "[%s] %s: done in %v\n", b.Name, stage, took.Round(time.Millisecond))
			}
		},
	})
	var be *pipeline.BudgetError
	if errors.As(err, &be) && !e.json {
		fmt.Fprintln(e.stderr, "the flash payload does not fit its slot:")
		be.Table.Write(e.stderr)
	}
	if err != nil {
		return nil, nil, err
	}
	e.pruneAfterBuild(cacheDir)
	if !e.json {
		if res.Sizes != nil {
			fmt.Fprintln(e.stdout, "flash payload size budget:")
			res.Sizes.Write(e.stdout)
		}
		fmt.Fprintf(e.stdout, "artefacts in %s (%d rewritten) after %v:\n", res.OutDir, len(res.Written), time.Since(start).Round(time.Millisecond))
		for _, a := range res.Artefacts {
			fmt.Fprintf(e.stdout, "  %-22s %10d  %s\n", a.Name, a.Size, a.SHA256)
		}
	}
	return b, res, nil
}

func (e *env) buildCommand() *cobra.Command {
	var board, out, only string
	c := &cobra.Command{
		Use:   "build --board B [--out DIR] [--only STAGE] [--keys DIR]",
		Short: "run the pipeline and write every artefact (or --only a stage)",
		Long: "build runs fetch -> kernel -> initramfs -> guests -> payload -> usb, spi -> manifest for a board,\n" +
			"reusing every stage whose inputs did not change, and publishes the artefacts atomically.",
		Example: "  fwbuild build --board qemu-q35\n  fwbuild build --board qemu-q35 --out /tmp/out --json\n  fwbuild build --board qemu-q35 --only kernel",
		Args:    noArgs,
		RunE:    runE(func(*cobra.Command, []string) error { return e.runBuild(board, out, only) }),
	}
	e.boardFlag(c, &board, "board name or profile path")
	c.Flags().StringVar(&out, "out", "", "output directory (default: out/<board>)")
	e.keysFlag(c, "owner's key directory (PK, KEK, db; see fwbuild keys): sign the payloads, enrol the keys on a Secure Boot board (env FWBUILD_KEYS)")
	c.Flags().StringVar(&only, "only", "", "stop after a stage and write its outputs: "+strings.Join(pipeline.OnlyStages(), ", "))
	c.MarkFlagDirname("out")
	c.RegisterFlagCompletionFunc("only", cobra.FixedCompletions(pipeline.OnlyStages(), cobra.ShellCompDirectiveNoFileComp))
	return c
}

func (e *env) runBuild(board, out, only string) error {
	if only != "" && !slices.Contains(pipeline.OnlyStages(), only) {
		return usagef("--only %q: want one of %s", only, strings.Join(pipeline.OnlyStages(), ", "))
	}
	_, res, err := e.build(board, out, only)
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(res)
	}
	return nil
}
