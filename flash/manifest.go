package flash

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Built is what a build's record (manifest.json or SHA256SUMS next to the image) says
// the image must be. WriteSPI and WriteUSB refuse an image whose SHA-256 differs: a
// stale, edited or swapped file must not reach the chip under the build's name.
type Built struct {
	Name   string // the image's file name as the record lists it, e.g. "spi.bin"
	SHA256 string // lower-case hex
	Source string // the record's path, e.g. "out/qemu-q35/manifest.json"
}

// FindBuilt reads manifest.json and SHA256SUMS next to imagePath, if they exist, and
// returns their entries for the image's file name. A record that lists the image under
// its name must be readable; one for another board than board (when both are known) is
// an error, since flashing another board's build is what the check exists to stop.
// No record, or a record that does not list the name, returns nothing to compare.
func FindBuilt(imagePath, board string) ([]Built, error) {
	dir, name := filepath.Dir(imagePath), filepath.Base(imagePath)
	var out []Built
	mp := filepath.Join(dir, "manifest.json")
	switch b, err := os.ReadFile(mp); {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("read %s: %w", mp, err)
	default:
		var m struct {
			Board   string `json:"board"`
			Outputs []struct {
				Name   string `json:"name"`
				SHA256 string `json:"sha256"`
			} `json:"outputs"`
		}
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("%s is not a build manifest (%v): rebuild, or move the image out of that directory", mp, err)
		}
		if board != "" && m.Board != "" && m.Board != board {
			return nil, fmt.Errorf("%s is a build of board %q, not %q: flash it with --board %s, or build %s", mp, m.Board, board, m.Board, board)
		}
		for _, o := range m.Outputs {
			if o.Name == name {
				out = append(out, Built{Name: name, SHA256: strings.ToLower(o.SHA256), Source: mp})
			}
		}
	}
	sp := filepath.Join(dir, "SHA256SUMS")
	switch b, err := os.ReadFile(sp); {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("read %s: %w", sp, err)
	default:
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			// sha256sum's format: "<hex>  <name>" (text) or "<hex> *<name>" (binary).
			sum, file, ok := strings.Cut(sc.Text(), " ")
			if !ok || len(sum) != 64 {
				continue
			}
			if strings.TrimPrefix(strings.TrimPrefix(file, " "), "*") == name {
				out = append(out, Built{Name: name, SHA256: strings.ToLower(sum), Source: sp})
			}
		}
	}
	return out, nil
}

// checkBuilt compares the image's SHA-256 with every record; it returns the first mismatch.
func checkBuilt(imageSHA string, built []Built) error {
	for _, b := range built {
		if b.SHA256 != imageSHA {
			return fmt.Errorf("the image's SHA-256 %s differs from %s's %s for %s (%s): the file changed since that build or is another build's",
				imageSHA, filepath.Base(b.Source), b.SHA256, b.Name, b.Source)
		}
	}
	return nil
}
