package pipeline

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fwbuild/fwbuild/contract"
	"github.com/fwbuild/fwbuild/contract/update"
	"github.com/fwbuild/fwbuild/release"
)

// The release stage (signed builds only, after sign): the update artefact
// a running ctld installs into its inactive slot, both signed payloads
// behind one header the owner signs, and the cabinet fwupd and the LVFS
// distribute it in. An unsigned build has no release: the control domain
// installs nothing it cannot authenticate.

func (r *run) release(ctx context.Context, pay stageResult) (stageResult, error) {
	b := r.Board
	o := r.owner
	v, err := update.ParseVersion(r.result.Version)
	if err != nil {
		return stageResult{}, fmt.Errorf("release: %w", err)
	}
	k := key("release/1", r.tool, pay.Key, o.ID(), v.String(), jsonKey(b.Update), jsonKey(b.UpdateGUIDs()), b.Description, r.Epoch.UTC().Format(time.RFC3339))
	return r.stage(ctx, "release", k, func(dir string) error {
		parts := map[string][]byte{}
		for kind, name := range map[string]string{update.PartESP: "payload-esp.efi", update.PartFlash: "payload-flash.efi"} {
			if parts[kind], err = pay.read(name); err != nil {
				return fmt.Errorf("release: %w", err)
			}
		}
		art, err := update.Encode(update.Header{Board: b.Name, Version: v.String(), Created: r.Epoch.Unix()}, parts, o.Signer, o.DB)
		if err != nil {
			return fmt.Errorf("release: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, contract.UpdateArtefact), art, 0o644); err != nil {
			return fmt.Errorf("release: %w", err)
		}
		c := release.Cabinet{Board: b.Name, Description: b.Description, Version: v, GUIDs: b.UpdateGUIDs(),
			Date: r.Epoch, Artefact: art, ArtefactName: contract.UpdateArtefact}
		if u := b.Update; u != nil {
			c.Notes = paragraphs(u.Notes)
			c.Vendor, c.Homepage = u.Vendor, u.Homepage
		}
		cab, err := c.Build()
		if err != nil {
			return fmt.Errorf("release: %w", err)
		}
		return os.WriteFile(filepath.Join(dir, "release.cab"), cab, 0o644)
	})
}

// cabinetName is the cabinet's artefact name: <board>-<MAJOR.MINOR.PATCH>.cab.
func (r *run) cabinetName() string {
	v := r.Board.ReleaseVersion()
	return contract.CabinetArtefact(r.Board.Name, fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch))
}

func paragraphs(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}
