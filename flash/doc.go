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
// CLI wiring (cmd/fwbuild/cmd_flash.go; the global flags --json and -v go before "flash"):
//
//	fwbuild flash spi --board B --programmer P [--chip C] [--region R]... [--image F]
//	    [--out DIR] [--backup-dir DIR] [--flashrom BIN] [--dry-run]
//	  -> WriteSPI(ctx, SPIOptions{Flashrom: BIN, Programmer: P, Chip: C,
//	       Image: os.ReadFile(F) (default OUT/spi.bin; OUT defaults to out/B),
//	       Regions: the board profile's flash regions (name, start, size, preserve),
//	       Write: the --region values (empty = every region the profile does not preserve),
//	       BackupDir: DIR (default OUT/backups), DryRun, Progress: phase, bytes, Rate()})
//	  It prints res.Backup, res.Commands, each res.Changed[i].String() ("would change: ..."
//	  on --dry-run) and the regions written and verified; with --json, res instead. On error
//	  it also prints err as is (multi-line *Error: flashrom's lines, chip state, backup,
//	  restore command, what to do) and res.Restore, and exits non-zero; the result returned
//	  with an error holds what was done so far (e.g. Backup). There is no timeout flag: each
//	  flashrom run gets SPIOptions.Timeout's default of 30 minutes.
//	  Naming a preserved region with --region writes it, without asking.
//
//	fwbuild flash usb --device DEV|FILE [--image F | --board B] [--force]
//	  -> WriteUSB(ctx, USBOptions{Device, Image: F (default out/B/usb.img), Force,
//	       Progress: phase, bytes, Rate()})
package flash
