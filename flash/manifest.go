package flash

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/fwbuild/fwbuild/internal/buildrecord"
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
	mp := filepath.Join(dir, buildrecord.ManifestFile)
	switch b, err := os.ReadFile(mp); {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("read %s: %w", mp, err)
	default:
		recBoard, outputs, err := buildrecord.ManifestOutputs(b)
		if err != nil {
			return nil, fmt.Errorf("%s is %v: rebuild, or move the image out of that directory", mp, err)
		}
		if board != "" && recBoard != "" && recBoard != board {
			return nil, fmt.Errorf("%s is a build of board %q, not %q: flash it with --board %s, or build %s", mp, recBoard, board, recBoard, board)
		}
		for _, o := range outputs {
			if o.Name == name {
				out = append(out, Built{Name: name, SHA256: strings.ToLower(o.SHA256), Source: mp})
			}
		}
	}
	sp := filepath.Join(dir, buildrecord.SumsFile)
	switch b, err := os.ReadFile(sp); {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("read %s: %w", sp, err)
	default:
		for _, o := range buildrecord.ParseSHA256SUMS(b) {
			if o.Name == name {
				out = append(out, Built{Name: name, SHA256: o.SHA256, Source: sp})
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
