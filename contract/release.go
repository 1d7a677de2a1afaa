package contract

import (
	"crypto/sha256"
	"fmt"
	"strings"
)

// VersionParam carries the payload's version on the dom0 command line of
// both payloads: the profile's release version and the build's content hash,
// fwbuild.version=1.4.0+3f2a9c1e (contract/update parses it). It is inside
// what the launcher hashes and the owner signs, so ctld can report it, and
// refuse a downgrade, without trusting anything else.
const VersionParam = "fwbuild.version"

// VersionArg is the parameter for a payload of version v.
func VersionArg(v string) string { return VersionParam + "=" + v }

// ParseVersionArg finds the version parameter on a kernel command line.
func ParseVersionArg(cmdline string) (string, bool) { return Param(cmdline, VersionParam) }

// MinVersionParam carries the profile's update.min_version on both
// payloads' command lines (inside what the owner signs, like the version):
// ctld refuses an update artefact below it even when a downgrade is asked,
// the floor a fleet owner sets once a release fixes something that must
// never come back (fwupd's and Redfish's LowestSupportedVersion).
const MinVersionParam = "fwbuild.min_version"

// MinVersionArg is the parameter for a floor of v (MAJOR.MINOR.PATCH).
func MinVersionArg(v string) string { return MinVersionParam + "=" + v }

// UpdateGUIDParam carries the board's first fwupd/LVFS device GUID on both
// payloads' command lines when the profile names its own (update.guids);
// without it the GUID is DefaultUpdateGUID(board). ctld reports it as its
// slots' SoftwareId, which fwupd's redfish plugin matches the cabinet's
// <provides> against.
const UpdateGUIDParam = "fwbuild.guid"

// DefaultUpdateGUID is a board's device GUID when its profile names none:
// a name-based UUID (RFC 4122 version 5 style, SHA-256 truncated) of
// "fwbuild:<board>", the same for every build of the board, in lower case
// as fwupd spells it.
func DefaultUpdateGUID(board string) string {
	sum := sha256.Sum256([]byte("fwbuild:" + board))
	u := sum[:16]
	u[6] = u[6]&0x0f | 0x50
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// UpdateGUID is the device GUID a payload's command line names.
func UpdateGUID(cmdline, board string) string {
	if g, ok := Param(cmdline, UpdateGUIDParam); ok {
		return strings.ToLower(g)
	}
	return DefaultUpdateGUID(board)
}

// OwnerCertificate is the owner's db certificate (PEM) inside a signed
// build's control domain: what ctld checks update artefacts against. It is
// public; the key that signs never leaves the owner.
const OwnerCertificate = "/etc/fwbuild/owner.crt"

// Artefact names of a signed build's release files in the output directory.
const (
	UpdateArtefact = "update.fwu"
)

// CabinetArtefact is the fwupd/LVFS cabinet's name: <board>-<version>.cab.
func CabinetArtefact(board, version string) string { return board + "-" + version + ".cab" }

// PayloadVersion is ctld's line for the payload it runs, printed before
// the ready line: fwbuild-ctld: payload version=<v>.
type PayloadVersion struct {
	Version string
}

func (p PayloadVersion) String() string {
	return fmt.Sprintf(CtldPrefix+"payload version=%s", p.Version)
}

// PayloadVersionPattern matches the line; its group is the version.
const PayloadVersionPattern = CtldPrefix + `payload version=(\S+)`

// ParsePayloadVersion reads the line.
func ParsePayloadVersion(line string) (PayloadVersion, error) {
	var p PayloadVersion
	if !scanAfter(line, CtldPrefix+"payload ", "version=%s", &p.Version) {
		return PayloadVersion{}, fmt.Errorf("not a ctld payload-version line: %q", line)
	}
	return p, nil
}

// BootParam says which payload the control domain runs: fwbuild.boot=esp
// (the ESP payload, whose slots ctld keeps, contract/slots.go) or
// fwbuild.boot=flash (the flash payload the launcher started).
const BootParam = "fwbuild.boot"

// Boot paths.
const (
	BootESP   = "esp"
	BootFlash = "flash"
)

// BoardParam names the board the payload was built for, so ctld refuses an
// update artefact for another: fwbuild.board=<profile name>.
const BoardParam = "fwbuild.board"

// Param finds name=value on a kernel command line.
func Param(cmdline, name string) (string, bool) {
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, name+"="); ok && v != "" {
			return v, true
		}
	}
	return "", false
}
