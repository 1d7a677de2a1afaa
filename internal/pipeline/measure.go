package pipeline

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/fwbuild/fwbuild/secboot"
)

// peDigests is each payload's Authenticode SHA-256, by artefact name: the
// digest the firmware measures into PCR 4 when it starts the payload (both
// paths start it through the boot manager's LoadImage), and the one a
// signature covers. The PCR values themselves also depend on the events the
// firmware logs before it. Each digest is kept in the cache under the
// payload's SHA-256 (parsing 20 MB of PE is the slowest part of a no-op
// rebuild otherwise).
func (r *run) peDigests(ctx context.Context, arts []Artefact) (map[string]string, error) {
	out := map[string]string{}
	for _, a := range arts {
		if a.Name != "payload-esp.efi" && a.Name != "payload-flash.efi" {
			continue
		}
		e, err := r.stage(ctx, "authenticode", key("authenticode/1", r.tool, a.SHA256), func(dir string) error {
			img, err := os.ReadFile(a.src)
			if err != nil {
				return err
			}
			d, err := secboot.AuthenticodeDigest(img)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dir, "sha256"), []byte(hex.EncodeToString(d)), 0o644)
		})
		if err != nil {
			return nil, fmt.Errorf("manifest: %s: %w", a.Name, err)
		}
		d, err := e.read("sha256")
		if err != nil {
			return nil, fmt.Errorf("manifest: %s: %w", a.Name, err)
		}
		out[a.Name] = strings.TrimSpace(string(d))
	}
	return out, nil
}
