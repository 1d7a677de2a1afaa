package flash

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/fwbuild/fwbuild/boardcfg"
	"github.com/fwbuild/fwbuild/image"
)

// SPIOptions describes one SPI flash through flashrom.
type SPIOptions struct {
	// Flashrom is the flashrom binary (name on PATH or path); "" means "flashrom".
	Flashrom string
	// Programmer is flashrom's -p argument, e.g. "ch341a_spi", "internal",
	// "dummy:emulate=W25Q128FV,image=chip.bin".
	Programmer string
	// Chip is flashrom's -c argument; needed when several chip definitions match.
	Chip string
	// Image is the whole-chip image (e.g. spi.bin); its size must equal the chip's.
	Image []byte
	// ChipSize is the board's chip size (outputs.spi.chip_size). When set, an image of
	// another size is refused before anything else, naming both sizes.
	ChipSize uint64
	// Regions is the flash layout (the board profile's outputs.spi.regions; name, start,
	// size, preserve and firmware count). Every region to write must be in it.
	Regions []boardcfg.Region
	// PayloadFile is the GUID of the file that holds the board's payload
	// (outputs.spi.payload_file); when set, the firmware region must hold it.
	PayloadFile string
	// AnyImage skips the check that Image is UEFI firmware (image.CheckFirmware: a
	// firmware volume in the firmware region, holding PayloadFile). Only for images that
	// are deliberately not firmware, such as test patterns; every other check still applies.
	AnyImage bool
	// Built lists what the build's records say the image is (see FindBuilt); the image's
	// SHA-256 must equal each.
	Built []Built
	// Write names the regions to write. Empty means every region not marked Preserve.
	// A preserved region is never written unless it is named both here and in
	// OverwritePreserved: one name is a typo away, two are a decision.
	Write []string
	// OverwritePreserved names the preserved regions that Write may overwrite. Each must
	// be preserved and named in Write too, and ConfirmOverwrite must be set.
	OverwritePreserved []string
	// ConfirmOverwrite is called after the backup and before any write (on a dry run too)
	// with what each preserved region about to be overwritten holds on the chip and in
	// the image; it must show that to the user. An error from it stops the flash with
	// nothing written.
	ConfirmOverwrite func([]PreservedLoss) error
	// BackupDir receives the full-chip backup (spi-backup-<UTC time>.bin + .sha256). Created if missing.
	BackupDir string
	// DryRun reads the chip (and keeps the backup) and reports what would change and the
	// commands that would run, without writing.
	DryRun bool
	// EraseBlock is the granularity of the change report; 0 means 4096.
	EraseBlock uint64
	// Timeout bounds each flashrom run; 0 means 30 minutes (slow programmers take minutes per read).
	Timeout time.Duration
	// Progress, if set, receives phase reports (see Progress).
	Progress func(Progress)
	// Logger receives debug logs including flashrom's full output; nil means slog.Default().
	Logger *slog.Logger
}

// SPIResult describes what WriteSPI did (or, on a dry run, would do).
type SPIResult struct {
	Chip         string // chip name reported by flashrom
	ChipSize     uint64
	Backup       string // full-chip backup taken before writing
	BackupSHA256 string
	Restore      string // shell command that writes Backup back to the whole chip
	Layout       string // the layout file given to flashrom
	// Commands are the flashrom commands run, in order; on a dry run, including those that
	// would run. The layout and image paths in them are temporary files removed on return.
	Commands []string
	Changed  []RegionChange // per requested region, the erase blocks that differ (chip before vs image)
	// Overwritten is what the preserved regions named in OverwritePreserved held before
	// (and what they get), as given to ConfirmOverwrite.
	Overwritten []PreservedLoss
	Written     []string // regions written and verified; empty on a dry run or when UpToDate
	// Kept names the unit regions nested in a written region whose chip
	// bytes were written back unchanged (the unit's credential record).
	Kept     []string
	UpToDate bool // the requested regions already held the image: nothing was written
	// Verified maps each written region to the SHA-256 of its bytes, read back from the chip.
	Verified map[string]string
	DryRun   bool
}

// RegionChange counts the erase blocks of one region that differ between chip and image.
type RegionChange struct {
	Region        string
	Start, Size   uint64
	BlockSize     uint64       // erase block size used for the count
	Blocks        int          // erase blocks the region touches
	ChangedBlocks int          // of those, how many differ
	Ranges        []BlockRange // the differing blocks, merged, clipped to the region
}

// String renders the change for people, e.g.
// "bios 0x10000-0xffffff: 3 of 4080 4 KiB blocks differ: 0x20000-0x21fff, 0x80000-0x80fff".
func (c RegionChange) String() string {
	s := fmt.Sprintf("%s 0x%x-0x%x: %d of %d %s blocks differ", c.Region, c.Start, c.Start+c.Size-1,
		c.ChangedBlocks, c.Blocks, humanSize(c.BlockSize))
	const maxRanges = 8
	for i, r := range c.Ranges {
		switch {
		case i == maxRanges:
			return s + fmt.Sprintf(", ... (%d more ranges)", len(c.Ranges)-maxRanges)
		case i == 0:
			s += ": " + r.String()
		default:
			s += ", " + r.String()
		}
	}
	return s
}

// PreservedLoss describes a preserved region about to be overwritten: what the chip
// holds there (also kept in the backup) and what the image puts there.
type PreservedLoss struct {
	Region      string
	Start, End  uint64 // End inclusive
	ChipSHA256  string // the region's bytes on the chip before writing
	ChipBlank   bool   // the chip's region is all 0xFF (erased): nothing is lost
	ImageSHA256 string
	ImageBlank  bool
	Backup      string // full-chip backup holding the chip's bytes
}

// String renders the loss for people, e.g. "preserved region vpd 0x0-0xffff (64 KiB)
// will be OVERWRITTEN: the chip holds data (sha256 ...), the image has blank (all 0xFF)
// (sha256 ...); the chip's bytes stay in the backup ...".
func (l PreservedLoss) String() string {
	what := func(blank bool) string {
		if blank {
			return "blank (all 0xFF)"
		}
		return "data"
	}
	head := fmt.Sprintf("preserved region %s 0x%x-0x%x (%s)", l.Region, l.Start, l.End, humanSize(l.End-l.Start+1))
	if l.ChipSHA256 == l.ImageSHA256 {
		return fmt.Sprintf("%s: the chip already holds the image's bytes (%s, sha256 %s): nothing is lost", head, what(l.ChipBlank), l.ChipSHA256)
	}
	return fmt.Sprintf("%s will be OVERWRITTEN: the chip holds %s (sha256 %s), the image has %s (sha256 %s); the chip's bytes stay in the backup %s",
		head, what(l.ChipBlank), l.ChipSHA256, what(l.ImageBlank), l.ImageSHA256, l.Backup)
}

// BlockRange is a byte range of the chip, End inclusive.
type BlockRange struct{ Start, End uint64 }

func (r BlockRange) String() string { return fmt.Sprintf("0x%x-0x%x", r.Start, r.End) }

// WriteSPI writes the requested regions of o.Image to an SPI chip through flashrom:
// probe (chip size must equal the image size), full-chip backup read twice (-r then -v),
// write of the requested regions only (-l layout -i region...), then a full read-back
// comparing the written regions with the image (SHA-256) and everything else with the backup.
// Every failure is an *Error; once a backup exists it carries the backup path and the
// command that restores it. The result returned with an error holds what was done so far.
func WriteSPI(ctx context.Context, o SPIOptions) (SPIResult, error) {
	res := SPIResult{DryRun: o.DryRun}
	plan, err := planSPI(o)
	if err != nil {
		return res, err
	}
	res.Layout = boardcfg.FlashromLayout(plan.regions)
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	fr, err := newFlashrom(o.Flashrom, o.Programmer, o.Chip, o.Timeout, log, &reporter{fn: o.Progress})
	if err != nil {
		return res, err
	}
	work, err := os.MkdirTemp("", "fwbuild-flash-")
	if err != nil {
		return res, &Error{Op: "spi check", Msg: "temp dir", Err: err}
	}
	defer os.RemoveAll(work)
	s := &spiSession{spiPlan: plan, fr: fr, res: &res, work: work}
	err = s.flash(ctx) // before res is copied out: flash fills it in through s.res
	return res, err
}

// spiPlan is a checked request: what WriteSPI may touch, decided before flashrom runs.
type spiPlan struct {
	image   []byte
	regions []boardcfg.Region // the whole layout, sorted by start
	write   []boardcfg.Region // the regions to write, sorted by start
	block   uint64            // erase block size of the change report
	dryRun  bool
	// backupDir receives the full-chip backup.
	backupDir string
	// overwrite are the preserved regions among write, each allowed by OverwritePreserved.
	overwrite []boardcfg.Region
	confirm   func([]PreservedLoss) error
}

// planSPI refuses options that cannot work before anything is read or written.
func planSPI(o SPIOptions) (spiPlan, error) {
	check := func(format string, a ...any) error {
		return &Error{Op: "spi check", Msg: fmt.Sprintf(format, a...),
			Hint: "nothing was read or written; fix the options and run again"}
	}
	if o.Programmer == "" {
		return spiPlan{}, check("no programmer given (e.g. ch341a_spi, internal, dummy:emulate=W25Q128FV,image=chip.bin)")
	}
	if len(o.Image) == 0 {
		return spiPlan{}, check("empty image")
	}
	if o.BackupDir == "" {
		return spiPlan{}, check("no backup directory given: WriteSPI always backs the chip up first")
	}
	p := spiPlan{image: o.Image, block: o.EraseBlock, dryRun: o.DryRun, backupDir: o.BackupDir, confirm: o.ConfirmOverwrite}
	if p.block == 0 {
		p.block = 4096
	}
	if p.block&(p.block-1) != 0 {
		return spiPlan{}, check("erase block size %d is not a power of two", p.block)
	}
	// The size first: a wrong-size image makes every region look wrong, and naming a
	// region would hide the real mistake (an image built for another chip).
	if o.ChipSize != 0 && o.ChipSize != p.size() {
		return spiPlan{}, &Error{Op: "spi check",
			Msg: fmt.Sprintf("image is %s, the board's chip is %s (outputs.spi.chip_size): a %d-byte image cannot be flashed to a %d-byte chip",
				humanSize(p.size()), humanSize(o.ChipSize), p.size(), o.ChipSize),
			Hint: "nothing was read or written; pass the spi.bin built for this board (fwbuild build --board ...)"}
	}
	if end := layoutEnd(o.Regions); end > p.size() {
		return spiPlan{}, check("image is %s, but the layout's regions reach 0x%x (%s): a %d-byte image is too small for this layout",
			humanSize(p.size()), end-1, humanSize(end), p.size())
	}
	var err error
	if p.regions, err = validateRegions(o.Regions, p.size()); err != nil {
		return spiPlan{}, check("layout: %v", err)
	}
	if p.write, err = selectRegions(p.regions, o.Write); err != nil {
		return spiPlan{}, check("%v", err)
	}
	if err := checkPreserved(p.regions, p.write, o); err != nil {
		return spiPlan{}, err
	}
	for _, r := range p.write {
		if preserved(r) {
			p.overwrite = append(p.overwrite, r)
		}
	}
	// The content last: hashing and parsing firmware take a moment, option mistakes none.
	// A provisioned copy of spi.bin differs from the build's only in its
	// unit region: the build's records are of the erased one.
	if err := checkBuilt(sum(erasedUnits(o.Image, p.regions)), o.Built); err != nil {
		return spiPlan{}, &Error{Op: "spi check", Msg: err.Error(),
			Hint: "nothing was read or written; rebuild (fwbuild build) and flash the new spi.bin, or pass the image you meant with --image"}
	}
	if !o.AnyImage {
		if err := image.CheckFirmware(o.Image, p.regions, o.PayloadFile); err != nil {
			return spiPlan{}, &Error{Op: "spi check", Msg: "the image is not firmware for this board: " + err.Error(),
				Hint: "nothing was read or written; flash the spi.bin that `fwbuild build` made for this board"}
		}
	}
	return p, nil
}

// layoutEnd is one past the last byte any region covers.
func layoutEnd(regions []boardcfg.Region) uint64 {
	var end uint64
	for _, r := range regions {
		end = max(end, uint64(r.Start)+uint64(r.Size))
	}
	return end
}

// checkPreserved refuses writing a preserved region unless it is deliberately named
// twice (Write and OverwritePreserved) and someone is shown what it holds.
func checkPreserved(regions, write []boardcfg.Region, o SPIOptions) error {
	byName := map[string]boardcfg.Region{}
	for _, r := range regions {
		byName[r.Name] = r
	}
	writing := map[string]bool{}
	for _, r := range write {
		writing[r.Name] = true
	}
	allowed := map[string]bool{}
	for _, n := range o.OverwritePreserved {
		r, ok := byName[n]
		switch {
		case !ok:
			return &Error{Op: "spi check", Msg: fmt.Sprintf("--overwrite-preserved %s: no region %q in the layout", n, n),
				Hint: "nothing was read or written; name a preserved region of the board profile"}
		case !preserved(r):
			return &Error{Op: "spi check", Msg: fmt.Sprintf("--overwrite-preserved %s: region %q is not marked preserve, there is nothing to override", n, n),
				Hint: "nothing was read or written; drop --overwrite-preserved " + n}
		case !writing[n]:
			return &Error{Op: "spi check", Msg: fmt.Sprintf("--overwrite-preserved %s without writing %s: the override names the region again, it does not select it", n, n),
				Hint: fmt.Sprintf("nothing was read or written; to overwrite it, pass --region %s --overwrite-preserved %s", n, n)}
		}
		allowed[n] = true
	}
	for _, r := range write {
		if r.Unit && !allowed[r.Name] {
			return &Error{Op: "spi check",
				Msg: fmt.Sprintf("refusing to write region %s (0x%x-0x%x): it holds the unit's credential record (written per unit by fwbuild provision); the build's image has none there",
					r.Name, uint64(r.Start), uint64(r.End())),
				Hint: fmt.Sprintf("nothing was read or written; to set a unit's credentials use fwbuild provision; to erase them deliberately, add --overwrite-preserved %s", r.Name)}
		}
		if r.Preserve && !allowed[r.Name] {
			return &Error{Op: "spi check",
				Msg: fmt.Sprintf("refusing to write region %s (0x%x-0x%x): the board profile marks it preserve (factory data such as serial numbers and MAC addresses, which no build can restore)",
					r.Name, uint64(r.Start), uint64(r.End())),
				Hint: fmt.Sprintf("nothing was read or written; to overwrite it anyway, deliberately, add --overwrite-preserved %s (what will be lost is printed first, and the whole chip is backed up)", r.Name)}
		}
	}
	if len(allowed) > 0 && o.ConfirmOverwrite == nil {
		return &Error{Op: "spi check", Msg: "OverwritePreserved is set but ConfirmOverwrite is not: what will be lost must be shown before it is overwritten",
			Hint: "nothing was read or written; set SPIOptions.ConfirmOverwrite"}
	}
	return nil
}

func (p spiPlan) size() uint64 { return uint64(len(p.image)) }

// spiSession carries one WriteSPI run from the probe to the verified write; each step
// fills in res as it goes, so that a failure returns what was done so far.
type spiSession struct {
	spiPlan
	fr   *flashrom
	res  *SPIResult
	work string // private temp dir: layout, image copy, read-back
	old  []byte // the backup's content: the chip before writing
}

// flash runs the steps in order, each only once the previous one succeeded.
func (s *spiSession) flash(ctx context.Context) error {
	// Probe first: it is quick, and a wrong chip or image size is refused before a long read.
	if err := s.probe(ctx); err != nil {
		return err
	}
	if err := s.backup(ctx); err != nil {
		return err
	}
	s.keepUnits()
	s.res.Changed = changedBlocks(s.old, s.image, s.write, s.block)
	if len(s.overwrite) > 0 {
		s.res.Overwritten = preservedLosses(s.old, s.image, s.overwrite, s.res.Backup)
		if err := s.confirm(s.res.Overwritten); err != nil {
			return &Error{Op: "spi write", Msg: "overwriting the preserved regions was not confirmed", Err: err,
				Chip: ChipUnchanged, ChipNote: "nothing was written to it", Backup: s.res.Backup, Hint: "nothing was written"}
		}
	}
	write, readback, err := s.stage()
	if err != nil {
		return err
	}
	if s.dryRun {
		s.res.Commands = append(s.res.Commands, s.fr.command(write), s.fr.command(readback))
		return nil
	}
	if !anyChanged(s.res.Changed) {
		s.res.UpToDate = true
		return nil
	}
	if err := ctx.Err(); err != nil {
		return &Error{Op: "spi write", Msg: "interrupted before writing", Err: err, Chip: ChipUnchanged,
			ChipNote: "nothing was written to it", Backup: s.res.Backup,
			Hint: "nothing was written; run the same command again to flash"}
	}
	if err := s.writeRegions(ctx, write); err != nil {
		return err
	}
	return s.verify(ctx, readback)
}

// run records a flashrom command in res.Commands and runs it.
func (s *spiSession) run(ctx context.Context, op, phase string, total int64, args []string) (diagnosis, error) {
	s.res.Commands = append(s.res.Commands, s.fr.command(args))
	_, d, err := s.fr.run(ctx, op, phase, total, args)
	return d, err
}

// probe has flashrom identify the chip and refuses an image of another size.
func (s *spiSession) probe(ctx context.Context) error {
	d, err := s.run(ctx, "spi probe", "probe", 0, s.fr.args("--flash-size"))
	if err != nil {
		return s.interrupted(ctx, "spi probe", "probe", d, err)
	}
	if len(d.Found) > 0 {
		s.res.Chip = d.Found[len(d.Found)-1]
	}
	if d.Size <= 0 {
		return &Error{Op: "spi probe", Msg: "flashrom did not report the chip size", Flashrom: d.Lines,
			Hint: "check the programmer string and flashrom version (needs --flash-size, flashrom >= 1.2)"}
	}
	s.res.ChipSize = uint64(d.Size)
	if s.res.ChipSize != s.size() {
		return &Error{Op: "spi check",
			Msg: fmt.Sprintf("image is %d bytes (%s) but chip %q is %d bytes (%s)",
				s.size(), humanSize(s.size()), s.res.Chip, s.res.ChipSize, humanSize(s.res.ChipSize)),
			Hint: "build the image for this board's chip, or check --chip / the programmer; nothing was written"}
	}
	return nil
}

// backup reads the whole chip into a new file in the backup directory, then has flashrom
// verify the chip against it, so a flaky clip cannot give a bad backup (and the write can
// trust it as --flash-contents).
func (s *spiSession) backup(ctx context.Context) error {
	path, err := s.readBackup(ctx)
	if err != nil {
		return err
	}
	s.res.Backup = path
	s.res.BackupSHA256 = sum(s.old)
	s.res.Restore = s.fr.command(s.fr.args("-w", path))
	if err := persistBackup(path, s.res.BackupSHA256); err != nil {
		return &Error{Op: "spi backup", Msg: "sync backup", Err: err, Backup: path}
	}
	if d, err := s.run(ctx, "spi backup", "backup-verify", int64(s.size()), s.fr.args("-v", path)); err != nil {
		if ctx.Err() != nil {
			return s.interrupted(ctx, "spi backup", "backup-verify", d, err)
		}
		var e *Error
		if errors.As(err, &e) {
			e.Backup = path
			e.Msg = "the chip does not read the same twice, the backup is not trustworthy: " + e.Msg
			e.Hint = "check the clip/cable (contact, short wires) and try a lower spispeed=; nothing was written"
		}
		return err
	}
	return nil
}

// readBackup reads the chip into a uniquely named file (through a .partial name, so an
// interrupted read never looks like a backup) and loads it into s.old.
func (s *spiSession) readBackup(ctx context.Context) (string, error) {
	path, err := reserveBackup(s.backupDir)
	if err != nil {
		return "", &Error{Op: "spi backup", Msg: "create backup file in " + s.backupDir, Err: err}
	}
	partial := path + ".partial"
	if d, err := s.run(ctx, "spi backup", "backup", int64(s.size()), s.fr.args("-r", partial)); err != nil {
		os.Remove(partial)
		os.Remove(path)
		return "", s.interrupted(ctx, "spi backup", "backup", d, err)
	}
	if err := os.Rename(partial, path); err != nil {
		return "", &Error{Op: "spi backup", Msg: "rename backup", Err: err}
	}
	old, err := os.ReadFile(path)
	if err != nil {
		return "", &Error{Op: "spi backup", Msg: "read backup", Err: err}
	}
	if uint64(len(old)) != s.size() {
		return "", &Error{Op: "spi backup", Chip: ChipUnchanged, Backup: path,
			Msg:  fmt.Sprintf("backup %s is %d bytes, expected the chip size %d", path, len(old), s.size()),
			Hint: "flashrom read a different size than it reported: check the programmer and --chip"}
	}
	s.old = old
	return path, nil
}

// stage writes the layout file and a private copy of the image, and returns the write
// and read-back commands' arguments.
func (s *spiSession) stage() (write, readback []string, err error) {
	layoutPath := filepath.Join(s.work, "layout")
	imagePath := filepath.Join(s.work, "image.bin")
	if err := os.WriteFile(layoutPath, []byte(s.res.Layout), 0o600); err != nil {
		return nil, nil, &Error{Op: "spi write", Msg: "write layout", Err: err}
	}
	// flashrom writes this private copy: what is verified is exactly what was written.
	if err := os.WriteFile(imagePath, s.image, 0o600); err != nil {
		return nil, nil, &Error{Op: "spi write", Msg: "write image copy", Err: err}
	}
	// Only the named layout regions are written: -i is what keeps flashrom off the rest.
	write = s.fr.args("-l", layoutPath)
	for _, r := range s.write {
		write = append(write, "-i", r.Name)
	}
	// The backup was just verified against the chip, so flashrom need not read it a third time.
	write = append(write, "--flash-contents", s.res.Backup, "-w", imagePath)
	return write, s.fr.args("-r", s.readbackPath()), nil
}

func (s *spiSession) readbackPath() string { return filepath.Join(s.work, "readback.bin") }

// writeRegions runs the write; on failure it reads the chip back to say whether it changed.
func (s *spiSession) writeRegions(ctx context.Context, args []string) error {
	var total int64
	for _, r := range s.write {
		total += int64(r.Size)
	}
	d, err := s.run(ctx, "spi write", "write", total, args)
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return s.interrupted(ctx, "spi write", "write", d, err)
	}
	var e *Error
	if !errors.As(err, &e) {
		return err
	}
	e.Backup, e.Restore = s.res.Backup, s.res.Restore
	e.Chip = chipState(ctx, s.fr, s.readbackPath(), s.old, d)
	if e.Chip != ChipUnchanged {
		e.Hint = joinHints(e.Hint, "restore the backup with the restore command above before powering the board")
	}
	return e
}

// interrupted reports a step stopped by ctx (Ctrl-C, SIGTERM) as what it is, with the
// chip's state as far as it is known, instead of as the flashrom failure that the
// killed flashrom looks like (a cancelled backup-verify is not a flaky clip). The chip is
// not read back: whoever interrupted wants flashrom to stop, not another slow read.
// A failure not caused by ctx is returned unchanged.
func (s *spiSession) interrupted(ctx context.Context, op, phase string, d diagnosis, err error) error {
	if ctx.Err() == nil {
		return err
	}
	e := &Error{Op: op, Err: ctx.Err(), Flashrom: d.Lines, Backup: s.res.Backup}
	switch phase {
	case "probe", "backup", "backup-verify":
		what := map[string]string{"probe": "probing the chip", "backup": "reading the chip for the backup",
			"backup-verify": "checking the backup against the chip"}[phase]
		e.Msg = "interrupted while " + what + ": nothing was written"
		e.Chip, e.ChipNote = ChipUnchanged, "nothing was written to it yet"
		e.Hint = "the chip is as it was, no restore needed; run the same command again to flash"
	case "write":
		e.Msg = "interrupted while writing " + regionNames(s.write) + ": the chip may be partly written and not boot"
		e.Chip, e.ChipNote = ChipUnknown, "flashrom was stopped mid-write; not read back, to stop as asked"
		switch d.Changed {
		case 1:
			e.Chip, e.ChipNote = ChipModified, "flashrom said so when it was stopped"
		case -1:
			e.Chip, e.ChipNote = ChipUnchanged, "flashrom said nothing had changed when it was stopped"
		}
		e.Restore = s.res.Restore
		e.Hint = "do not power the board off or reset it yet: restore the backup with the restore command above, " +
			"or run the same flash again to finish writing"
	default: // "verify": flashrom finished (and verified) the write; fwbuild's read-back did not finish
		e.Msg = "interrupted while reading the chip back: flashrom wrote " + regionNames(s.write) + ", fwbuild did not finish checking it"
		e.Chip, e.ChipNote = ChipModified, "flashrom wrote the regions; fwbuild's read-back was stopped"
		e.Restore = s.res.Restore
		e.Hint = "run the same command again to check the chip (it writes nothing if the chip already holds the image), " +
			"or restore the backup with the restore command above"
	}
	return e
}

func regionNames(rs []boardcfg.Region) string {
	n := make([]string, len(rs))
	for i, r := range rs {
		n[i] = r.Name
	}
	return strings.Join(n, ", ")
}

// preservedLosses says what each preserved region holds on the chip and in the image.
func preservedLosses(old, img []byte, regions []boardcfg.Region, backup string) []PreservedLoss {
	var out []PreservedLoss
	for _, r := range regions {
		lo, hi := uint64(r.Start), uint64(r.End())+1
		out = append(out, PreservedLoss{Region: r.Name, Start: lo, End: hi - 1, Backup: backup,
			ChipSHA256: sum(old[lo:hi]), ChipBlank: blank(old[lo:hi]),
			ImageSHA256: sum(img[lo:hi]), ImageBlank: blank(img[lo:hi])})
	}
	return out
}

func blank(b []byte) bool {
	for _, c := range b {
		if c != 0xFF {
			return false
		}
	}
	return true
}

// verify reads the whole chip back: the written regions must hash like the image and
// every other byte must still equal the backup.
func (s *spiSession) verify(ctx context.Context, args []string) error {
	backup, restore := s.res.Backup, s.res.Restore
	if d, err := s.run(ctx, "spi verify", "verify", int64(s.size()), args); err != nil {
		if ctx.Err() != nil {
			return s.interrupted(ctx, "spi verify", "verify", d, err)
		}
		var e *Error
		if errors.As(err, &e) {
			e.Msg = "read-back after a successful write failed: " + e.Msg
			e.Backup, e.Restore, e.Chip = backup, restore, ChipUnknown
		}
		return err
	}
	rb, err := os.ReadFile(s.readbackPath())
	if err != nil {
		return &Error{Op: "spi verify", Msg: "read read-back file", Err: err, Backup: backup, Restore: restore}
	}
	verified, problems := compareReadback(rb, s.image, s.old, s.regions, s.write)
	if len(problems) > 0 {
		st := ChipModified
		if bytes.Equal(rb, s.old) {
			st = ChipUnchanged
		}
		return &Error{Op: "spi verify", Chip: st, Backup: backup, Restore: restore,
			Msg:  "read-back does not match although flashrom reported success:\n    " + strings.Join(problems, "\n    "),
			Hint: "check the connection and write protection, restore the backup with the command above, and try again"}
	}
	for _, r := range s.write {
		s.res.Written = append(s.res.Written, r.Name)
	}
	s.res.Verified = verified
	return nil
}

func anyChanged(cs []RegionChange) bool {
	for _, c := range cs {
		if c.ChangedBlocks > 0 {
			return true
		}
	}
	return false
}

// selectRegions resolves the names to write; empty means every non-preserved region.
func selectRegions(regions []boardcfg.Region, names []string) ([]boardcfg.Region, error) {
	byName := map[string]boardcfg.Region{}
	var all []string
	for _, r := range regions {
		byName[r.Name] = r
		all = append(all, r.Name)
	}
	var out []boardcfg.Region
	if len(names) == 0 {
		// A nested region is written with the region it is nested in.
		for _, r := range regions {
			if _, nested := parentOf(regions, r); !r.Preserve && !nested {
				out = append(out, r)
			}
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("every layout region is marked preserve (%s): there is nothing to write unless regions are named with an override (--region R --overwrite-preserved R)",
				strings.Join(all, ", "))
		}
		return out, nil
	}
	seen := map[string]bool{}
	for _, n := range names {
		r, ok := byName[n]
		if !ok {
			return nil, fmt.Errorf("region %q is not in the layout (regions: %s)", n, strings.Join(all, ", "))
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start < out[j].Start })
	for _, r := range out {
		if p, ok := parentOf(regions, r); ok && seen[p.Name] {
			return nil, fmt.Errorf("region %q lies inside region %q, which is written too: name only %q (it covers %q)", r.Name, p.Name, p.Name, r.Name)
		}
	}
	return out, nil
}

// changedBlocks compares old and img inside each region, erase block by erase block.
func changedBlocks(old, img []byte, regions []boardcfg.Region, blk uint64) []RegionChange {
	var out []RegionChange
	for _, r := range regions {
		start, end := uint64(r.Start), uint64(r.End())
		c := RegionChange{Region: r.Name, Start: start, Size: uint64(r.Size), BlockSize: blk}
		for b := start &^ (blk - 1); b <= end; b += blk {
			lo, hi := max(b, start), min(b+blk, end+1)
			c.Blocks++
			if bytes.Equal(old[lo:hi], img[lo:hi]) {
				continue
			}
			c.ChangedBlocks++
			if n := len(c.Ranges); n > 0 && c.Ranges[n-1].End+1 == lo {
				c.Ranges[n-1].End = hi - 1
			} else {
				c.Ranges = append(c.Ranges, BlockRange{lo, hi - 1})
			}
		}
		out = append(out, c)
	}
	return out
}

// compareReadback checks the written regions against the image and every other byte
// against the backup; it returns the written regions' hashes and any mismatches.
func compareReadback(rb, img, old []byte, all, written []boardcfg.Region) (map[string]string, []string) {
	var problems []string
	if len(rb) != len(img) {
		return nil, []string{fmt.Sprintf("read back %d bytes, chip size is %d", len(rb), len(img))}
	}
	hashes := map[string]string{}
	for _, r := range written {
		got, want := sum(rb[r.Start:r.End()+1]), sum(img[r.Start:r.End()+1])
		if got != want {
			off, n := firstDiff(rb, img, uint64(r.Start), uint64(r.End())+1)
			problems = append(problems, fmt.Sprintf("region %q: sha256 %s, image has %s (%d bytes differ, first at 0x%x)",
				r.Name, got[:16], want[:16], n, off))
			continue
		}
		hashes[r.Name] = got
	}
	// Everything not written must still equal the backup: proof nothing else was touched.
	var pos uint64
	check := func(lo, hi uint64) {
		if lo >= hi || bytes.Equal(rb[lo:hi], old[lo:hi]) {
			return
		}
		off, n := firstDiff(rb, old, lo, hi)
		problems = append(problems, fmt.Sprintf("0x%x-0x%x (%s) was not to be written but %d bytes differ from the backup, first at 0x%x",
			lo, hi-1, regionAt(all, off), n, off))
	}
	for _, r := range written {
		check(pos, uint64(r.Start))
		pos = uint64(r.End()) + 1
	}
	check(pos, uint64(len(rb)))
	return hashes, problems
}

func firstDiff(a, b []byte, lo, hi uint64) (first uint64, n int) {
	first = hi
	for i := lo; i < hi; i++ {
		if a[i] != b[i] {
			if n == 0 {
				first = i
			}
			n++
		}
	}
	return first, n
}

func regionAt(all []boardcfg.Region, off uint64) string {
	for _, r := range all {
		if off >= uint64(r.Start) && off <= uint64(r.End()) {
			if r.Preserve {
				return "region " + r.Name + ", preserved"
			}
			return "region " + r.Name
		}
	}
	return "outside any region"
}

// chipState reads the chip back after a failed write and compares it with the backup; if
// that read fails too, it falls back on what flashrom itself said.
func chipState(ctx context.Context, fr *flashrom, path string, old []byte, d diagnosis) string {
	fallback := ChipUnknown
	switch d.Changed {
	case 1:
		fallback = ChipModified
	case -1:
		fallback = ChipUnchanged
	}
	if ctx.Err() != nil {
		return fallback
	}
	if _, _, err := fr.run(ctx, "spi write", "verify", int64(len(old)), fr.args("-r", path)); err != nil {
		return fallback
	}
	rb, err := os.ReadFile(path)
	if err != nil {
		return fallback
	}
	if bytes.Equal(rb, old) {
		return ChipUnchanged
	}
	return ChipModified
}

// reserveBackup creates an empty, uniquely named backup file so concurrent runs never share one.
func reserveBackup(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	stamp := time.Now().UTC().Format("20060102T150405Z")
	for i := 0; i < 1000; i++ {
		name := "spi-backup-" + stamp + ".bin"
		if i > 0 {
			name = fmt.Sprintf("spi-backup-%s-%d.bin", stamp, i)
		}
		p := filepath.Join(dir, name)
		f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return "", err
		}
		if err := f.Close(); err != nil {
			return "", err
		}
		return filepath.Abs(p)
	}
	return "", fmt.Errorf("too many backups named spi-backup-%s*", stamp)
}

// persistBackup writes the .sha256 sidecar and syncs backup and directory: the backup must
// survive a power cut during the write that follows.
func persistBackup(path, hash string) error {
	if err := os.WriteFile(path+".sha256", []byte(hash+"  "+filepath.Base(path)+"\n"), 0o644); err != nil {
		return err
	}
	for _, p := range []string{path, path + ".sha256", filepath.Dir(path)} {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func humanSize(n uint64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// preserved says whether a region is written only when deliberately named
// twice: factory data marked preserve, and the unit's credential record.
func preserved(r boardcfg.Region) bool { return r.Preserve || r.Unit }

// keepUnits puts the chip's own bytes into the image for each unit region
// nested in a region being written (and not written itself): the build's
// image has an erased unit region, and writing it would erase the unit's
// credentials with every firmware update. flashrom then finds those blocks
// unchanged and leaves them alone; the read-back checks they still are.
func (s *spiSession) keepUnits() {
	writing := map[string]bool{}
	for _, r := range s.write {
		writing[r.Name] = true
	}
	for _, u := range s.regions {
		if !u.Unit || writing[u.Name] {
			continue
		}
		if p, ok := parentOf(s.regions, u); !ok || !writing[p.Name] {
			continue
		}
		if s.res.Kept == nil {
			s.image = bytes.Clone(s.image) // the caller's image stays as given
		}
		lo, hi := uint64(u.Start), uint64(u.End())+1
		copy(s.image[lo:hi], s.old[lo:hi])
		s.res.Kept = append(s.res.Kept, u.Name)
	}
}

// erasedUnits returns img with its unit regions erased (0xFF), as the
// build wrote it; img itself when it has none or they are erased.
func erasedUnits(img []byte, regions []boardcfg.Region) []byte {
	out := img
	for _, u := range regions {
		lo, hi := uint64(u.Start), uint64(u.End())+1
		if !u.Unit || hi > uint64(len(img)) || blank(img[lo:hi]) {
			continue
		}
		if &out[0] == &img[0] {
			out = bytes.Clone(img)
		}
		for i := lo; i < hi; i++ {
			out[i] = 0xff
		}
	}
	return out
}
