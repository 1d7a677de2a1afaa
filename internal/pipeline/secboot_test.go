package pipeline

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/fwbuild/fwbuild/contract"
	"github.com/fwbuild/fwbuild/contract/update"
	"github.com/fwbuild/fwbuild/secboot"
)

// A build with the owner's keys signs both payloads: sbverify and
// osslsigncode accept each with the owner's db certificate and reject it
// with another (KEK's); a second build in another directory gives the same
// signed bytes; no private key is among the outputs.
func TestSignedBuild(t *testing.T) {
	for _, tool := range [][2]string{{"sbverify", "sbsigntool"}, {"osslsigncode", "osslsigncode"}} {
		if _, err := exec.LookPath(tool[0]); err != nil {
			t.Fatalf("%s not found: apt-get install -y %s (or fwbuild doctor --fix)", tool[0], tool[1])
		}
	}
	keys := filepath.Join(t.TempDir(), "keys")
	if err := secboot.Generate(keys, "pipeline test"); err != nil {
		t.Fatal(err)
	}
	outA, outB := t.TempDir(), t.TempDir()
	for _, out := range []string{outA, outB} {
		o := q35Options(t, out)
		o.Keys = keys
		if _, err := Build(context.Background(), o); err != nil {
			t.Fatal(err)
		}
	}
	db, kek := secboot.CertFile(keys, "db"), secboot.CertFile(keys, "KEK")
	var m Manifest
	if data, err := os.ReadFile(filepath.Join(outA, "manifest.json")); err != nil || json.Unmarshal(data, &m) != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	digest := regexp.MustCompile(`Calculated message digest\s*:\s*([0-9A-F]{64})`)
	for _, name := range []string{"payload-esp.efi", "payload-flash.efi"} {
		p := filepath.Join(outA, name)
		if out, err := exec.Command("sbverify", "--cert", db, p).CombinedOutput(); err != nil {
			t.Errorf("sbverify %s with db.crt: %v\n%s", name, err, out)
		}
		if out, err := exec.Command("osslsigncode", "verify", "-CAfile", db, "-in", p).CombinedOutput(); err != nil || !bytes.Contains(out, []byte("Succeeded")) {
			t.Errorf("osslsigncode verify %s with db.crt: %v\n%s", name, err, out)
		}
		// The manifest's Authenticode digest (what edk2 measures into PCR 4)
		// is the one osslsigncode computes.
		out, _ := exec.Command("osslsigncode", "verify", "-CAfile", db, "-in", p).CombinedOutput()
		if d := digest.FindSubmatch(out); d == nil || !strings.EqualFold(string(d[1]), m.Authenticode[name]) {
			t.Errorf("%s: manifest authenticode_sha256 %q, osslsigncode computes %q", name, m.Authenticode[name], d)
		}
		if out, err := exec.Command("sbverify", "--cert", kek, p).CombinedOutput(); err == nil {
			t.Errorf("sbverify accepted %s with KEK.crt:\n%s", name, out)
		}
		if out, err := exec.Command("osslsigncode", "verify", "-CAfile", kek, "-in", p).CombinedOutput(); err == nil && bytes.Contains(out, []byte("Succeeded")) {
			t.Errorf("osslsigncode accepted %s with KEK.crt:\n%s", name, out)
		}
		a, _ := os.ReadFile(p)
		b, _ := os.ReadFile(filepath.Join(outB, name))
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between two signed builds", name)
		}
	}
	checkRelease(t, outA, outB, keys, m)
	// qemu-q35 has no secure_boot: nothing is enrolled, and no key leaves the key directory.
	if _, err := os.Stat(filepath.Join(outA, VarsArtefact)); err == nil {
		t.Errorf("%s written for a board without secure_boot", VarsArtefact)
	}
	// Neither a PEM key nor the DER bytes of any private key (past the
	// public modulus: the private exponent) are in any output.
	var secrets [][]byte
	for _, role := range secboot.Roles {
		k, _ := os.ReadFile(secboot.KeyFile(keys, role))
		blk, _ := pem.Decode(k)
		if blk == nil {
			t.Fatalf("%s.key is not PEM", role)
		}
		secrets = append(secrets, blk.Bytes[len(blk.Bytes)-300:len(blk.Bytes)-236])
	}
	entries, _ := os.ReadDir(outA)
	for _, e := range entries {
		data, _ := os.ReadFile(filepath.Join(outA, e.Name()))
		if bytes.Contains(data, []byte("PRIVATE KEY")) {
			t.Errorf("%s holds a PEM private key", e.Name())
		}
		for i, sec := range secrets {
			if bytes.Contains(data, sec) {
				t.Errorf("%s holds bytes of %s.key", e.Name(), secboot.Roles[i])
			}
		}
	}
}

// checkRelease: a signed build also writes the update artefact (both signed
// payloads behind a header the db key signs, for this board, with the
// manifest's version) and its fwupd cabinet, the same bytes in both builds.
func checkRelease(t *testing.T, outA, outB, keys string, m Manifest) {
	t.Helper()
	if !regexp.MustCompile(`^0\.1\.0\+[0-9a-f]{8}$`).MatchString(m.Version) {
		t.Errorf("manifest version %q, want 0.1.0+<8 hex digits>", m.Version)
	}
	cert := func(role string) *x509.Certificate {
		data, err := os.ReadFile(secboot.CertFile(keys, role))
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(data)
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	art, err := os.ReadFile(filepath.Join(outA, contract.UpdateArtefact))
	if err != nil {
		t.Fatalf("signed build wrote no update artefact: %v", err)
	}
	a, err := update.Open(bytes.NewReader(art), int64(len(art)), "qemu-q35", cert("db"))
	if err != nil {
		t.Fatal(err)
	}
	if a.Header.Version != m.Version {
		t.Errorf("artefact version %s, manifest %s", a.Header.Version, m.Version)
	}
	for kind, name := range map[string]string{update.PartESP: "payload-esp.efi", update.PartFlash: "payload-flash.efi"} {
		r, _, err := a.Part(kind)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		want, _ := os.ReadFile(filepath.Join(outA, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("artefact's %s part is not %s (%v)", kind, name, err)
		}
	}
	if _, err := update.Open(bytes.NewReader(art), int64(len(art)), "qemu-q35", cert("KEK")); err == nil {
		t.Error("update artefact verifies with KEK.crt")
	}
	cab := contract.CabinetArtefact("qemu-q35", "0.1.0")
	for _, name := range []string{contract.UpdateArtefact, cab} {
		x, errA := os.ReadFile(filepath.Join(outA, name))
		y, errB := os.ReadFile(filepath.Join(outB, name))
		if errA != nil || errB != nil || !bytes.Equal(x, y) {
			t.Errorf("%s differs between two signed builds (%v, %v)", name, errA, errB)
		}
	}
	out, err := exec.Command("fwupdtool", "get-details", filepath.Join(outA, cab)).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("New version:      0.1.0")) {
		t.Errorf("fwupdtool get-details %s: %v\n%s", cab, err, out)
	}
}
