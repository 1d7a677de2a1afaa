package secboot_test

import (
	"bytes"
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/hvcore"
	"github.com/fwbuild/fwbuild/internal/testdeps"
	"github.com/fwbuild/fwbuild/secboot"
)

func requireTool(t *testing.T, tool, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		t.Fatalf("%s not found: apt-get install -y %s (or fwbuild doctor --fix)", tool, pkg)
	}
}

func keys(t *testing.T) (string, *secboot.Owner) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "keys")
	if err := secboot.Generate(dir, "test owner"); err != nil {
		t.Fatal(err)
	}
	o, err := secboot.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, o
}

func TestGenerateNeverOverwrites(t *testing.T) {
	dir, o := keys(t)
	before, _ := os.ReadFile(secboot.KeyFile(dir, "db"))
	err := secboot.Generate(dir, "again")
	if err == nil || !strings.Contains(err.Error(), "never overwrites") {
		t.Fatalf("second Generate: %v", err)
	}
	after, _ := os.ReadFile(secboot.KeyFile(dir, "db"))
	if !bytes.Equal(before, after) {
		t.Fatal("db.key changed")
	}
	if st, _ := os.Stat(secboot.KeyFile(dir, "PK")); st.Mode().Perm() != 0o600 {
		t.Errorf("PK.key mode %v, want 0600", st.Mode().Perm())
	}
	if o.DB.Subject.CommonName != "test owner db" || !o.KEK.IsCA {
		t.Errorf("db %q, KEK CA %v", o.DB.Subject.CommonName, o.KEK.IsCA)
	}
}

func TestLoadBadKeys(t *testing.T) {
	dir, _ := keys(t)
	other, _ := keys(t)
	// db.key of another set: signatures would not verify with db.crt.
	k, _ := os.ReadFile(secboot.KeyFile(other, "db"))
	os.WriteFile(secboot.KeyFile(dir, "db"), k, 0o600)
	if _, err := secboot.Load(dir); err == nil || !strings.Contains(err.Error(), "is not the key of") {
		t.Errorf("mismatched key: %v", err)
	}
	os.WriteFile(secboot.CertFile(dir, "KEK"), []byte("junk"), 0o644)
	if _, err := secboot.Load(dir); err == nil || !strings.Contains(err.Error(), "KEK.crt") {
		t.Errorf("junk certificate: %v", err)
	}
	if _, err := secboot.Load(t.TempDir()); err == nil || !strings.Contains(err.Error(), "fwbuild keys") {
		t.Errorf("empty directory: %v", err)
	}
}

// The unified xen.efi built from Debian's Xen, signed: sbverify and
// osslsigncode accept it with the owner's db certificate and reject it with
// another (KEK's); one flipped byte fails both. Signing twice gives the same bytes.
func TestSignedPayloadVerifiesWithIndependentTools(t *testing.T) {
	requireTool(t, "sbverify", "sbsigntool")
	requireTool(t, "osslsigncode", "osslsigncode")
	xen, err := os.ReadFile(testdeps.File(t, "xen", "efi"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := hvcore.XenConfig(hvcore.XenConfigSpec{XenOptions: "console=com1", Dom0Cmdline: "console=hvc0"})
	img, err := hvcore.UnifiedEFI(xen, hvcore.Sections{Config: cfg, Kernel: bytes.Repeat([]byte("k"), 100000), Ramdisk: bytes.Repeat([]byte("r"), 50000)})
	if err != nil {
		t.Fatal(err)
	}
	dir, o := keys(t)
	signed, err := secboot.SignPE(img, o.Signer, o.DB)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := secboot.SignPE(img, o.Signer, o.DB)
	if !bytes.Equal(signed, again) {
		t.Error("two signatures of the same image differ")
	}
	if _, err := secboot.SignPE(signed, o.Signer, o.DB); err == nil {
		t.Error("signing a signed image again was accepted")
	}
	work := t.TempDir()
	p := filepath.Join(work, "xen.signed.efi")
	os.WriteFile(p, signed, 0o644)
	db, kek := secboot.CertFile(dir, "db"), secboot.CertFile(dir, "KEK")
	verify := func(file, cert string) (sb, ossl bool, out string) {
		o1, err1 := exec.Command("sbverify", "--cert", cert, file).CombinedOutput()
		o2, err2 := exec.Command("osslsigncode", "verify", "-CAfile", cert, "-in", file).CombinedOutput()
		return err1 == nil, err2 == nil && bytes.Contains(o2, []byte("Succeeded")), string(o1) + string(o2)
	}
	if sb, ossl, out := verify(p, db); !sb || !ossl {
		t.Errorf("with db.crt: sbverify ok=%v, osslsigncode ok=%v:\n%s", sb, ossl, out)
	}
	if sb, ossl, out := verify(p, kek); sb || ossl {
		t.Errorf("with KEK.crt (not the signer): sbverify ok=%v, osslsigncode ok=%v:\n%s", sb, ossl, out)
	}
	// One byte of the kernel section flipped.
	bad := bytes.Clone(signed)
	i := bytes.Index(bad, bytes.Repeat([]byte("k"), 64))
	bad[i+10] ^= 0xff
	pb := filepath.Join(work, "xen.flipped.efi")
	os.WriteFile(pb, bad, 0o644)
	if sb, ossl, out := verify(pb, db); sb || ossl {
		t.Errorf("flipped byte: sbverify ok=%v, osslsigncode ok=%v:\n%s", sb, ossl, out)
	}
}

// Enroll writes PK, KEK and db into Debian's empty OVMF_VARS_4M.fd; the
// rest of the volume stays byte-identical, the variables read back, and a
// store that is not empty is refused.
func TestEnrollOVMFVars(t *testing.T) {
	tmpl, err := os.ReadFile(testdeps.File(t, "ovmf", "vars"))
	if err != nil {
		t.Fatal(err)
	}
	_, o := keys(t)
	when := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	vars, err := secboot.EnrollVars(o, o.OwnerGUID(), when)
	if err != nil {
		t.Fatal(err)
	}
	out, err := secboot.Enroll(tmpl, vars)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(tmpl) {
		t.Fatalf("store is %d bytes, the template %d", len(out), len(tmpl))
	}
	// The FV header, the store header and the fault-tolerant-write areas
	// after the store (0x40000 on) are unchanged.
	if !bytes.Equal(out[:0x64], tmpl[:0x64]) || !bytes.Equal(out[0x40000:], tmpl[0x40000:]) {
		t.Error("bytes outside the variables area changed")
	}
	back, err := secboot.ReadVars(out)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, v := range back {
		names = append(names, v.Name)
	}
	if got := strings.Join(names, ","); got != "PK,KEK,db,SecureBootEnable,CustomMode" {
		t.Fatalf("variables %s", got)
	}
	for _, v := range back[:3] {
		if v.Attrs != 0x27 || !v.Time.Equal(when) {
			t.Errorf("%s: attributes %#x time %v, want 0x27 (NV|BS|RT|time-based auth) at %v", v.Name, v.Attrs, v.Time, when)
		}
		// EFI_SIGNATURE_LIST: type EFI_CERT_X509_GUID, then the owner GUID and the DER certificate.
		if !bytes.Equal(v.Data[:16], []byte{0xa1, 0x59, 0xc0, 0xa5, 0xe4, 0x94, 0xa7, 0x4a, 0x87, 0xb5, 0xab, 0x15, 0x5c, 0x2b, 0xf0, 0x72}) {
			t.Errorf("%s: signature type %x, want EFI_CERT_X509_GUID", v.Name, v.Data[:16])
		}
	}
	if c := back[2].Data[28+16:]; !bytes.Equal(c, o.DB.Raw) {
		t.Errorf("db holds %x..., want the db certificate", sha256.Sum256(c))
	}
	if _, err := secboot.Enroll(out, vars); err == nil || !strings.Contains(err.Error(), "start from an empty store") {
		t.Errorf("enrolling into a used store: %v", err)
	}
	if _, err := secboot.Enroll(tmpl[:0x1000], vars); err == nil {
		t.Error("a truncated store was accepted")
	}
}
