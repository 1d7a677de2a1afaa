package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/contract"
	"github.com/fwbuild/fwbuild/contract/unit"
)

const unitAddr = 0xfe3f0000

// unitRegion is a unit region as `fwbuild provision` writes it: the record,
// then erased flash.
func unitRegion(t *testing.T, board, serial, password string, size int) ([]byte, unit.Record) {
	t.Helper()
	h, err := unit.PasswordHash(password)
	if err != nil {
		t.Fatal(err)
	}
	r := unit.Record{Version: 1, Board: board, Serial: serial,
		Accounts: []unit.Account{{User: "admin", Role: unit.RoleAdministrator, Hash: h}}}
	b, err := unit.Encode(r)
	if err != nil {
		t.Fatal(err)
	}
	return append(b, bytes.Repeat([]byte{0xff}, size-len(b))...), r
}

func TestLoadUnitRecord(t *testing.T) {
	a, _, sys, out := world(t)
	region, _ := unitRegion(t, "qemu-q35", "SN-0042", "right-pass", 0x10000)
	sys.phys = map[uint64][]byte{unitAddr: region}
	sys.files["/proc/cmdline"] = "console=hvc0 " + contract.UnitRegion{Addr: unitAddr, Size: 0x10000, Board: "qemu-q35"}.String() + "\n"
	r, err := a.loadUnitRecord(context.Background())
	if err != nil {
		t.Fatalf("loadUnitRecord: %v\n%s", err, out)
	}
	if got, want := out.String(), "fwbuild-ctld: unit SN-0042 accounts=1\n"; got != want {
		t.Errorf("output %q, want %q", got, want)
	}
	if r.Serial != "SN-0042" || len(r.Accounts) != 1 || !r.Accounts[0].Verify("right-pass") || r.Accounts[0].Verify("wrong") {
		t.Errorf("record %+v", r)
	}
	// What every service then authenticates against.
	acc, err := newAccounts(r, defaultLockout(), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := acc.authenticate("admin", "right-pass"); err != nil {
		t.Errorf("right password: %v", err)
	}
}

func TestLoadUnitRecordFailures(t *testing.T) {
	good, _ := unitRegion(t, "qemu-q35", "SN-0042", "pw", 0x1000)
	other, _ := unitRegion(t, "galago", "SN-7", "pw", 0x1000)
	flipped := bytes.Clone(good)
	flipped[unit.HeaderSize+5] ^= 0x01
	param := contract.UnitRegion{Addr: unitAddr, Size: 0x1000, Board: "qemu-q35"}.String()
	for _, c := range []struct {
		name, cmdline string
		region        []byte
		want          string
		blank         bool
	}{
		{"not provisioned", param, bytes.Repeat([]byte{0xff}, 0x1000), "unit region at 0xfe3f0000: not provisioned (the region is erased)", true},
		{"another board", param, other, `holds the record of unit SN-7 for board "galago", this payload is built for "qemu-q35"`, false},
		{"damaged", param, flipped, "does not match its SHA-256", false},
		{"no region", "console=hvc0", good, "names no unit region (fwbuild.unit=)", false},
		{"bad parameter", "fwbuild.unit=0xfe3f0000,0x1000", good, `want fwbuild.unit=<address>,<size>,board:<name>`, false},
		{"unmapped", contract.UnitRegion{Addr: 0xfd000000, Size: 0x1000, Board: "qemu-q35"}.String(), good, "unit region at 0xfd000000: read: ", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, _, sys, out := world(t)
			sys.phys = map[uint64][]byte{unitAddr: c.region}
			sys.files["/proc/cmdline"] = c.cmdline + "\n"
			_, err := a.loadUnitRecord(context.Background())
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
			if errors.Is(err, unit.ErrBlank) != c.blank {
				t.Errorf("errors.Is(err, unit.ErrBlank) = %v", !c.blank)
			}
			// A unit not provisioned yet (or a board without a unit
			// region) is not a failed boot; anything else is.
			prefix := "fwbuild-ctld: FAILED unit: "
			if c.blank || c.name == "no region" {
				prefix = "fwbuild-ctld: unit not provisioned: "
			}
			line := out.String()
			if !strings.HasPrefix(line, prefix) || !strings.Contains(line, c.want) ||
				!strings.Contains(line, "management services stay off; provision the unit with `fwbuild provision") || strings.Count(line, "\n") != 1 {
				t.Errorf("console line %q", line)
			}
		})
	}
}

func ownerKey(t *testing.T) (*rsa.PrivateKey, []byte) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "owner db"},
		NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<32, 0)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	return k, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// TestLoadUnitRecordSigned: a control domain carrying the owner's
// certificate (a signed build) accepts a record the owner's key signed, and
// refuses an unsigned one or one signed by another key, which is what
// anyone with flash access could write.
func TestLoadUnitRecordSigned(t *testing.T) {
	owner, cert := ownerKey(t)
	stranger, _ := ownerKey(t)
	plain, _ := unitRegion(t, "qemu-q35", "SN-9", "pw", 0x1000)
	framed := plain[:bytes.LastIndex(plain, []byte("}"))+1]
	sign := func(k *rsa.PrivateKey) []byte {
		s, err := unit.Sign(framed, k)
		if err != nil {
			t.Fatal(err)
		}
		return append(s, bytes.Repeat([]byte{0xff}, 0x1000-len(s))...)
	}
	param := contract.UnitRegion{Addr: unitAddr, Size: 0x1000, Board: "qemu-q35"}.String()
	for _, c := range []struct {
		name   string
		region []byte
		want   string // "" = accepted
	}{
		{"owner's", sign(owner), ""},
		{"unsigned", plain, "the record carries no owner's signature: this payload is signed by its owner and accepts only a record signed with the owner's key (fwbuild provision --keys DIR)"},
		{"another key's", sign(stranger), "the record's signature is not the owner's"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, _, sys, out := world(t)
			sys.phys = map[uint64][]byte{unitAddr: c.region}
			sys.files["/proc/cmdline"] = param + "\n"
			sys.files[contract.OwnerCertificate] = string(cert)
			_, err := a.loadUnitRecord(context.Background())
			switch {
			case c.want == "" && (err != nil || out.String() != "fwbuild-ctld: unit SN-9 accounts=1 owner-signed\n"):
				t.Errorf("err %v, output %q", err, out)
			case c.want != "" && (err == nil || !strings.Contains(out.String(), "FAILED unit: unit region at 0xfe3f0000: unit SN-9: ") || !strings.Contains(err.Error(), c.want)):
				t.Errorf("err %v, output %q, want %q", err, out, c.want)
			}
		})
	}
}

// TestOperatorUnit: `ctld unit` on the serial console prints the same line.
func TestOperatorUnit(t *testing.T) {
	a, _, sys, _ := world(t)
	region, _ := unitRegion(t, "qemu-q35", "SN-0042", "pw", 0x10000)
	sys.phys = map[uint64][]byte{unitAddr: region}
	sys.files["/proc/cmdline"] = contract.UnitRegion{Addr: unitAddr, Size: 0x10000, Board: "qemu-q35"}.String() + "\n"
	var out bytes.Buffer
	if err := a.operate(context.Background(), []string{"unit"}, &out, nil); err != nil || out.String() != "fwbuild-ctld: unit SN-0042 accounts=1\n" {
		t.Errorf("ctld unit: %v, %q", err, out.String())
	}
	sys.phys[unitAddr] = bytes.Repeat([]byte{0xff}, 0x10000)
	out.Reset()
	if err := a.operate(context.Background(), []string{"unit"}, &out, nil); err == nil || !strings.Contains(out.String(), "unit not provisioned: unit region at 0xfe3f0000: not provisioned") {
		t.Errorf("ctld unit, blank: %v, %q", err, out.String())
	}
}

// TestLoadUnitRecordESP: a unit booting from removable media with no record
// in flash (a blank region or none) takes contract.UnitFile from its ESP,
// but only signed by the owner of a signed payload; an unsigned record, one
// another key signed, or any record under an unsigned payload leaves the
// unit unprovisioned (not FAILED), as anyone can rewrite the key.
func TestLoadUnitRecordESP(t *testing.T) {
	owner, cert := ownerKey(t)
	stranger, _ := ownerKey(t)
	plain, _ := unitRegion(t, "qemu-q35-slots", "SN-U1", "pw", 0x1000)
	framed := plain[:bytes.LastIndex(plain, []byte("}"))+1]
	sign := func(k *rsa.PrivateKey) []byte {
		s, err := unit.Sign(framed, k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	esp := contract.ESPMount + "/" + contract.UnitFile
	blankRegion := contract.UnitRegion{Addr: unitAddr, Size: 0x1000, Board: "qemu-q35-slots"}.String()
	for _, c := range []struct {
		name, cmdline string
		rec           []byte
		cert          bool
		want          string // "" = accepted; else a substring of the unprovisioned line
		failed        bool
	}{
		{"owner's, no region", "", sign(owner), true, "", false},
		{"owner's, blank region", blankRegion, sign(owner), true, "", false},
		{"unsigned", "", framed, true, "ESP record " + contract.UnitFile + ": refused for unit SN-U1: the record carries no owner's signature", false},
		{"another key's", "", sign(stranger), true, "refused for unit SN-U1: unit: the record's signature is not the owner's", false},
		{"unsigned payload", "", sign(owner), false, "ignored: this payload is not signed by an owner", false},
		{"another board", "", func() []byte { p, _ := unitRegion(t, "galago", "SN-7", "pw", 0x1000); return p }(), true, `for board "galago", this payload is built for "qemu-q35-slots"`, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, _, sys, out := world(t)
			sys.phys = map[uint64][]byte{unitAddr: bytes.Repeat([]byte{0xff}, 0x1000)}
			sys.files["/proc/cmdline"] = c.cmdline + " " + contract.BoardParam + "=qemu-q35-slots\n"
			sys.files[esp] = string(c.rec)
			if c.cert {
				sys.files[contract.OwnerCertificate] = string(cert)
			}
			r, err := a.loadUnitRecord(context.Background())
			if c.want == "" {
				if err != nil || r.Serial != "SN-U1" || !r.Accounts[0].Verify("pw") || out.String() != "fwbuild-ctld: unit SN-U1 accounts=1 owner-signed\n" {
					t.Errorf("err %v, record %+v, output %q", err, r, out)
				}
				return
			}
			prefix := "fwbuild-ctld: unit not provisioned: "
			if c.failed {
				prefix = "fwbuild-ctld: FAILED unit: "
			}
			if err == nil || !strings.HasPrefix(out.String(), prefix) || !strings.Contains(out.String(), c.want) {
				t.Errorf("err %v, output %q, want %q%q", err, out, prefix, c.want)
			}
		})
	}
	// No file on the ESP: the flash's answer stands.
	a, _, sys, out := world(t)
	sys.phys = map[uint64][]byte{unitAddr: bytes.Repeat([]byte{0xff}, 0x1000)}
	sys.files["/proc/cmdline"] = blankRegion + "\n"
	if _, err := a.loadUnitRecord(context.Background()); err == nil || !strings.Contains(out.String(), "unit not provisioned: unit region at 0xfe3f0000: not provisioned") {
		t.Errorf("no ESP record: %v, %q", err, out)
	}
}
