package pipeline

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/fwbuild/fwbuild/contract"
	"github.com/fwbuild/fwbuild/measure"
	"github.com/fwbuild/fwbuild/secboot"
)

// peDigests is each payload's Authenticode digest (SHA-256 and SHA-1), by
// artefact name: the digest the firmware measures into PCR 4 when it starts
// the payload (both paths start it through the boot manager's LoadImage),
// and the one a signature covers. Each digest is kept in the cache under the
// payload's SHA-256 (parsing 20 MB of PE is the slowest part of a no-op
// rebuild otherwise).
func (r *run) peDigests(ctx context.Context, arts []Artefact) (map[string]measure.Digests, error) {
	out := map[string]measure.Digests{}
	for _, a := range arts {
		if a.Name != "payload-esp.efi" && a.Name != "payload-flash.efi" {
			continue
		}
		e, err := r.stage(ctx, "authenticode", key("authenticode/2", r.tool, a.SHA256), func(dir string) error {
			img, err := os.ReadFile(a.src)
			if err != nil {
				return err
			}
			d, err := measure.PEDigests(img)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dir, "digests"), []byte(hex.EncodeToString(d.SHA256)+" "+hex.EncodeToString(d.SHA1)), 0o644)
		})
		if err != nil {
			return nil, fmt.Errorf("manifest: %s: %w", a.Name, err)
		}
		b, err := e.read("digests")
		if err != nil {
			return nil, fmt.Errorf("manifest: %s: %w", a.Name, err)
		}
		s256, s1, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
		var d measure.Digests
		if d.SHA256, err = hex.DecodeString(s256); err == nil {
			d.SHA1, err = hex.DecodeString(s1)
		}
		if err != nil || len(d.SHA256) != 32 || len(d.SHA1) != 20 {
			return nil, fmt.Errorf("manifest: %s: cached Authenticode digests %q unreadable", a.Name, b)
		}
		out[a.Name] = d
	}
	return out, nil
}

// measurements predicts PCRs 4 and 7 for each boot path (package measure)
// from the artefacts: the payloads' Authenticode digests and, on a Secure
// Boot board's USB path, the variable store the build enrolled and the db
// entry that verifies the signed payload.
func (r *run) measurements(arts []Artefact, digests map[string]measure.Digests) (map[string]*contract.PathMeasurement, error) {
	byName := map[string]Artefact{}
	for _, a := range arts {
		byName[a.Name] = a
	}
	out := map[string]*contract.PathMeasurement{}
	off := measure.SecureBootPolicy([]byte{0}, nil) // OVMF's SecureBoot=0, no keys
	if d, ok := digests["payload-esp.efi"]; ok {
		policy, authority := off, []byte(nil)
		platform := "OVMF edk2-stable202211 (Debian) on QEMU q35: Secure Boot off, no keys; the DVD-ROM's boot option fails first"
		if r.Board.Outputs.SecureBoot != nil {
			var err error
			if policy, authority, err = secureBootPolicy(byName); err != nil {
				return nil, fmt.Errorf("manifest: measurements: %w", err)
			}
			platform = "OVMF edk2-stable202211 (Debian, Secure Boot build) on QEMU q35 with " + VarsArtefact + ": Secure Boot on; the DVD-ROM's boot option fails first"
		}
		out["usb"] = pathMeasurement("payload-esp.efi", platform, 1, measure.BootOption(d, policy, authority, 1))
	}
	if d, ok := digests["payload-flash.efi"]; ok && r.Board.Outputs.SPI != nil {
		platform := "the launcher's BootNext on edk2 firmware (OVMF edk2-stable202211 on QEMU q35): Secure Boot off, no keys"
		out["spi"] = pathMeasurement("payload-flash.efi", platform, 0, measure.BootOption(d, off, nil, 0))
	}
	return out, nil
}

// secureBootPolicy reads the enrolled store and finds the db entry that
// verifies the USB payload.
func secureBootPolicy(byName map[string]Artefact) ([]measure.Event, []byte, error) {
	va, ok := byName[VarsArtefact]
	if !ok {
		return nil, nil, fmt.Errorf("a secure_boot board without %s", VarsArtefact)
	}
	fd, err := os.ReadFile(va.src)
	if err != nil {
		return nil, nil, err
	}
	vars, err := secboot.ReadVars(fd)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", VarsArtefact, err)
	}
	var mv []measure.Variable
	var db []byte
	for _, v := range vars {
		mv = append(mv, measure.Variable{Name: v.Name, GUID: v.GUID, Data: v.Data})
		if v.Name == "db" && v.GUID == measure.ImageSecurityDB {
			db = v.Data
		}
	}
	img, err := os.ReadFile(byName["payload-esp.efi"].src)
	if err != nil {
		return nil, nil, err
	}
	authority, err := measure.Authority(db, img)
	if err != nil {
		return nil, nil, fmt.Errorf("payload-esp.efi against %s's db: %w", VarsArtefact, err)
	}
	// SecureBoot is 1: the firmware computes it from the PK and SecureBootEnable.
	return measure.SecureBootPolicy([]byte{1}, mv), authority, nil
}

func pathMeasurement(payload, platform string, failed int, p measure.Path) *contract.PathMeasurement {
	m := &contract.PathMeasurement{Payload: payload, Platform: platform, FailedBootOptions: failed,
		SHA256: measure.Hex(p.SHA256, 4, 7), SHA1: measure.Hex(p.SHA1, 4, 7)}
	for _, e := range p.Events {
		if e.PCR != 4 && e.PCR != 7 {
			continue
		}
		me := contract.MeasuredEvent{PCR: e.PCR, Type: e.Type.String(), SHA256: hex.EncodeToString(e.Digest.SHA256), SHA1: hex.EncodeToString(e.Digest.SHA1)}
		switch e.Type {
		case measure.EvEFIAction:
			me.Text = string(e.Data)
		case measure.EvEFIBootServicesApplication:
			me.Text = payload + " (Authenticode)"
		case measure.EvEFIVariableDriverConfig, measure.EvEFIVariableAuthority:
			me.Text = e.VariableName()
		}
		m.Events = append(m.Events, me)
	}
	return m
}
