// Package flash writes fwbuild's images to hardware without bricking it.
//
// SPI (WriteSPI) drives flashrom; it never talks SPI itself. It probes the chip, refuses an
// image whose size differs from the chip's, reads the whole chip into a timestamped backup
// (and has flashrom verify the chip against it, so a flaky clip cannot yield a bad backup),
// writes only the requested layout regions (-l layout -i region), and then reads the chip back:
// written regions must hash like the image, every other byte must equal the backup.
// Failures carry flashrom's relevant lines, what to do, the backup path and the exact
// command that restores it.
//
// USB (WriteUSB) copies a disk image to a whole-disk block device or a regular file, fsyncs,
// reads back past the page cache and compares SHA-256. It refuses partitions, mounted, swap,
// busy, read-only, root, too-small and (unless forced) non-removable devices.
//
// CLI wiring (cmd/fwbuild):
//
//	fwbuild flash spi --board B [--image out/B/spi.bin] --programmer P [--chip C]
//	    [--region R]... [--backup-dir DIR] [--dry-run] [--timeout D] [--json]
//	  -> WriteSPI(ctx, SPIOptions{Programmer: P, Chip: C, Image: os.ReadFile(image),
//	       Regions: the board profile's flash regions (name, start, size, preserve),
//	       Write: the --region values (empty = fwbuild's regions), BackupDir: DIR,
//	       DryRun, Timeout, Progress: print phase + elapsed})
//	  Print res.Backup and res.Restore always, each res.Changed[i].String() (on --dry-run:
//	  "would change"), res.Commands on --dry-run or -v. On error print err as is (multi-line
//	  *Error: flashrom's lines, chip state, backup, restore command, what to do); with --json
//	  marshal the *Error fields (errors.As). Exit non-zero. The result returned with an error
//	  holds what was done so far (e.g. Backup).
//	  Naming a preserved region with --region writes it: a CLI may want a confirmation.
//
//	fwbuild flash usb --board B [--image out/B/usb.img] --device /dev/sdX [--force]
//	  -> WriteUSB(ctx, USBOptions{Device, Image, Force, Progress: bytes/total + Rate()})
package flash
