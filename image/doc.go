// Package image writes what gets flashed or copied: the USB/ESP disk image
// (go-diskfs: GPT + one FAT32 EFI System Partition holding
// \EFI\BOOT\BOOTX64.EFI) and the SPI chip image for UEFI boards (fiano: the
// payload replaces the PE32 section of a slot file in the base firmware,
// laid out on the chip per the board's regions), slot budgets, and
// read-only inspection (Inspect) of those images, of payloads and of guest
// bundles. The chip's flashrom layout file comes from
// boardcfg.FlashromLayout, which the flasher uses too.
//
// Everything takes plain values and is reproducible: the same spec gives
// the same bytes (GUIDs derived from a name, timestamps from a given epoch,
// fiano's pure-Go LZMA encoder pinned whatever is on PATH).
//
// fiano keeps global state (erase polarity, logger, an xz flag on
// flag.CommandLine); this package serializes its use and restores that
// state after each call, so callers may use it from several goroutines.
// fiano registers -force, -remove and -xzPath on flag.CommandLine at
// import: a CLI linking this package should parse its own flag.FlagSet.
package image
