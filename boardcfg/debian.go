package boardcfg

import (
	"fmt"
	"strings"
)

// A component's package and version go onto apt-get's command line (as
// PKG=VERSION) of a build that runs as root. apt parses an operand that
// starts with '-' as an option, and options such as
// -oAcquire::http::Proxy-Auto-Detect=/path run programs, so these checks
// are Debian's own syntax rules, nothing looser: a value that passes can
// only be a package name and a version, never an option or a second word.

// maxDebField bounds a package name or version: Debian has no limit, but
// no real one comes near it, and it keeps error messages and logs sane.
const maxDebField = 128

// CheckPackageName applies Debian policy §5.6.1: at least two characters,
// only lower-case ASCII letters, digits, '+', '-' and '.', starting with a
// letter or digit.
func CheckPackageName(name string) error {
	if len(name) < 2 {
		return fmt.Errorf("package name %q is too short: Debian package names have at least two characters", name)
	}
	if len(name) > maxDebField {
		return fmt.Errorf("package name is %d bytes long: at most %d", len(name), maxDebField)
	}
	if !isLowerAlnum(name[0]) {
		return fmt.Errorf("package name %q must start with a lower-case letter or digit (Debian policy 5.6.1)", name)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !isLowerAlnum(c) && c != '+' && c != '-' && c != '.' {
			return fmt.Errorf("package name %q has %q: use lower-case letters, digits, '+', '-' and '.' (Debian policy 5.6.1)", name, rune(c))
		}
	}
	return nil
}

// CheckVersion applies Debian policy §5.6.12: [epoch:]upstream[-revision],
// where epoch is digits, upstream starts with a digit and has only ASCII
// letters, digits and . + ~ (plus '-' only when there is a revision, ':'
// only when there is an epoch), and revision has letters, digits and . + ~.
// pault.ag/go/debian/version.Parse is looser (it trims spaces, accepts
// "-1", "+1:0" and non-ASCII digits), so it is not used here.
func CheckVersion(v string) error {
	if v == "" {
		return fmt.Errorf("empty version")
	}
	if len(v) > maxDebField {
		return fmt.Errorf("version is %d bytes long: at most %d", len(v), maxDebField)
	}
	const syntax = "want [epoch:]upstream[-revision], e.g. 4.17.7-1 or 1:1.2.13-1 (Debian policy 5.6.12)"
	upstream := v
	epoch, rest, hasEpoch := strings.Cut(v, ":")
	if hasEpoch {
		if epoch == "" || strings.Trim(epoch, "0123456789") != "" {
			return fmt.Errorf("version %q: the epoch before ':' must be digits; %s", v, syntax)
		}
		upstream = rest
	}
	revision, hasRevision := "", false
	if i := strings.LastIndexByte(upstream, '-'); i >= 0 {
		upstream, revision, hasRevision = upstream[:i], upstream[i+1:], true
	}
	if upstream == "" || upstream[0] < '0' || upstream[0] > '9' {
		return fmt.Errorf("version %q: the upstream version must start with a digit; %s", v, syntax)
	}
	for i := 0; i < len(upstream); i++ {
		c := upstream[i]
		ok := isAlnum(c) || c == '.' || c == '+' || c == '~' || c == '-' && hasRevision || c == ':' && hasEpoch
		if !ok {
			return fmt.Errorf("version %q has %q in its upstream part; %s", v, rune(c), syntax)
		}
	}
	if hasRevision {
		if revision == "" {
			return fmt.Errorf("version %q ends in '-': give a revision after it or drop the '-'; %s", v, syntax)
		}
		for i := 0; i < len(revision); i++ {
			if c := revision[i]; !isAlnum(c) && c != '.' && c != '+' && c != '~' {
				return fmt.Errorf("version %q has %q in its revision (after the last '-'); %s", v, rune(c), syntax)
			}
		}
	}
	return nil
}

func isLowerAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

func isAlnum(c byte) bool { return isLowerAlnum(c) || c >= 'A' && c <= 'Z' }
