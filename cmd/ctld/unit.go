package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/fwbuild/fwbuild/contract"
	"github.com/fwbuild/fwbuild/contract/unit"
)

// provisionHint is what the console says when the unit has no usable
// record: the management services stay off until the factory (or the
// owner) provisions it.
const provisionHint = "management services stay off; provision the unit with `fwbuild provision --board <board> --serial <serial> --programmer <p>` (or into spi.bin with --image) and reboot"

// errNoUnitRegion is loadUnitRecord's error for a payload that names no
// unit region (a board without one).
var errNoUnitRegion = errors.New("the payload names no unit region (" + contract.UnitRegionParam + "=): the board profile has no region marked unit: true, so the unit has no credentials")

// loadUnitRecord reads the unit's credential record from the flash region
// the dom0 command line names (contract.UnitRegion), through the same
// physical-memory seam as the guests region, and checks that it is a whole
// record for this board. It prints the unit line, or the FAILED unit line
// with what to do; the record's accounts are what every management service
// authenticates against (newAccounts).
func (a *agent) loadUnitRecord(ctx context.Context) (unit.Record, error) {
	r, signed, err := a.readUnitRecord(ctx)
	var blank *notProvisioned
	switch {
	case errors.As(err, &blank) || errors.Is(err, errNoUnitRegion):
		a.say(contract.UnitUnprovisioned{Why: err.Error() + "; " + provisionHint})
		return unit.Record{}, err
	case err != nil:
		a.say(contract.Failed{Step: "unit", Reason: err.Error() + "; " + provisionHint})
		return unit.Record{}, err
	}
	a.say(contract.UnitLoaded{Serial: r.Serial, Accounts: len(r.Accounts), OwnerSigned: signed})
	return r, nil
}

func (a *agent) readUnitRecord(ctx context.Context) (r unit.Record, signed bool, err error) {
	cmdline, err := a.sys.readFile("/proc/cmdline")
	if err != nil {
		return unit.Record{}, false, fmt.Errorf("read the kernel command line: %w", err)
	}
	r, signed, err = a.readFlashRecord(string(cmdline))
	var blank *notProvisioned
	if errors.As(err, &blank) || errors.Is(err, errNoUnitRegion) {
		// Nothing in flash: a unit booting from removable media may
		// carry its record on the ESP.
		if er, esigned, eerr := a.readESPRecord(ctx, string(cmdline)); !errors.Is(eerr, fs.ErrNotExist) {
			return er, esigned, eerr
		}
	}
	return r, signed, err
}

// readESPRecord reads contract.UnitFile from the ESP ctld booted from
// (fs.ErrNotExist: not an ESP boot, or no record there). The ESP is
// removable media anyone can rewrite, so only a record signed by the owner
// of a signed payload is accepted; anything else leaves the unit
// unprovisioned (a notProvisioned error saying why), not FAILED.
func (a *agent) readESPRecord(ctx context.Context, cmdline string) (unit.Record, bool, error) {
	if a.slotsReady != nil {
		select {
		case <-a.slotsReady:
		case <-ctx.Done():
			return unit.Record{}, false, ctx.Err()
		}
	}
	p := filepath.Join(contract.ESPMount, contract.UnitFile)
	if !a.sys.exists(p) {
		return unit.Record{}, false, fs.ErrNotExist
	}
	where := "ESP record " + contract.UnitFile
	b, err := a.sys.readFile(p)
	if err != nil {
		return unit.Record{}, false, fmt.Errorf("%s: %w", where, err)
	}
	if len(b) > unit.HeaderSize+unit.MaxBody+12+unit.MaxSig {
		return unit.Record{}, false, fmt.Errorf("%s: %d bytes, more than any unit record: provision the unit again", where, len(b))
	}
	if !a.sys.exists(contract.OwnerCertificate) {
		return unit.Record{}, false, &notProvisioned{where: where, why: "ignored: this payload is not signed by an owner (build with --keys), and an unsigned build cannot tell a record on removable media from one anyone wrote"}
	}
	r, err := unit.Parse(b)
	if err != nil {
		return unit.Record{}, false, fmt.Errorf("%s: %w", where, err)
	}
	board, _ := contract.Param(cmdline, contract.BoardParam)
	if r.Board != board {
		return unit.Record{}, false, fmt.Errorf("%s: holds the record of unit %s for board %q, this payload is built for %q: provision the unit for this board (--force replaces the record)", where, r.Serial, r.Board, board)
	}
	cert, err := a.ownerCert()
	if err != nil {
		return unit.Record{}, false, err
	}
	if err := unit.VerifySignature(b, cert); err != nil {
		return unit.Record{}, false, &notProvisioned{where: where, why: fmt.Sprintf("refused for unit %s: %v: a record on the ESP counts only signed with the owner's key (fwbuild provision --keys DIR --image usb.img)", r.Serial, err)}
	}
	return r, true, nil
}

// readFlashRecord reads the record in the flash unit region the command
// line names.
func (a *agent) readFlashRecord(cmdline string) (r unit.Record, signed bool, err error) {
	reg, ok, err := contract.ParseUnitRegion(cmdline)
	switch {
	case err != nil:
		return unit.Record{}, false, err
	case !ok:
		return unit.Record{}, false, errNoUnitRegion
	}
	where := fmt.Sprintf("unit region at %#x", reg.Addr)
	// The record is small: read its header, then only the body it
	// announces (bounded by the region and unit.MaxBody in Parse).
	n := min(reg.Size, uint64(unit.HeaderSize+unit.MaxBody))
	b, err := a.sys.readPhys(reg.Addr, n)
	if err != nil {
		return unit.Record{}, false, fmt.Errorf("%s: read: %w", where, err)
	}
	r, err = unit.Parse(b)
	if errors.Is(err, unit.ErrBlank) {
		return unit.Record{}, false, &notProvisioned{where: where}
	}
	if err != nil {
		return unit.Record{}, false, fmt.Errorf("%s: %w", where, err)
	}
	if r.Board != reg.Board {
		return unit.Record{}, false, fmt.Errorf("%s: holds the record of unit %s for board %q, this payload is built for %q: provision the unit for this board (--force replaces the record)", where, r.Serial, r.Board, reg.Board)
	}
	if !a.sys.exists(contract.OwnerCertificate) {
		return r, false, nil
	}
	// A signed build: only a record the owner's key signed counts, so
	// whoever can write the flash cannot set a password of their own.
	cert, err := a.ownerCert()
	if err != nil {
		return unit.Record{}, false, err
	}
	if err := unit.VerifySignature(b, cert); err != nil {
		return unit.Record{}, false, fmt.Errorf("%s: unit %s: %w: this payload is signed by its owner and accepts only a record signed with the owner's key (fwbuild provision --keys DIR)", where, r.Serial, err)
	}
	return r, true, nil
}

func (a *agent) ownerCert() (*x509.Certificate, error) {
	b, err := a.sys.readFile(contract.OwnerCertificate)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: not a PEM certificate", contract.OwnerCertificate)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", contract.OwnerCertificate, err)
	}
	return c, nil
}

// notProvisioned is a blank (erased) unit region: a unit fresh from the
// build, before the factory's provisioning step.
// A record on the ESP that cannot be trusted is one too (why says so).
type notProvisioned struct{ where, why string }

func (e *notProvisioned) Error() string {
	if e.why != "" {
		return e.where + ": " + e.why
	}
	return e.where + ": not provisioned (the region is erased)"
}
func (e *notProvisioned) Unwrap() error { return unit.ErrBlank }
