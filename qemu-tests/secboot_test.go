package qemutests_test

// Secure Boot with the owner's keys enrolled at build time: qemu-q35-secboot
// is built with a fresh key set, and its usb.img boots on Debian's Secure
// Boot OVMF (OVMF_CODE_4M.secboot.fd, q35 with SMM) with the variable store
// the build wrote (uefi-vars.fd: PK, KEK, db, Secure Boot on). The firmware
// itself must refuse the same payload with one byte flipped and an unsigned
// payload.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/attest"
	"github.com/fwbuild/fwbuild/contract"
	"github.com/fwbuild/fwbuild/image"
	"github.com/fwbuild/fwbuild/internal/boottest"
	"github.com/fwbuild/fwbuild/internal/pipeline"
	"github.com/fwbuild/fwbuild/internal/testdeps"
	"github.com/fwbuild/fwbuild/measure"
	qemutests "github.com/fwbuild/fwbuild/qemu-tests"
	"github.com/fwbuild/fwbuild/secboot"
)

// secbootMachine is q35 with SMM and a secure pflash, as the SMM build of
// OVMF requires. S3 is off: with S3 on, OVMF reserves its 8-23 MiB work area
// as ACPI NVS, where the PV dom0 kernel's pseudo-physical image lies, and
// Linux stops with "Xen hypervisor allocated kernel memory conflicts with
// E820 map" (seen here; libvirt turns S3 off for such guests too).
func secbootMachine(code, vars, usb string) qemutests.Machine {
	return qemutests.Machine{
		Machine:  "q35,smm=on",
		Firmware: qemutests.PflashOVMF(code, vars),
		Disks:    []qemutests.Disk{qemutests.USBKey(usb)},
		Args:     []string{"-global", "driver=cfi.pflash01,property=secure,value=on", "-global", "ICH9-LPC.disable_s3=1"},
	}
}

// refusedPattern is BdsDxe's line when LoadImage fails Secure Boot's check
// of the USB key's BOOTX64.EFI (EFI_ACCESS_DENIED, from
// DxeImageVerificationLib), before anything of the payload runs.
const refusedPattern = `BdsDxe: failed to load Boot[0-9A-F]{4} "([^"]*USB[^"]*)" from \S+: (Access Denied)`

func TestSecureBootOwnerKeys(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Fatal("qemu-system-x86_64 not found: apt-get install -y qemu-system-x86 (or fwbuild doctor --fix)")
	}
	root := testdeps.RepoRoot(t)
	b := testdeps.Board(t, "qemu-q35-secboot")
	keys := filepath.Join(t.TempDir(), "keys")
	if err := secboot.Generate(keys, "qemu-tests owner"); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	cacheDir := testdeps.CacheDir(t)
	start := time.Now()
	if _, err := pipeline.Build(context.Background(), pipeline.Options{
		Board: b, BoardsDir: filepath.Join(root, "boards"), CacheDir: cacheDir, OutDir: out, Keys: keys,
	}); err != nil {
		t.Fatalf("build qemu-q35-secboot: %v", err)
	}
	t.Logf("built qemu-q35-secboot in %v", time.Since(start).Round(time.Second))
	var m pipeline.Manifest
	if data, err := os.ReadFile(filepath.Join(out, "manifest.json")); err != nil || json.Unmarshal(data, &m) != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	owner, err := secboot.Load(keys)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(owner.DB.Raw); m.Signer == nil || m.Signer.CertSHA256 != hex.EncodeToString(sum[:]) || !m.Signer.Enrolled {
		t.Errorf("manifest signer %+v, want the db certificate %x, enrolled", m.Signer, sum)
	}
	comps, err := pipeline.Fetch(context.Background(), b, cacheDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	code, err := comps.File("ovmf", "code-secboot", b)
	if err != nil {
		t.Fatal(err)
	}
	vars := filepath.Join(out, pipeline.VarsArtefact)
	logm := func(m qemutests.Match) { t.Logf("%6.1fs %-10s %s", m.At.Seconds(), m.Marker.Name, m.Line) }

	t.Run("signed boots", func(t *testing.T) {
		chain, err := qemutests.BootChain(qemutests.ChainUSB)
		if err != nil {
			t.Fatal(err)
		}
		// Measured boot with Secure Boot: PCR 7 holds the enrolled keys and
		// the db entry that verified the payload, as the build predicted.
		tpmDir, err := os.MkdirTemp("", "fwbuild-tpm-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(tpmDir)
		tpm, err := qemutests.StartTPM(context.Background(), tpmDir)
		if err != nil {
			t.Fatal(err)
		}
		defer tpm.Stop()
		machine := secbootMachine(code, vars, filepath.Join(out, "usb.img"))
		machine.Args = append(machine.Args, tpm.Args()...)
		nonce := []byte("secure boot nonce")
		// With a TPM the firmware hashes the 13 MB payload once per active
		// bank (SHA-1, SHA-256) on top of Secure Boot's own hash: under TCG
		// on a loaded machine that outlasts the firmware marker's timeout.
		chain[0].Timeout *= 2
		measured := qemutests.Regexp("ctld-measured", contract.MeasuredPattern, qemutests.TimeoutReady)
		measured.Then = "ctld quote " + hex.EncodeToString(nonce) + "\n"
		chain = append(chain, measured, qemutests.Regexp("ctld-quote", boottest.QuotePattern, qemutests.TimeoutReady))
		res, err := qemutests.Run(context.Background(), machine, chain, qemutests.Options{OnMarker: logm})
		if err != nil {
			t.Fatal(err)
		}
		log, _ := os.ReadFile(res.LogPath)
		if regexp.MustCompile(refusedPattern).Match(log) {
			t.Errorf("the firmware refused a boot option on the way (log %s)", res.LogPath)
		}
		want, err := boottest.Prediction(out, "usb")
		if err != nil {
			t.Fatal(err)
		}
		if off, _ := measure.Replay(measure.SecureBootPolicy([]byte{0}, nil)); hex.EncodeToString(off[7]) == want.SHA256["7"] {
			t.Errorf("PCR 7 predicted the same with Secure Boot on as off: %s", want.SHA256["7"])
		}
		for _, mt := range res.Matches {
			switch mt.Marker.Name {
			case "ctld-measured":
				got, err := boottest.CheckMeasured(mt.Line, want)
				if err != nil {
					t.Error(err)
				}
				// Another control domain (this one carries the owner's
				// certificate), another payload: qemu-q35's prediction for
				// the same path differs, and so does what the TPM measured.
				q35, err := boottest.Prediction(buildQ35(t).out, "usb")
				if err != nil {
					t.Fatal(err)
				}
				if q35.SHA256["4"] == want.SHA256["4"] || got.PCR4 == q35.SHA256["4"] {
					t.Errorf("PCR 4: qemu-q35 predicts %s, qemu-q35-secboot %s, measured %s: a different payload must change both", q35.SHA256["4"], want.SHA256["4"], got.PCR4)
				}
			case "ctld-quote":
				q, err := contract.ParseQuote(mt.Line)
				if err != nil {
					t.Fatal(err)
				}
				if err := attest.Verify(q, nonce, want); err != nil {
					t.Errorf("quote: %v", err)
				}
				if err := attest.Verify(q, []byte("an older nonce"), want); err == nil {
					t.Error("the quote verified with another nonce")
				}
			}
		}
	})

	signed, err := os.ReadFile(filepath.Join(out, "payload-esp.efi"))
	if err != nil {
		t.Fatal(err)
	}
	// One byte of the control domain (inside the .ramdisk section) flipped.
	flipped := bytes.Clone(signed)
	initrd, err := os.ReadFile(filepath.Join(out, "initramfs.cpio"+b.ControlDomain.Compression.Ext()))
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(flipped, initrd[:4096])
	if at < 0 {
		t.Fatal("the control domain's initramfs is not in payload-esp.efi")
	}
	flipped[at+len(initrd)/2] ^= 0x01
	// An unsigned payload: qemu-q35's, the same Xen, dom0 and control
	// domain without a signature.
	unsigned, err := os.ReadFile(filepath.Join(buildQ35(t).out, "payload-esp.efi"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		payload []byte
	}{{"flipped byte refused", flipped}, {"unsigned refused", unsigned}} {
		t.Run(c.name, func(t *testing.T) {
			usb := filepath.Join(t.TempDir(), "usb.img")
			if err := image.WriteUSB(context.Background(), usb, image.USBSpec{Size: int64(b.Outputs.USB.Size), Payload: c.payload, Name: b.Name, Epoch: pipeline.DefaultEpoch}); err != nil {
				t.Fatal(err)
			}
			res, err := qemutests.Run(context.Background(), secbootMachine(code, vars, usb),
				[]qemutests.Marker{qemutests.Regexp("refused", refusedPattern, qemutests.TimeoutFirmware)}, qemutests.Options{OnMarker: logm})
			var me *qemutests.MarkerError
			if errors.As(err, &me) {
				t.Fatalf("the firmware did not refuse the payload: %v", err)
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("refused: %s", res.Matches[0].Line)
			log, _ := os.ReadFile(res.LogPath)
			if bytes.Contains(log, []byte("(XEN) Xen version")) {
				t.Errorf("Xen's banner appeared after all (log %s)", res.LogPath)
			}
		})
	}
}
