package provision

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/boardcfg"
	"github.com/fwbuild/fwbuild/contract"
	"github.com/fwbuild/fwbuild/contract/unit"
	"github.com/fwbuild/fwbuild/image"
)

// TestProvisionUSBImage: --image usb.img writes the signed record as
// contract.UnitFile on the ESP (read back with mtools, another FAT
// implementation), keeps the rest of the ESP, refuses an unsigned record
// and a second provisioning without --force.
func TestProvisionUSBImage(t *testing.T) {
	if _, err := exec.LookPath("mcopy"); err != nil {
		t.Fatal("mcopy (mtools) is needed: run `fwbuild doctor --fix`")
	}
	p := filepath.Join(t.TempDir(), "usb.img")
	payload := testPE()
	if err := image.WriteUSB(context.Background(), p, image.USBSpec{Size: 64 << 20, Payload: payload, Name: "usbboard", Epoch: time.Unix(1704067200, 0), Slots: []byte(`{"active":"a"}`)}); err != nil {
		t.Fatal(err)
	}
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "owner"}, NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<32, 0)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	b := &boardcfg.Board{Name: "usbboard"} // no outputs.spi: the ESP is the only place
	o := Options{Board: b, Serial: "SN-U1", Image: p, Signer: k}

	if _, err := Provision(context.Background(), Options{Board: b, Serial: "SN-U1", Image: p}); err == nil || !strings.Contains(err.Error(), "pass --keys DIR") {
		t.Errorf("unsigned: %v", err)
	}
	res, err := Provision(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	read := func(name string) []byte {
		out := filepath.Join(t.TempDir(), "f")
		if msg, err := exec.Command("mcopy", "-n", "-i", p+"@@1M", "::/"+name, out).CombinedOutput(); err != nil {
			t.Fatalf("mcopy %s: %v\n%s", name, err, msg)
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	rec := read(contract.UnitFile)
	r, err := unit.Parse(rec)
	if err != nil || r.Serial != "SN-U1" || r.Board != "usbboard" || !r.Accounts[0].Verify(res.Password) {
		t.Fatalf("record %+v, %v", r, err)
	}
	if err := unit.VerifySignature(rec, cert); err != nil {
		t.Errorf("signature: %v", err)
	}
	if got := read(contract.FallbackFile); string(got) != string(payload) || string(read(contract.SlotsFile)) != `{"active":"a"}` {
		t.Errorf("the rest of the ESP changed: %q", got)
	}
	var pe *ProvisionedError
	if _, err := Provision(context.Background(), o); !errors.As(err, &pe) || pe.Record == nil || pe.Record.Serial != "SN-U1" {
		t.Errorf("second provisioning without --force: %v", err)
	}
	o.Force, o.Serial = true, "SN-U2"
	res2, err := Provision(context.Background(), o)
	if err != nil || res2.Replaced == nil || res2.Replaced.Serial != "SN-U1" {
		t.Fatalf("--force: %v, %+v", err, res2)
	}
	if r, err := unit.Parse(read(contract.UnitFile)); err != nil || r.Serial != "SN-U2" {
		t.Errorf("after --force: %+v, %v", r, err)
	}
	if out, err := exec.Command("sh", "-c", "ls -a "+filepath.Dir(p)).CombinedOutput(); err != nil || strings.Contains(string(out), ".provision-") {
		t.Errorf("temp file left: %s", out)
	}
}

// testPE is the header of a PE32+ EFI application, which is all WriteUSB
// checks of its payload.
func testPE() []byte {
	h := make([]byte, 0x40+4+20+240)
	copy(h, "MZ")
	binary.LittleEndian.PutUint32(h[0x3C:], 0x40)
	copy(h[0x40:], "PE\x00\x00")
	fh := h[0x44:]
	binary.LittleEndian.PutUint16(fh[0:], 0x8664)
	binary.LittleEndian.PutUint16(fh[16:], 240)
	binary.LittleEndian.PutUint16(fh[18:], 0x22)
	oh := fh[20:]
	binary.LittleEndian.PutUint16(oh[0:], 0x20B)
	binary.LittleEndian.PutUint32(oh[32:], 0x1000)
	binary.LittleEndian.PutUint32(oh[36:], 0x200)
	binary.LittleEndian.PutUint16(oh[68:], 10) // EFI application
	binary.LittleEndian.PutUint32(oh[108:], 16)
	return h
}
