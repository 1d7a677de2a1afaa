package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fwbuild/fwbuild/boardcfg"
	"github.com/fwbuild/fwbuild/flash"
	"github.com/fwbuild/fwbuild/image"
	"github.com/fwbuild/fwbuild/launcher"
)

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func defaultOut(board string) string { return filepath.Join("out", board) }

func cmdFlash(e *env, args []string) error {
	if len(args) == 0 || (args[0] != "spi" && args[0] != "usb") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
			fmt.Fprintln(e.stderr, "usage: fwbuild flash spi|usb [flags]   (fwbuild flash spi -h, fwbuild flash usb -h)")
			return nil
		}
		return usagef("want `flash spi` or `flash usb`")
	}
	if args[0] == "usb" {
		return cmdFlashUSB(e, args[1:])
	}
	return cmdFlashSPI(e, args[1:])
}

func (e *env) progress(p flash.Progress) {
	if e.json {
		return
	}
	rate := ""
	if r := p.Rate(); r > 0 {
		rate = fmt.Sprintf(" %.1f MB/s", r/1e6)
	}
	if p.Total > 0 {
		fmt.Fprintf(e.stderr, "\r%-8s %d/%d bytes (%.0f%%)%s %v   ", p.Phase, p.Done, p.Total, 100*float64(p.Done)/float64(p.Total), rate, p.Elapsed.Round(100*time.Millisecond))
	} else {
		fmt.Fprintf(e.stderr, "\r%-8s %v   ", p.Phase, p.Elapsed.Round(100*time.Millisecond))
	}
	if p.Final {
		fmt.Fprintln(e.stderr)
	}
}

func cmdFlashSPI(e *env, args []string) error {
	fs := e.flags("flash spi", "--board B --programmer PROG [--region R]... [--image spi.bin] [--dry-run]")
	board := fs.String("board", "", "board name or profile path (gives the layout)")
	programmer := fs.String("programmer", "", "flashrom programmer, e.g. ch341a_spi, internal, dummy:emulate=W25Q128FV,image=chip.bin")
	chip := fs.String("chip", "", "flashrom chip name (-c), when several definitions match")
	img := fs.String("image", "", "chip image (default: OUT/spi.bin)")
	out := fs.String("out", "", "build output directory (default: out/<board>)")
	backups := fs.String("backup-dir", "", "where the pre-write chip backup goes (default: OUT/backups)")
	dry := fs.Bool("dry-run", false, "read the chip and show what would change, write nothing")
	flashrom := fs.String("flashrom", "flashrom", "flashrom binary")
	var regions, overwrite stringList
	fs.Var(&regions, "region", "region to write (repeatable; default: every region the profile does not preserve)")
	fs.Var(&overwrite, "overwrite-preserved", "allow writing this preserved region (factory data), also named with --region; prints what will be lost first (repeatable)")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if *programmer == "" {
		return usagef("--programmer is required (flashrom -p syntax)")
	}
	b, err := e.loadBoard(*board)
	if err != nil {
		return err
	}
	if b.Outputs.SPI == nil {
		return fmt.Errorf("board %s has no outputs.spi: nothing to flash to SPI", b.Name)
	}
	if *out == "" {
		*out = defaultOut(b.Name)
	}
	if *img == "" {
		*img = filepath.Join(*out, "spi.bin")
	}
	if *backups == "" {
		*backups = filepath.Join(*out, "backups")
	}
	data, err := os.ReadFile(*img)
	if err != nil {
		return fmt.Errorf("image: %w (run `fwbuild build --board %s` first, or pass --image)", err, b.Name)
	}
	// The build's records next to the image (out/<board>/ for the default image) say
	// what it must be; an explicit --image is checked against its own neighbours.
	built, err := flash.FindBuilt(*img, b.Name)
	if err != nil {
		return fmt.Errorf("image %s: %w; nothing was read or written", *img, err)
	}
	spi := b.Outputs.SPI
	layout := spi.Regions
	if spi.Descriptor == boardcfg.DescriptorImage {
		// The layout is the descriptor's, as the build derived it.
		if layout, err = image.ChipLayout(data, spi.Regions); err != nil {
			return fmt.Errorf("image %s: %w; nothing was read or written", *img, err)
		}
	}
	res, err := flash.WriteSPI(e.ctx, flash.SPIOptions{
		Flashrom: *flashrom, Programmer: *programmer, Chip: *chip, Image: data,
		ChipSize: uint64(spi.ChipSize), Regions: layout, PayloadFile: payloadFile(spi), Built: built,
		Write: regions, OverwritePreserved: overwrite, BackupDir: *backups, DryRun: *dry, Progress: e.progress, Logger: e.log,
		// Printed before anything is written, and to stderr so that --json keeps it too.
		ConfirmOverwrite: func(ls []flash.PreservedLoss) error {
			label := "WARNING"
			if *dry {
				label = "WARNING (dry run: nothing is written now)"
			}
			for _, l := range ls {
				fmt.Fprintf(e.stderr, "%s: %s\n", label, l)
			}
			return nil
		},
	})
	if e.json {
		if jerr := e.printJSON(res); jerr != nil {
			return jerr
		}
	} else {
		if res.Backup != "" {
			fmt.Fprintf(e.stdout, "backup of the whole chip: %s (sha256 %s)\n", res.Backup, res.BackupSHA256)
		}
		for _, c := range res.Commands {
			fmt.Fprintf(e.stdout, "  %s\n", c)
		}
		for _, c := range res.Changed {
			if res.DryRun {
				fmt.Fprintf(e.stdout, "would change: %s\n", c)
			} else {
				fmt.Fprintf(e.stdout, "%s\n", c)
			}
		}
		switch {
		case res.DryRun:
			fmt.Fprintln(e.stdout, "dry run: nothing written")
		case res.UpToDate:
			fmt.Fprintln(e.stdout, "chip already holds the image: nothing written")
		case err == nil:
			for _, r := range res.Written {
				fmt.Fprintf(e.stdout, "wrote and verified %s (sha256 %s)\n", r, res.Verified[r])
			}
		}
		if err != nil && res.Restore != "" {
			fmt.Fprintf(e.stderr, "to restore the chip as it was: %s\n", res.Restore)
		}
	}
	return err
}

func cmdFlashUSB(e *env, args []string) error {
	fs := e.flags("flash usb", "--device /dev/sdX|FILE [--image usb.img | --board B] [--force]")
	board := fs.String("board", "", "board whose built usb.img to write (default image: out/<board>/usb.img)")
	device := fs.String("device", "", "target: a whole-disk block device or a regular file")
	img := fs.String("image", "", "disk image (default: out/<board>/usb.img)")
	force := fs.Bool("force", false, "allow a device that does not report itself removable")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if *device == "" {
		return usagef("--device is required")
	}
	if *img == "" && *board == "" {
		return usagef("give --image or --board")
	}
	boardName := ""
	if *board != "" {
		b, err := e.loadBoard(*board)
		if err != nil {
			return err
		}
		boardName = b.Name
		if *img == "" {
			*img = filepath.Join(defaultOut(b.Name), "usb.img")
		}
	}
	built, err := flash.FindBuilt(*img, boardName)
	if err != nil {
		return fmt.Errorf("image %s: %w; nothing was written", *img, err)
	}
	res, err := flash.WriteUSB(e.ctx, flash.USBOptions{Device: *device, Image: *img, Force: *force, Built: built, Progress: e.progress, Logger: e.log})
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(res)
	}
	fmt.Fprintf(e.stdout, "wrote %d bytes to %s and verified (sha256 %s) in %v\n", res.Bytes, res.Target, res.SHA256, res.Elapsed.Round(time.Millisecond))
	if res.BackupGPTTo != 0 {
		fmt.Fprintf(e.stdout, "the device is larger than the image: moved the backup GPT from LBA %d to the device's last LBA %d\n", res.BackupGPTFrom, res.BackupGPTTo)
	}
	return nil
}

// payloadFile is the file an image built for the board must hold: the slot
// the payload replaced, or fwbuild's launcher.
func payloadFile(spi *boardcfg.SPI) string {
	if spi.Payload != "" {
		return launcher.FileGUID
	}
	return string(spi.PayloadFile)
}
