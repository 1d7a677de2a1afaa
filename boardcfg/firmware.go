package boardcfg

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/fwbuild/fwbuild/internal/boundedfile"

	"gopkg.in/yaml.v3"
)

// Firmware is outputs.spi.firmware, the base firmware image. A profile
// gives either a component file as "component:role" (Ref, e.g.
// "ovmf:code"), or a vendor image on the build host as
// {path: FILE, sha256: HEX} (Path, relative to the profile that sets it,
// and SHA256). A vendor image is pinned by hash like a package: the same
// profile must build the same chip wherever the file comes from.
type Firmware struct {
	Ref    string `yaml:"-"`
	Path   string `yaml:"path,omitempty"`
	SHA256 Hash   `yaml:"sha256,omitempty"`

	// File is Path as Load resolved and confined it (see paths.go): what
	// Read reads. It is host-specific, so not part of any cache key.
	File string `yaml:"-" json:"-"`
	// pin is where SHA256 was set, for messages about a wrong file.
	pin Loc
}

// MaxFirmwareFile bounds a firmware image given by path: no SPI chip
// fwbuild accepts is larger (maxChipSize).
const MaxFirmwareFile = 256 << 20

// IsFile reports whether the firmware is an image given by path rather
// than a component file.
func (f Firmware) IsFile() bool { return f.Path != "" }

// String is what messages and logs show: the reference or the path.
func (f Firmware) String() string {
	if f.Path != "" {
		return f.Path
	}
	return f.Ref
}

// firmwareFile is the mapping shape of Firmware.
type firmwareFile struct {
	Path   string `yaml:"path" json:"Path"`
	SHA256 Hash   `yaml:"sha256" json:"SHA256"`
}

// MarshalYAML writes the shape the profile used, so that what `fwbuild
// check` prints loads again.
func (f Firmware) MarshalYAML() (any, error) {
	if f.Path != "" {
		return firmwareFile{f.Path, f.SHA256}, nil
	}
	return f.Ref, nil
}

// MarshalJSON is the JSON of the same shape: a component reference stays
// the string it was before files were allowed (for `fwbuild check --json`
// readers and build cache keys), a file is {"Path", "SHA256"}.
func (f Firmware) MarshalJSON() ([]byte, error) {
	if f.Path != "" {
		return json.Marshal(firmwareFile{f.Path, f.SHA256})
	}
	return json.Marshal(f.Ref)
}

// decodeNode takes both shapes: a scalar is a component reference, a
// mapping a file. Any other shape, or a mapping without both keys, is an
// error at the field.
func (f *Firmware) decodeNode(d *decoder, n *yaml.Node, path string) error {
	*f = Firmware{}
	const want = "give component:role (e.g. ovmf:code) or {path: FILE, sha256: HEX} (an image file relative to this profile and its SHA-256)"
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" || n.Value == "" {
			return d.errf(n, path, "empty value; %s", want)
		}
		f.Ref = n.Value
		return nil
	case yaml.MappingNode:
		var file firmwareFile
		if err := d.decode(n, path, reflect.ValueOf(&file).Elem()); err != nil {
			return err
		}
		switch {
		case file.Path == "" && file.SHA256 == "":
			return d.errf(n, path, "empty mapping; %s", want)
		case file.Path == "":
			return d.errf(n, path, "sha256 without path: add path: FILE (the image, relative to this profile)")
		case file.SHA256 == "":
			// An unpinned image would make the build depend on whatever
			// file is there today.
			return d.errf(n, path, "path without sha256: add sha256: HEX (sha256sum of the image) so the build uses exactly that image")
		}
		f.Path, f.SHA256 = file.Path, file.SHA256
		return nil
	}
	return d.errf(n, path, "want component:role or a mapping {path, sha256}, got %s", kindName(n))
}

// Read returns the image given by path, read bounded from File, after
// checking its SHA-256 against the profile's. Errors name the profile
// field, the file and both hashes.
func (f Firmware) Read() ([]byte, error) {
	data, err := f.read()
	if err != nil {
		return nil, fmt.Errorf("outputs.spi.firmware: %w", err)
	}
	return data, nil
}

func (f Firmware) read() ([]byte, error) {
	switch {
	case f.Path == "":
		return nil, fmt.Errorf("%q is a component file, not a path: read it from the component", f.Ref)
	case f.File == "":
		return nil, fmt.Errorf("%q was not resolved: load the board with boardcfg.Load", f.Path)
	}
	at := ""
	if f.pin.File != "" {
		at = " (" + f.pin.String() + ")"
	}
	data, err := boundedfile.Read(f.File, MaxFirmwareFile)
	if err != nil {
		return nil, fmt.Errorf("%v; the profile pins SHA-256 %s%s: put the image there or correct path", err, f.SHA256, at)
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != string(f.SHA256) {
		return nil, fmt.Errorf("%s: SHA-256 is %s, the profile pins %s%s: this is not the image the profile names; if it is the one to build, put its SHA-256 in the profile", f.File, got, f.SHA256, at)
	}
	return data, nil
}

// CheckFiles reads and hashes the host files a loaded profile pins by
// SHA-256: today the base firmware given by path. Load only checks that
// they exist and are regular files, because hashing a large image is the
// build's work (it reads it anyway); `fwbuild check` calls this too, so a
// wrong file is refused before any build starts.
func (b *Board) CheckFiles() error {
	s := b.Outputs.SPI
	if s == nil || !s.Firmware.IsFile() {
		return nil
	}
	if _, err := s.Firmware.read(); err != nil {
		return &Error{Loc: b.Loc("outputs.spi.firmware"), Field: "outputs.spi.firmware", Msg: err.Error()}
	}
	return nil
}
