package provision

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/boardcfg"
	"github.com/fwbuild/fwbuild/contract/unit"
)

const chipSize = 16 << 20 // flashrom's dummy W25Q128FV

func board() *boardcfg.Board {
	return &boardcfg.Board{Name: "testboard", Outputs: boardcfg.Outputs{SPI: &boardcfg.SPI{ChipSize: chipSize,
		Regions: []boardcfg.Region{
			{Name: "vpd", Start: 0, Size: 0x10000, Preserve: true},
			{Name: "bios", Start: 0x10000, Size: chipSize - 0x10000, Firmware: true},
			{Name: "unit", Start: 0x7F0000, Size: 0x10000, Unit: true},
		}}}}
}

func chipImage(t *testing.T) (string, []byte) {
	t.Helper()
	img := make([]byte, chipSize)
	for i := range img {
		img[i] = byte(i * 7)
	}
	for i := 0x7F0000; i < 0x800000; i++ {
		img[i] = 0xff
	}
	p := filepath.Join(t.TempDir(), "spi.bin")
	if err := os.WriteFile(p, img, 0o640); err != nil {
		t.Fatal(err)
	}
	return p, img
}

func parseRegion(t *testing.T, chip []byte) unit.Record {
	t.Helper()
	r, err := unit.Parse(chip[0x7F0000:0x800000])
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestProvisionImage: the record lands in the unit region and nowhere
// else, holds the printed password's hash only, and a second run is refused
// (naming the unit) unless forced.
func TestProvisionImage(t *testing.T) {
	path, before := chipImage(t)
	res, err := Provision(context.Background(), Options{Board: board(), Serial: "SN-0001", Image: path})
	if err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(after[:0x7F0000], before[:0x7F0000]) || !bytes.Equal(after[0x800000:], before[0x800000:]) {
		t.Error("bytes outside the unit region changed")
	}
	r := parseRegion(t, after)
	if r.Board != "testboard" || r.Serial != "SN-0001" || len(r.Accounts) != 1 || r.Accounts[0].User != "admin" || r.Accounts[0].Role != unit.RoleAdministrator {
		t.Errorf("record %+v", r)
	}
	if !r.Accounts[0].Verify(res.Password) || r.Accounts[0].Verify(res.Password+"x") {
		t.Error("the record does not hold the printed password's hash")
	}
	if bytes.Contains(after, []byte(res.Password)) {
		t.Error("the password itself is in the image")
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want the image's 0640", fi.Mode().Perm())
	}
	if l := res.Label(); !strings.Contains(l, "unit SN-0001 (testboard): user admin password "+res.Password+" tls-fingerprint unknown until first boot") {
		t.Errorf("label %q", l)
	}
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Errorf("temp files left: %v", ents)
	}

	_, err = Provision(context.Background(), Options{Board: board(), Serial: "SN-0002", Image: path})
	var pe *ProvisionedError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "already holds unit SN-0001 of board testboard (accounts: admin): nothing written; pass --force") {
		t.Fatalf("second provision: %v", err)
	}
	if now, _ := os.ReadFile(path); !bytes.Equal(now, after) {
		t.Error("the refused run changed the image")
	}
	res2, err := Provision(context.Background(), Options{Board: board(), Serial: "SN-0002", User: "ops", Image: path, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if res2.Replaced == nil || res2.Replaced.Serial != "SN-0001" || res2.Password == res.Password {
		t.Errorf("forced: replaced %+v", res2.Replaced)
	}
	now, _ := os.ReadFile(path)
	if r := parseRegion(t, now); r.Serial != "SN-0002" || r.Accounts[0].User != "ops" || r.Accounts[0].Verify(res.Password) {
		t.Errorf("after --force: %+v", r)
	}
}

func TestProvisionRefuses(t *testing.T) {
	path, _ := chipImage(t)
	garbage, _ := os.ReadFile(path)
	copy(garbage[0x7F0000:], "not a record at all, but not erased either")
	junk := filepath.Join(t.TempDir(), "junk.bin")
	os.WriteFile(junk, garbage, 0o644)
	short := filepath.Join(t.TempDir(), "short.bin")
	os.WriteFile(short, make([]byte, 4096), 0o644)
	noUnit := board()
	noUnit.Outputs.SPI.Regions = noUnit.Outputs.SPI.Regions[:2]
	for _, c := range []struct {
		name string
		o    Options
		want string
	}{
		{"no unit region", Options{Board: noUnit, Serial: "S", Image: path}, "board testboard has no unit region: add one to outputs.spi.regions"},
		{"both targets", Options{Board: board(), Serial: "S", Image: path, Programmer: "internal"}, "exactly one of --image"},
		{"no serial", Options{Board: board(), Image: path}, "--serial must be 1 to 64 characters"},
		{"serial with a space", Options{Board: board(), Serial: "SN 1", Image: path}, `--serial "SN 1": only printable ASCII without spaces`},
		{"bad user", Options{Board: board(), Serial: "S", User: "a:b", Image: path}, `user "a:b" must be non-empty without ':'`},
		{"wrong size", Options{Board: board(), Serial: "S", Image: short}, "is 4096 bytes, board testboard's chip is 16777216"},
		{"not a record", Options{Board: board(), Serial: "S", Image: junk}, "is not erased and holds no valid unit record"},
		{"missing", Options{Board: board(), Serial: "S", Image: filepath.Join(t.TempDir(), "none.bin")}, "no such file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := Provision(context.Background(), c.o); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want %q", err, c.want)
			}
		})
	}
}

// TestProvisionChip writes the unit region of a chip through flashrom's
// dummy programmer: only that region changes, the backup is the chip
// before, and a provisioned chip is refused unless forced.
func TestProvisionChip(t *testing.T) {
	fr, err := exec.LookPath("flashrom")
	if err != nil {
		t.Fatalf("flashrom not installed (fwbuild doctor --fix installs it): %v", err)
	}
	_, old := chipImage(t)
	chip := filepath.Join(t.TempDir(), "chip.bin")
	if err := os.WriteFile(chip, old, 0o644); err != nil {
		t.Fatal(err)
	}
	o := Options{Board: board(), Serial: "SN-CHIP", Programmer: "dummy:emulate=W25Q128FV,image=" + chip, Flashrom: fr, BackupDir: t.TempDir()}
	res, err := Provision(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(chip)
	if !bytes.Equal(got[:0x7F0000], old[:0x7F0000]) || !bytes.Equal(got[0x800000:], old[0x800000:]) {
		t.Error("flashrom changed bytes outside the unit region")
	}
	if r := parseRegion(t, got); r.Serial != "SN-CHIP" || !r.Accounts[0].Verify(res.Password) {
		t.Errorf("record %+v", r)
	}
	if b, _ := os.ReadFile(res.Backup); !bytes.Equal(b, old) {
		t.Error("backup is not the chip before")
	}
	o.Serial = "SN-OTHER"
	if _, err := Provision(context.Background(), o); err == nil || !strings.Contains(err.Error(), "already holds unit SN-CHIP of board testboard") {
		t.Fatalf("second provision: %v", err)
	}
	if now, _ := os.ReadFile(chip); !bytes.Equal(now, got) {
		t.Error("the refused run changed the chip")
	}
}

// TestProvisionSigned: with the owner's key the record carries the
// owner's signature, which the owner's certificate verifies.
func TestProvisionSigned(t *testing.T) {
	path, _ := chipImage(t)
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<32, 0)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	cert, _ := x509.ParseCertificate(der)
	res, err := Provision(context.Background(), Options{Board: board(), Serial: "SN-S", Image: path, Signer: k})
	if err != nil || !res.Signed {
		t.Fatalf("%v signed=%v", err, res.Signed)
	}
	chip, _ := os.ReadFile(path)
	if err := unit.VerifySignature(chip[0x7F0000:0x800000], cert); err != nil {
		t.Error(err)
	}
	parseRegion(t, chip)
}
