// Package provision gives one unit its own credentials: a random password
// for its label and a record holding only its hash (contract/unit), written
// into the board's unit region of a chip image or of the chip itself. There
// is no default password anywhere: a unit that was never provisioned has no
// account, and ctld keeps its management services off.
//
// The password is returned once, for the label; fwbuild stores it nowhere.
package provision

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/fwbuild/fwbuild/boardcfg"
	"github.com/fwbuild/fwbuild/contract"
	"github.com/fwbuild/fwbuild/contract/unit"
	"github.com/fwbuild/fwbuild/flash"
)

// DefaultUser is the account a unit gets unless told otherwise.
const DefaultUser = "admin"

// Options is one provisioning run: exactly one of Image and Programmer.
type Options struct {
	Board  *boardcfg.Board
	Serial string
	User   string // "" means DefaultUser
	// Image is a whole-chip image file (a copy of the build's spi.bin)
	// whose unit region is rewritten in place, atomically.
	Image string
	// Programmer is flashrom's -p argument: only the chip's unit region
	// is written (after a full backup into BackupDir), then verified.
	Programmer, Chip, Flashrom string
	BackupDir                  string
	// Force replaces a record that is already there (Result.Replaced says
	// whose); without it, a provisioned unit is refused.
	Force bool
	// Signer, the owner's db key, signs the record (unit.Sign): a signed
	// build's control domain accepts no other.
	Signer   crypto.Signer
	Progress func(flash.Progress)
	Logger   *slog.Logger
}

// Result is what the label needs, and what was replaced.
type Result struct {
	Board, Serial, User, Password string
	Region                        boardcfg.Region
	Target                        string       // the image path or the programmer
	Replaced                      *unit.Record // the record --force replaced, if any
	Backup                        string       // chip only: the full-chip backup taken first
	Signed                        bool         // signed with the owner's key
}

// Label is the line printed for the unit's label. The TLS certificate's
// fingerprint is not known yet: the unit makes its key at first boot.
func (r Result) Label() string {
	return fmt.Sprintf("unit %s (%s): user %s password %s tls-fingerprint unknown until first boot (the unit makes its TLS key then)",
		r.Serial, r.Board, r.User, r.Password)
}

// ProvisionedError is the refusal to overwrite a provisioned unit.
type ProvisionedError struct {
	Where  string
	Record *unit.Record // nil: the region holds something that is not a valid record
	Reason string       // why it is not a valid record
}

func (e *ProvisionedError) Error() string {
	if e.Record == nil {
		return fmt.Sprintf("%s is not erased and holds no valid unit record (%s): nothing written; pass --force to replace it", e.Where, e.Reason)
	}
	users := make([]string, len(e.Record.Accounts))
	for i, a := range e.Record.Accounts {
		users[i] = a.User
	}
	return fmt.Sprintf("%s already holds unit %s of board %s (accounts: %s): nothing written; pass --force to replace its credentials (the old password stops working)",
		e.Where, e.Record.Serial, e.Record.Board, strings.Join(users, ", "))
}

// Provision makes the password and the record and writes it.
func Provision(ctx context.Context, o Options) (Result, error) {
	b := o.Board
	if b == nil {
		return Result{}, errors.New("provision: no board")
	}
	if (o.Image == "") == (o.Programmer == "") {
		return Result{}, errors.New("provision: give exactly one of --image (a chip image or usb.img) and --programmer (the chip)")
	}
	disk, err := isDiskImage(o.Image)
	if err != nil {
		return Result{}, err
	}
	if disk && o.Signer == nil {
		return Result{}, fmt.Errorf("provision: %s is a disk image (GPT): its record goes on the ESP (%s), which anyone can rewrite, so the control domain accepts it only signed by the owner: pass --keys DIR (the keys the build was signed with)", o.Image, contract.UnitFile)
	}
	var reg boardcfg.Region
	if !disk {
		if b.Outputs.SPI == nil {
			return Result{}, errors.New("provision: the board has no outputs.spi: there is no chip to hold the unit's record (for a unit booting from usb.img, pass --image usb.img --keys DIR)")
		}
		var ok bool
		if reg, ok = b.Outputs.SPI.UnitRegion(); !ok {
			return Result{}, fmt.Errorf("provision: board %s has no unit region: add one to outputs.spi.regions ({name: unit, unit: true, start: ..., size: 64KiB}, inside the firmware region) and rebuild (or, for a unit booting from usb.img, pass --image usb.img --keys DIR)", b.Name)
		}
	}
	if o.User == "" {
		o.User = DefaultUser
	}
	if err := checkSerial(o.Serial); err != nil {
		return Result{}, err
	}
	pw, err := unit.NewPassword()
	if err != nil {
		return Result{}, err
	}
	hash, err := unit.PasswordHash(pw)
	if err != nil {
		return Result{}, err
	}
	rec := unit.Record{Version: 1, Board: b.Name, Serial: o.Serial,
		Accounts: []unit.Account{{User: o.User, Role: unit.RoleAdministrator, Hash: hash}}}
	framed, err := unit.Encode(rec)
	if err != nil {
		return Result{}, fmt.Errorf("provision: %w", err)
	}
	if o.Signer != nil {
		if framed, err = unit.Sign(framed, o.Signer); err != nil {
			return Result{}, fmt.Errorf("provision: %w", err)
		}
	}
	if disk {
		res := Result{Board: b.Name, Serial: o.Serial, User: o.User, Password: pw, Signed: true,
			Region: boardcfg.Region{Name: "ESP " + contract.UnitFile}, Target: o.Image}
		if res.Replaced, err = writeESP(o.Image, framed, o.Force); err != nil {
			return Result{}, err
		}
		return res, nil
	}
	if uint64(len(framed)) > uint64(reg.Size) {
		return Result{}, fmt.Errorf("provision: the record is %d bytes, the unit region %q only %d", len(framed), reg.Name, uint64(reg.Size))
	}
	content := append(framed, bytes.Repeat([]byte{0xff}, int(reg.Size)-len(framed))...)
	res := Result{Board: b.Name, Serial: o.Serial, User: o.User, Password: pw, Region: reg, Signed: o.Signer != nil}
	if o.Image != "" {
		res.Target = o.Image
		res.Replaced, err = writeImage(o.Image, b, reg, content, o.Force)
	} else {
		res.Target = o.Programmer
		res.Replaced, res.Backup, err = writeChip(ctx, o, reg, content)
	}
	if err != nil {
		return Result{}, err
	}
	return res, nil
}

// checkSerial keeps the serial printable and on one line: it ends up on
// the console line and the label.
func checkSerial(s string) error {
	if s == "" || len(s) > 64 {
		return errors.New("provision: --serial must be 1 to 64 characters")
	}
	for _, c := range s {
		if c <= ' ' || c > '~' {
			return fmt.Errorf("provision: --serial %q: only printable ASCII without spaces", s)
		}
	}
	return nil
}

// existing reads what a unit region holds: nil for an erased one, the
// record, or a ProvisionedError for anything else (refused without force).
func existing(where string, region []byte, force bool) (*unit.Record, error) {
	r, err := unit.Parse(region)
	switch {
	case errors.Is(err, unit.ErrBlank):
		return nil, nil
	case err != nil && !force:
		return nil, &ProvisionedError{Where: where, Reason: err.Error()}
	case err != nil:
		return nil, nil
	case !force:
		return nil, &ProvisionedError{Where: where, Record: &r}
	}
	return &r, nil
}

// writeImage rewrites the unit region of a chip image: a temp file in the
// same directory, synced, then renamed over it, so a crash leaves the old
// image or the new one.
func writeImage(path string, b *boardcfg.Board, reg boardcfg.Region, content []byte, force bool) (*unit.Record, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("provision: image: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("provision: image %s is not a regular file (use --programmer for a chip)", path)
	}
	if chip := uint64(b.Outputs.SPI.ChipSize); uint64(fi.Size()) != chip {
		return nil, fmt.Errorf("provision: image %s is %d bytes, board %s's chip is %d (outputs.spi.chip_size): pass the spi.bin built for this board", path, fi.Size(), b.Name, chip)
	}
	img, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("provision: image: %w", err)
	}
	lo, hi := uint64(reg.Start), uint64(reg.Start)+uint64(reg.Size)
	where := fmt.Sprintf("image %s, unit region %s (0x%x-0x%x)", path, reg.Name, lo, hi-1)
	old, err := existing(where, img[lo:hi], force)
	if err != nil {
		return nil, fmt.Errorf("provision: %w", err)
	}
	copy(img[lo:hi], content)
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".provision-*")
	if err != nil {
		return nil, fmt.Errorf("provision: image: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename, a no-op
	if _, err := tmp.Write(img); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("provision: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(fi.Mode().Perm()); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("provision: image: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("provision: sync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("provision: image: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return nil, fmt.Errorf("provision: image: %w", err)
	}
	return old, nil
}

// writeChip writes only the chip's unit region with flashrom (flash.WriteSPI:
// a verified full backup first, then the region, then a read-back that
// shows nothing else changed). What the chip held there is checked from the
// backup before anything is written.
func writeChip(ctx context.Context, o Options, reg boardcfg.Region, content []byte) (*unit.Record, string, error) {
	size := uint64(o.Board.Outputs.SPI.ChipSize)
	img := bytes.Repeat([]byte{0xff}, int(size))
	copy(img[reg.Start:], content)
	if o.BackupDir == "" {
		return nil, "", errors.New("provision: no backup directory for the chip's backup")
	}
	var old *unit.Record
	fr := o.Flashrom
	res, err := flash.WriteSPI(ctx, flash.SPIOptions{
		Flashrom: fr, Programmer: o.Programmer, Chip: o.Chip, Image: img, ChipSize: size,
		// The layout holds the unit region alone: nothing else can be
		// written, whatever the rest of img holds.
		Regions: []boardcfg.Region{reg}, Write: []string{reg.Name}, OverwritePreserved: []string{reg.Name},
		AnyImage: true, BackupDir: o.BackupDir, Progress: o.Progress, Logger: o.Logger,
		ConfirmOverwrite: func(ls []flash.PreservedLoss) error {
			for _, l := range ls {
				region, err := readRange(l.Backup, l.Start, l.End+1)
				if err != nil {
					return err
				}
				where := fmt.Sprintf("the chip's unit region %s (0x%x-0x%x)", l.Region, l.Start, l.End)
				if old, err = existing(where, region, o.Force); err != nil {
					return err
				}
			}
			return nil
		},
	})
	if err != nil {
		var pe *ProvisionedError
		if errors.As(err, &pe) {
			return nil, res.Backup, fmt.Errorf("provision: %w", pe)
		}
		return nil, res.Backup, fmt.Errorf("provision: %w", err)
	}
	return old, res.Backup, nil
}

func readRange(path string, lo, hi uint64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("provision: backup: %w", err)
	}
	defer f.Close()
	b := make([]byte, hi-lo)
	if _, err := f.ReadAt(b, int64(lo)); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("provision: backup %s: %w", path, err)
	}
	return b, nil
}
