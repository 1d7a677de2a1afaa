package main

import (
	"crypto"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/fwbuild/fwbuild/provision"
	"github.com/fwbuild/fwbuild/secboot"
)

type provisionOptions struct {
	board, serial, user, img, programmer, chip, flashrom, backups string
	force                                                         bool
}

func (e *env) provisionCommand() *cobra.Command {
	var o provisionOptions
	c := &cobra.Command{
		Use:   "provision --board B --serial S (--image spi.bin | --programmer P) [--user admin] [--force]",
		Short: "give one unit its own credentials: a random password for its label, its hash in the unit region",
		Long: "provision makes a random password for one unit, writes a record holding only its hash (and the\n" +
			"board and serial) into the board's unit region, of a chip image (atomically) or of the chip\n" +
			"(flashrom: a full backup, then only the unit region, verified), and prints the label line once.\n" +
			"fwbuild stores the password nowhere. A unit that is provisioned already is refused unless --force.\n" +
			"A unit booting from removable media with no unit region: --image usb.img --keys DIR writes the\n" +
			"record, signed, as EFI/fwbuild/unit.rec on the ESP; a signed control domain accepts it there.",
		Example: "  cp out/qemu-q35/spi.bin unit-0042.bin && fwbuild provision --board qemu-q35 --serial SN-0042 --image unit-0042.bin\n" +
			"  fwbuild provision --board qemu-q35 --serial SN-0042 --programmer ch341a_spi\n" +
			"  fwbuild provision --board qemu-q35 --serial SN-0043 --image usb.img --keys keys/",
		Args: noArgs,
		RunE: runE(func(*cobra.Command, []string) error { return e.provision(o) }),
	}
	f := c.Flags()
	e.boardFlag(c, &o.board, "board name or profile path (gives the unit region)")
	f.StringVar(&o.serial, "serial", "", "the unit's serial number, as on its label")
	f.StringVar(&o.user, "user", provision.DefaultUser, "the account's user name (role Administrator)")
	f.StringVar(&o.img, "image", "", "a chip image (a copy of the build's spi.bin) whose unit region is written, or a usb.img whose ESP gets the signed record (needs --keys)")
	f.StringVar(&o.programmer, "programmer", "", "flashrom programmer: write the chip's unit region, e.g. ch341a_spi, internal")
	f.StringVar(&o.chip, "chip", "", "flashrom chip name (-c), when several definitions match")
	f.StringVar(&o.flashrom, "flashrom", "flashrom", "flashrom binary")
	f.StringVar(&o.backups, "backup-dir", "", "where the chip's backup goes (default: out/<board>/backups)")
	f.BoolVar(&o.force, "force", false, "replace the record of a unit that is provisioned already")
	e.keysFlag(c, "owner's key directory (see fwbuild keys): sign the record with the db key; a build signed with these keys accepts only signed records (env FWBUILD_KEYS)")
	c.MarkFlagFilename("image", "bin")
	c.MarkFlagDirname("backup-dir")
	return c
}

func (e *env) provision(o provisionOptions) error {
	if o.serial == "" {
		return usagef("--serial is required (the unit's serial number)")
	}
	if (o.img == "") == (o.programmer == "") {
		return usagef("give exactly one of --image (a chip image) and --programmer (the chip)")
	}
	b, err := e.loadBoard(o.board)
	if err != nil {
		return err
	}
	if o.backups == "" {
		o.backups = filepath.Join(defaultOut(b.Name), "backups")
	}
	var signer crypto.Signer
	if e.keys != "" {
		owner, err := secboot.Load(e.keys)
		if err != nil {
			return err
		}
		signer = owner.Signer
	}
	res, err := provision.Provision(e.ctx, provision.Options{Board: b, Serial: o.serial, User: o.user,
		Image: o.img, Programmer: o.programmer, Chip: o.chip, Flashrom: o.flashrom, BackupDir: o.backups,
		Force: o.force, Signer: signer, Progress: e.flashProgress(), Logger: e.log})
	if err != nil {
		return err
	}
	if res.Replaced != nil {
		fmt.Fprintf(e.stderr, "replaced the record of unit %s (board %s): its old password no longer works\n", res.Replaced.Serial, res.Replaced.Board)
	}
	if res.Backup != "" {
		fmt.Fprintf(e.stderr, "backup of the whole chip before writing: %s\n", res.Backup)
	}
	signed := "unsigned (a signed build refuses it: pass --keys)"
	if res.Signed {
		signed = "signed with the owner's db key"
	}
	fmt.Fprintf(e.stderr, "wrote the unit record (%s) into region %s of %s; the password below is shown once and stored nowhere: put it on the unit's label\n", signed, res.Region.Name, res.Target)
	if e.json {
		return e.printJSON(struct {
			Board          string  `json:"board"`
			Serial         string  `json:"serial"`
			User           string  `json:"user"`
			Password       string  `json:"password"`
			TLSFingerprint *string `json:"tls_fingerprint"` // null: made at first boot
			Region         string  `json:"region"`
			Target         string  `json:"target"`
			Signed         bool    `json:"signed"`
		}{res.Board, res.Serial, res.User, res.Password, nil, res.Region.Name, res.Target, res.Signed})
	}
	fmt.Fprintln(e.stdout, res.Label())
	return nil
}
