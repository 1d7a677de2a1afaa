package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

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
