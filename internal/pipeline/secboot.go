package pipeline

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fwbuild/fwbuild/secboot"
)

// The sign stage (between payload and the images, only when the build is
// given the owner's keys): both payloads get an Authenticode signature by
// the owner's db key, so the ESP payload boots under Secure Boot and the
// flash payload carries the same proof; a board with outputs.secure_boot
// also gets uefi-vars.fd, its firmware's variable store with the owner's
// PK, KEK and db enrolled and Secure Boot on. The stage's files have the
// payload stage's names, so the images take it in the payload's place. No
// private key reaches the cache or an output: only signatures and
// certificates do.

// VarsArtefact is the enrolled variable store's name in the output directory.
const VarsArtefact = "uefi-vars.fd"

// loadKeys reads the owner's key set named by Options.Keys before the
// first stage, and refuses a Secure Boot board built without one.
func (r *run) loadKeys() error {
	if r.Keys == "" {
		if r.Board.Outputs.SecureBoot != nil {
			return fmt.Errorf("build: board %s enrols the owner's Secure Boot keys (%s): give them with --keys DIR (`fwbuild keys --dir DIR` creates a test set)",
				r.Board.Name, r.Board.Loc("outputs.secure_boot"))
		}
		return nil
	}
	o, err := secboot.Load(r.Keys)
	if err != nil {
		return fmt.Errorf("build: %w", err)
	}
	r.owner = o
	return nil
}

func (r *run) sign(ctx context.Context, pay stageResult) (stageResult, error) {
	b := r.Board
	o := r.owner
	varsID := ""
	if sb := b.Outputs.SecureBoot; sb != nil {
		comp, role, _ := strings.Cut(sb.Variables, ":")
		c, _ := b.Component(comp)
		varsID = sb.Variables + ":" + string(c.SHA256) + ":" + c.Files[role]
	}
	k := key("sign/1", r.tool, pay.Key, o.ID(), varsID, r.Epoch.UTC().Format(time.RFC3339))
	return r.stage(ctx, "sign", k, func(dir string) error {
		for _, name := range []string{"payload-esp.efi", "payload-flash.efi"} {
			img, err := pay.read(name)
			if err != nil {
				return fmt.Errorf("sign: %w", err)
			}
			signed, err := secboot.SignPE(img, o.Signer, o.DB)
			if err != nil {
				return fmt.Errorf("sign: %s: %w", name, err)
			}
			if err := os.WriteFile(filepath.Join(dir, name), signed, 0o644); err != nil {
				return fmt.Errorf("sign: %w", err)
			}
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		members, err := pay.read("flash-members.json")
		if err != nil {
			return fmt.Errorf("sign: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, "flash-members.json"), members, 0o644); err != nil {
			return fmt.Errorf("sign: %w", err)
		}
		sb := b.Outputs.SecureBoot
		if sb == nil {
			return nil
		}
		comp, role, _ := strings.Cut(sb.Variables, ":")
		tmpl, err := r.comps.Read(comp, role, b)
		if err != nil {
			return fmt.Errorf("sign: variable store (%s): %w", b.Loc("outputs.secure_boot.variables"), err)
		}
		vars, err := secboot.EnrollVars(o, o.OwnerGUID(), r.Epoch)
		if err != nil {
			return fmt.Errorf("sign: %w", err)
		}
		store, err := secboot.Enroll(tmpl, vars)
		if err != nil {
			return fmt.Errorf("sign: %s (%s): %w", sb.Variables, b.Loc("outputs.secure_boot.variables"), err)
		}
		return os.WriteFile(filepath.Join(dir, VarsArtefact), store, 0o644)
	})
}
