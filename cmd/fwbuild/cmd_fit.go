package main

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/fwbuild/fwbuild/image"
	"github.com/fwbuild/fwbuild/internal/boundedfile"
)

// maxFirmwareFile bounds what fit reads: the largest SPI chips are 64 MiB.
const maxFirmwareFile = 256 << 20

func cmdFit(e *env, args []string) error {
	fs := e.flags("fit", "[--payload-size N] [--launcher-size N] [--remove GUID|NAME ...] FIRMWARE   (a BIOS region or a chip image)")
	var s image.FitSpec
	fs.Func("payload-size", "flash payload size: bytes, 0x hex, or with K/KiB/M/MiB (checked against the erased space of the firmware region)", func(v string) error {
		n, err := parseByteSize(v)
		s.PayloadSize = n
		return err
	})
	fs.Func("launcher-size", "launcher file size to try (default 32 KiB)", func(v string) error {
		n, err := parseByteSize(v)
		s.LauncherSize = int(n)
		return err
	})
	fs.Func("remove", "a file (GUID or UI name) the board removes from the firmware; repeat for more", func(v string) error {
		s.Remove = append(s.Remove, v)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() != 1 {
		return usagef("want exactly one FIRMWARE (flags go before it)")
	}
	fw, err := boundedfile.Read(fs.Arg(0), maxFirmwareFile)
	if err != nil {
		return fmt.Errorf("read firmware: %w", err)
	}
	s.Firmware = fw
	r, err := image.Fit(e.ctx, s)
	if err != nil {
		return fmt.Errorf("%s: %w", fs.Arg(0), err)
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
