package boardcfg

import (
	"fmt"
	"strings"

	"github.com/fwbuild/fwbuild/contract"
	"github.com/fwbuild/fwbuild/contract/update"
)

// DefaultVersion is a profile's release version when it names none.
const DefaultVersion = "0.1.0"

// Update describes how a board's payload is released in the field.
type Update struct {
	// GUIDs are the device GUIDs fwupd and the LVFS match the release
	// against (a vendor's system-firmware GUIDs); default: one derived
	// from the board's name (Board.UpdateGUIDs).
	GUIDs []GUID `yaml:"guids,omitempty"`
	// Notes are the release notes, one paragraph per line.
	Notes string `yaml:"notes,omitempty"`
	// MinVersion: ctld refuses an update below it unless asked to downgrade.
	MinVersion string `yaml:"min_version,omitempty"`
	// Vendor and Homepage fill the cabinet's metainfo.
	Vendor   string `yaml:"vendor,omitempty"`
	Homepage string `yaml:"homepage,omitempty"`
}

// ReleaseVersion is the profile's version (MAJOR.MINOR.PATCH).
func (b *Board) ReleaseVersion() update.Version {
	v, err := update.ParseVersion(b.versionString())
	if err != nil {
		return update.Version{} // validate refused it
	}
	return v
}

func (b *Board) versionString() string {
	if b.Version == "" {
		return DefaultVersion
	}
	return b.Version
}

// UpdateGUIDs are the release's device GUIDs in lower case (as fwupd
// spells them): the profile's, or a name-based UUID (RFC 4122 version 5
// style, SHA-256 truncated) of "fwbuild:<board>", the same for every build
// of the board.
func (b *Board) UpdateGUIDs() []string {
	if b.Update != nil && len(b.Update.GUIDs) > 0 {
		out := make([]string, len(b.Update.GUIDs))
		for i, g := range b.Update.GUIDs {
			out[i] = strings.ToLower(string(g))
		}
		return out
	}
	return []string{contract.DefaultUpdateGUID(b.Name)}
}

func (b *Board) validateRelease() []error {
	var errs []error
	if b.Version != "" {
		if strings.Contains(b.Version, "+") {
			errs = append(errs, b.errAt("version", "%q: give MAJOR.MINOR.PATCH; fwbuild adds the build's content hash after '+'", b.Version))
		} else if _, err := update.ParseVersion(b.Version); err != nil {
			errs = append(errs, b.errAt("version", "%v", err))
		}
	}
	u := b.Update
	if u == nil {
		return errs
	}
	for i, g := range u.GUIDs {
		if g == "" {
			errs = append(errs, b.missing(fmt.Sprintf("update.guids[%d]", i)))
		}
	}
	if u.MinVersion != "" {
		mv, err := update.ParseVersion(u.MinVersion)
		switch {
		case err != nil || strings.Contains(u.MinVersion, "+"):
			errs = append(errs, b.errAt("update.min_version", "%q: want MAJOR.MINOR.PATCH", u.MinVersion))
		case mv.Compare(b.ReleaseVersion()) > 0:
			errs = append(errs, b.errAt("update.min_version", "%s is above the board's own version %s: the build could not install itself", u.MinVersion, b.versionString()))
		}
	}
	if len(u.Notes) > 16<<10 {
		errs = append(errs, b.errAt("update.notes", "%d bytes: at most 16 KiB", len(u.Notes)))
	}
	return errs
}
