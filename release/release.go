// Package release packages a signed build for the field: the update
// artefact ctld installs into its inactive slot (contract/update), wrapped
// in the cabinet archive fwupd and the LVFS distribute, with the AppStream
// metainfo that says which devices it is for.
package release

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fwbuild/fwbuild/contract/update"
)

// Cabinet describes one release of one board's payload.
type Cabinet struct {
	Board       string // profile name
	Description string // the profile's description: the component's summary
	Version     update.Version
	// GUIDs are the device GUIDs the release is for (fwupd matches a
	// device's instance GUIDs against them).
	GUIDs []string
	// Notes are the release notes, one paragraph each.
	Notes []string
	// Date is the build's SOURCE_DATE_EPOCH.
	Date time.Time
	// Artefact is the signed update artefact, stored as ArtefactName.
	Artefact     []byte
	ArtefactName string
	// Vendor and Homepage fill the metainfo's developer fields.
	Vendor, Homepage string
}

// Build returns the .cab: the artefact and <id>.metainfo.xml.
func (c Cabinet) Build() ([]byte, error) {
	if c.ArtefactName == "" || len(c.Artefact) == 0 {
		return nil, errors.New("release: cabinet without an update artefact")
	}
	if len(c.GUIDs) == 0 {
		return nil, errors.New("release: cabinet needs at least one device GUID")
	}
	meta, err := c.metainfo()
	if err != nil {
		return nil, err
	}
	return cabinet(map[string][]byte{c.ArtefactName: c.Artefact, c.componentID() + ".metainfo.xml": meta}, c.Date)
}

// componentID is AppStream's reverse-DNS id; fwupd wants it unique per
// device and stable across releases.
func (c Cabinet) componentID() string {
	return "org.fwbuild." + strings.ReplaceAll(c.Board, "-", "_") + ".payload"
}

type mComponent struct {
	XMLName         xml.Name   `xml:"component"`
	Type            string     `xml:"type,attr"`
	ID              string     `xml:"id"`
	Name            string     `xml:"name"`
	Summary         string     `xml:"summary"`
	Description     mParas     `xml:"description"`
	Provides        []mFw      `xml:"provides>firmware"`
	URL             *mURL      `xml:"url,omitempty"`
	MetadataLicense string     `xml:"metadata_license"`
	ProjectLicense  string     `xml:"project_license"`
	Developer       string     `xml:"developer_name"`
	Releases        []mRelease `xml:"releases>release"`
	Custom          []mValue   `xml:"custom>value"`
}

type mParas struct {
	P []string `xml:"p"`
}

type mFw struct {
	Type string `xml:"type,attr"`
	GUID string `xml:",chardata"`
}

type mURL struct {
	Type string `xml:"type,attr"`
	URL  string `xml:",chardata"`
}

type mRelease struct {
	Version     string      `xml:"version,attr"`
	Date        string      `xml:"date,attr"`
	Urgency     string      `xml:"urgency,attr"`
	Checksums   []mChecksum `xml:"checksum"`
	Description mParas      `xml:"description"`
}

type mChecksum struct {
	Filename string `xml:"filename,attr"`
	Target   string `xml:"target,attr"`
	Type     string `xml:"type,attr"`
	Sum      string `xml:",chardata"`
}

type mValue struct {
	Key   string `xml:"key,attr"`
	Value string `xml:",chardata"`
}

func (c Cabinet) metainfo() ([]byte, error) {
	notes := c.Notes
	if len(notes) == 0 {
		notes = []string{fmt.Sprintf("fwbuild payload %s for %s.", c.Version, c.Board)}
	}
	s1 := sha1.Sum(c.Artefact)
	s256 := sha256.Sum256(c.Artefact)
	m := mComponent{
		Type:            "firmware",
		ID:              c.componentID(),
		Name:            "fwbuild " + c.Board,
		Summary:         firstNonEmpty(c.Description, "Hypervisor payload for "+c.Board),
		Description:     mParas{P: []string{"The Xen hypervisor, its dom0 kernel and the fwbuild control domain for " + c.Board + "."}},
		MetadataLicense: "CC0-1.0",
		ProjectLicense:  "LicenseRef-proprietary",
		Developer:       firstNonEmpty(c.Vendor, "fwbuild"),
		Releases: []mRelease{{
			// fwupd compares triplets; the content hash stays in the artefact.
			Version: fmt.Sprintf("%d.%d.%d", c.Version.Major, c.Version.Minor, c.Version.Patch),
			Date:    c.Date.UTC().Format("2006-01-02"),
			Urgency: "medium",
			Checksums: []mChecksum{
				{Filename: c.ArtefactName, Target: "content", Type: "sha1", Sum: hex.EncodeToString(s1[:])},
				{Filename: c.ArtefactName, Target: "content", Type: "sha256", Sum: hex.EncodeToString(s256[:])},
			},
			Description: mParas{P: notes},
		}},
		Custom: []mValue{
			{Key: "LVFS::VersionFormat", Value: "triplet"},
			{Key: "LVFS::UpdateProtocol", Value: "org.dmtf.redfish"},
		},
	}
	if c.Homepage != "" {
		m.URL = &mURL{Type: "homepage", URL: c.Homepage}
	}
	for _, g := range c.GUIDs {
		m.Provides = append(m.Provides, mFw{Type: "flashed", GUID: g})
	}
	b, err := xml.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("release: metainfo: %w", err)
	}
	return append([]byte(xml.Header), append(b, '\n')...), nil
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}
