// Package flash writes fwbuild's images to hardware without bricking it.
//
// SPI (WriteSPI) drives flashrom; it never talks SPI itself. Before flashrom runs it refuses
// an image of another size than the board's chip (named first, before any region), a layout
// the image does not fit, unknown regions, a preserved region not deliberately overridden,
// an image whose SHA-256 differs from the build's manifest.json / SHA256SUMS (FindBuilt), and
// an image that is not UEFI firmware for the board (image.CheckFirmware: a firmware volume in
// the firmware region holding the payload file). It then probes the chip, refuses a chip of
// another size, reads the whole chip into a timestamped backup (and has flashrom verify the
// chip against it, so a flaky clip cannot yield a bad backup), writes only the requested
// layout regions (-l layout -i region), and reads the chip back: written regions must hash
// like the image, every other byte must equal the backup.
//
// A region the profile marks preserve (factory data) is never written unless named both in
// Write and in OverwritePreserved, and then only after ConfirmOverwrite was shown, per region,
// its range and what the chip and the image hold there (SHA-256, blank or not).
//
// Failures carry flashrom's relevant lines, the chip's state, what to do (never empty), the
// backup path and the exact command that restores it. An interrupted flash (ctx cancelled,
// Ctrl-C) is reported as interrupted, with the chip's state as far as known.
//
// USB (WriteUSB) refuses an image that is not a GPT disk with an EFI System Partition holding
// \EFI\BOOT\BOOTX64.EFI (image.CheckDisk) or that differs from the build's records, then copies
// it to a whole-disk block device or a regular file, fsyncs, reads back past the page cache and
// compares SHA-256. On a device larger than the image it moves the backup GPT (header and
// partition array) to the device's last sectors and points the primary header at it, as
// `sgdisk -e` would. It refuses partitions, mounted, swap, busy, read-only, root, too-small and
// (unless forced) non-removable devices.
//
// CLI wiring (cmd/fwbuild/cmd_flash.go; the global flags --json and -v go before "flash"):
//
//	fwbuild flash spi --board B --programmer P [--chip C] [--region R]... [--image F]
//	    [--overwrite-preserved R]... [--out DIR] [--backup-dir DIR] [--flashrom BIN] [--dry-run]
//	  -> WriteSPI(ctx, SPIOptions{Flashrom: BIN, Programmer: P, Chip: C,
//	       Image: os.ReadFile(F) (default OUT/spi.bin; OUT defaults to out/B),
//	       ChipSize, Regions, PayloadFile: the board profile's outputs.spi,
//	       Built: FindBuilt(F, B) (manifest.json / SHA256SUMS next to F),
//	       Write: the --region values (empty = every region the profile does not preserve),
//	       OverwritePreserved: the --overwrite-preserved values, ConfirmOverwrite: prints each loss,
//	       BackupDir: DIR (default OUT/backups), DryRun, Progress: phase, bytes, Rate()})
//	  It prints res.Backup, res.Commands, each res.Changed[i].String() ("would change: ..."
//	  on --dry-run) and the regions written and verified; with --json, res instead. On error
//	  it also prints err as is (multi-line *Error: flashrom's lines, chip state, backup,
//	  restore command, what to do) and res.Restore, and exits non-zero; the result returned
//	  with an error holds what was done so far (e.g. Backup). There is no timeout flag: each
//	  flashrom run gets SPIOptions.Timeout's default of 30 minutes.
//
//	fwbuild flash usb --device DEV|FILE [--image F | --board B] [--force]
//	  -> WriteUSB(ctx, USBOptions{Device, Image: F (default out/B/usb.img), Force,
//	       Built: FindBuilt(F, B), Progress: phase, bytes, Rate()})
package flash
