package boardcfg

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// hostileCase edits one line of valid (see load_test.go) into something a
// hostile or careless profile author could write; Load must refuse it at
// the file:line:col and field in want.
type hostileCase struct {
	name string
	old  string
	new  string
	want string
}

func runHostile(t *testing.T, cases []hostileCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(valid, c.old) {
				t.Fatalf("test bug: %q not in the valid profile", c.old)
			}
			dir := t.TempDir()
			p := writeProfile(t, dir, "t1.yaml", strings.Replace(valid, c.old, c.new, 1))
			before := dirFiles(t, dir)
			_, err := Load(p, dir)
			if err == nil {
				t.Fatalf("Load succeeded, want error containing %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error\n  %v\nwant it to contain\n  %s", err, c.want)
			}
			if after := dirFiles(t, dir); !slices.Equal(before, after) {
				t.Errorf("Load changed the profile directory: %v -> %v", before, after)
			}
		})
	}
}

// dirFiles lists every path under dir.
func dirFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err == nil {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// A package or version apt-get would read as an option (or anything else
// outside Debian's syntax) fails at load, at the value.
func TestHostilePackages(t *testing.T) {
	const pkg, ver = "    package: xen-hypervisor-4.17-amd64", `    version: "4.17"`
	runHostile(t, []hostileCase{
		{"package is an apt option", pkg, `    package: "-oAcquire::http::Proxy-Auto-Detect"`, `t1.yaml:6:14: components[0].package: package name "-oAcquire::http::Proxy-Auto-Detect" must start with a lower-case letter or digit`},
		{"package is --", pkg, `    package: "--"`, `t1.yaml:6:14: components[0].package: package name "--" must start`},
		{"package upper case", pkg, `    package: Xen`, `t1.yaml:6:14: components[0].package: package name "Xen" must start`},
		{"package with space", pkg, `    package: "xen -s"`, `t1.yaml:6:14: components[0].package: package name "xen -s" has ' '`},
		{"package with =", pkg, `    package: "xen=1"`, `t1.yaml:6:14: components[0].package: package name "xen=1" has '='`},
		{"package one char", pkg, `    package: x`, `t1.yaml:6:14: components[0].package: package name "x" is too short`},
		{"version is a path", ver, `    version: /path/script`, `t1.yaml:7:14: components[0].version: version "/path/script": the upstream version must start with a digit`},
		{"version is an option", ver, `    version: "-oAPT::Update::Pre-Invoke::=/tmp/x"`, `t1.yaml:7:14: components[0].version: version "-oAPT::Update::Pre-Invoke::=/tmp/x": the epoch`},
		{"version is -1", ver, `    version: "-1"`, `t1.yaml:7:14: components[0].version: version "-1": the upstream version must start with a digit`},
		{"version with space", ver, `    version: "4.17 -oX=y"`, `t1.yaml:7:14: components[0].version: version "4.17 -oX=y" has ' '`},
		{"version bad revision", ver, `    version: "4.17-deb_1"`, `t1.yaml:7:14: components[0].version: version "4.17-deb_1" has '_' in its revision`},
		{"version bad epoch", ver, `    version: "a:4.17"`, `t1.yaml:7:14: components[0].version: version "a:4.17": the epoch`},
	})
}
