package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/fwbuild/fwbuild/boardcfg"
	"github.com/fwbuild/fwbuild/flash"
	"github.com/fwbuild/fwbuild/image"
	"github.com/fwbuild/fwbuild/launcher"
)

func defaultOut(board string) string { return filepath.Join("out", board) }

func (e *env) flashCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "flash spi|usb [flags]",
		Short: "write images: flash spi (flashrom) or flash usb (block device or file)",
		Example: "  fwbuild flash spi --board qemu-q35 --programmer ch341a_spi\n" +
			"  fwbuild flash usb --device /dev/sdX --board qemu-q35",
		RunE: runE(func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown flash target %q: want `flash spi` or `flash usb`", args[0])
			}
			return usagef("want `flash spi` or `flash usb`")
		}),
	}
	c.AddCommand(e.flashSPICommand(), e.flashUSBCommand())
	return c
}

type flashSPIOptions struct {
	board, programmer, chip, img, out, backups, flashrom string
	dry                                                  bool
	regions, overwrite                                   []string
}

func (e *env) flashSPICommand() *cobra.Command {
	var o flashSPIOptions
	c := &cobra.Command{
		Use:   "spi --board B --programmer PROG [--chip C] [--region R]... [--overwrite-preserved R]... [--image spi.bin] [--dry-run]",
		Short: "write the board's chip image with flashrom: backup, write the regions, verify",
		Long: "flash spi checks the image against the board and its build records, backs up the whole chip,\n" +
			"writes only the requested flashrom regions (default: those the profile does not preserve) and\n" +
			"verifies by reading back. A preserve region is written only when named with both --region R\n" +
			"and --overwrite-preserved R, after printing what the chip holds there.",
		Example: "  fwbuild flash spi --board qemu-q35 --programmer ch341a_spi --dry-run\n" +
			"  fwbuild flash spi --board qemu-q35 --programmer internal --region bios\n" +
			"  fwbuild flash spi --board qemu-q35 --programmer dummy:emulate=W25Q128FV,image=chip.bin --image spi.bin",
		Args: noArgs,
		RunE: runE(func(*cobra.Command, []string) error { return e.flashSPI(o) }),
	}
	f := c.Flags()
	e.boardFlag(c, &o.board, "board name or profile path (gives the layout)")
	f.StringVar(&o.programmer, "programmer", "", "flashrom programmer, e.g. ch341a_spi, internal, dummy:emulate=W25Q128FV,image=chip.bin")
	f.StringVar(&o.chip, "chip", "", "flashrom chip name (-c), when several definitions match")
	f.StringVar(&o.img, "image", "", "chip image (default: OUT/spi.bin)")
	f.StringVar(&o.out, "out", "", "build output directory (default: out/<board>)")
	f.StringVar(&o.backups, "backup-dir", "", "where the pre-write chip backup goes (default: OUT/backups)")
	f.BoolVar(&o.dry, "dry-run", false, "read the chip and show what would change, write nothing")
	f.StringVar(&o.flashrom, "flashrom", "flashrom", "flashrom binary")
	f.StringArrayVar(&o.regions, "region", nil, "write region `R` (repeatable; default: every region the profile does not preserve)")
	f.StringArrayVar(&o.overwrite, "overwrite-preserved", nil, "allow writing preserved region `R` (factory data), also named with --region; prints what will be lost first (repeatable)")
	c.MarkFlagFilename("image", "bin")
	c.MarkFlagDirname("out")
	c.MarkFlagDirname("backup-dir")
	return c
}

func (e *env) flashSPI(o flashSPIOptions) error {
	board, programmer, chip, img, out, backups, dry, flashrom := &o.board, &o.programmer, &o.chip, &o.img, &o.out, &o.backups, &o.dry, &o.flashrom
	regions, overwrite := o.regions, o.overwrite
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
		Write: regions, OverwritePreserved: overwrite, BackupDir: *backups, DryRun: *dry, Progress: e.flashProgress(), Logger: e.log,
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
		for _, r := range res.Kept {
			fmt.Fprintf(e.stdout, "kept the chip's unit region %s (the unit's credentials) as it was\n", r)
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

func (e *env) flashUSBCommand() *cobra.Command {
	var board, device, img string
	var force bool
	c := &cobra.Command{
		Use:   "usb --device DEV|FILE [--image usb.img | --board B] [--force]",
		Short: "write usb.img to a block device or file, verified by reading back",
		Long: "flash usb writes only a GPT disk whose ESP holds \\EFI\\BOOT\\BOOTX64.EFI and that matches its build\n" +
			"records; it fsyncs, reads back and compares, moves the backup GPT to a larger device's end, and\n" +
			"refuses mounted, root, non-removable (unless --force) or too-small devices.",
		Example: "  fwbuild flash usb --device /dev/sdX --board qemu-q35\n  fwbuild flash usb --device key.img --image out/qemu-q35/usb.img",
		Args:    noArgs,
		RunE:    runE(func(*cobra.Command, []string) error { return e.flashUSB(board, device, img, force) }),
	}
	e.boardFlag(c, &board, "board whose built usb.img to write (default image: out/<board>/usb.img)")
	c.Flags().StringVar(&device, "device", "", "target: a whole-disk block device or a regular file")
	c.Flags().StringVar(&img, "image", "", "disk image (default: out/<board>/usb.img)")
	c.Flags().BoolVar(&force, "force", false, "allow a device that does not report itself removable")
	c.MarkFlagFilename("image", "img")
	return c
}

func (e *env) flashUSB(boardArg, deviceArg, imgArg string, force bool) error {
	board, device, img := &boardArg, &deviceArg, &imgArg
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
	res, err := flash.WriteUSB(e.ctx, flash.USBOptions{Device: *device, Image: *img, Force: force, Built: built, Progress: e.flashProgress(), Logger: e.log})
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
