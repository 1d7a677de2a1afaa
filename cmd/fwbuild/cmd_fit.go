package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fwbuild/fwbuild/image"
	"github.com/fwbuild/fwbuild/internal/boundedfile"
)

// maxFirmwareFile bounds what fit reads: the largest SPI chips are 64 MiB.
const maxFirmwareFile = 256 << 20

// sizeFlag is a pflag.Value for a byte size written as profiles write them.
type sizeFlag struct{ set func(int64) }

func (f sizeFlag) String() string { return "" }
func (f sizeFlag) Type() string   { return "size" }
func (f sizeFlag) Set(v string) error {
	n, err := parseByteSize(v)
	if err == nil {
		f.set(n)
	}
	return err
}

func (e *env) fitCommand() *cobra.Command {
	var s image.FitSpec
	c := &cobra.Command{
		Use:   "fit [--payload-size N] [--launcher-size N] [--remove GUID|NAME]... FIRMWARE",
		Short: "check whether the launcher and payload fit a firmware image, and what to remove if not",
		Long: "fit is a dry run of the launcher edit on FIRMWARE (a BIOS region or a full chip with an Intel\n" +
			"descriptor): its volumes with free space, where the launcher goes and whether it fits, where a\n" +
			"payload of N bytes could go, and which optional files would make room. Exit 0 whether or not it\n" +
			"fits (the report says), 1 for firmware fwbuild cannot edit.",
		Example: "  fwbuild fit /usr/share/OVMF/OVMF_CODE_4M.fd\n  fwbuild fit --payload-size 8MiB --remove Shell vendor.bin\n  fwbuild fit --json vendor.bin",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("want exactly one FIRMWARE")
			}
			return nil
		},
		RunE: runE(func(_ *cobra.Command, args []string) error { return e.fit(s, args[0]) }),
	}
	f := c.Flags()
	f.Var(sizeFlag{func(n int64) { s.PayloadSize = n }}, "payload-size", "flash payload size `N`: bytes, 0x hex, or with K/KiB/M/MiB (checked against the erased space of the firmware region)")
	f.Var(sizeFlag{func(n int64) { s.LauncherSize = int(n) }}, "launcher-size", "launcher file size `N` to try (default 32 KiB)")
	f.StringArrayVar(&s.Remove, "remove", nil, "a file (`GUID|NAME`) the board removes from the firmware; repeat for more")
	return c
}

func (e *env) fit(s image.FitSpec, path string) error {
	fw, err := boundedfile.Read(path, maxFirmwareFile)
	if err != nil {
		return fmt.Errorf("read firmware: %w", err)
	}
	s.Firmware = fw
	r, err := image.Fit(e.ctx, s)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	// Not fitting is an answer, not a failure: the exit code stays 0 and
	// the report (its "fits" field in JSON) says so.
	if e.json {
		return e.printJSON(r)
	}
	_, err = fmt.Fprint(e.stdout, r.Text())
	return err
}

// parseByteSize reads a size the way board profiles write them: bytes,
// 0x hex, or a K/KiB/M/MiB suffix.
func parseByteSize(arg string) (int64, error) {
	v, shift := arg, 0
	for _, u := range []struct {
		suffix string
		shift  int
	}{{"KiB", 10}, {"MiB", 20}, {"K", 10}, {"M", 20}} {
		if strings.HasSuffix(v, u.suffix) {
			v, shift = strings.TrimSuffix(v, u.suffix), u.shift
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 0, 64)
	if err != nil || n < 0 || n > 1<<40>>shift {
		return 0, fmt.Errorf("%q is not a size: give bytes, 0x hex, or K/KiB/M/MiB", arg)
	}
	return n << shift, nil
}
