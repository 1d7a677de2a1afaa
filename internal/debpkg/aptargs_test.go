package debpkg

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Every operand comes after "--", so apt-get never reads a profile value as
// an option.
func TestDownloadArgsEndOptions(t *testing.T) {
	args, err := downloadArgs([]Pkg{{Name: "hello", Version: "2.10-3"}, {Name: "zlib1g", Version: "1:1.2.13.dfsg-1"}})
	if err != nil {
		t.Fatal(err)
	}
	i := slices.Index(args, "--")
	if i < 0 || !slices.Equal(args[i+1:], []string{"hello=2.10-3", "zlib1g=1:1.2.13.dfsg-1"}) {
		t.Fatalf("args = %q, want the packages after --", args)
	}
}

// A name or version that is not Debian syntax never reaches apt-get, even
// from a caller that skipped boardcfg: the fake apt-get records any run.
func TestFetchRefusesOptionLikePackages(t *testing.T) {
	dir := t.TempDir()
	ran := filepath.Join(dir, "ran")
	apt := filepath.Join(dir, "apt-get")
	if err := os.WriteFile(apt, []byte("#!/bin/sh\necho \"$*\" > "+ran+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	sha := strings.Repeat("ab", 32)
	for _, p := range []Pkg{
		{Name: "-oAcquire::http::Proxy-Auto-Detect", Version: "/tmp/x.sh"},
		{Name: "hello", Version: "-oAPT::Update::Pre-Invoke::=/tmp/x.sh"},
		{Name: "hello", Version: "1.0 -oFoo=bar"},
		{Name: "Hello", Version: "1.0"},
	} {
		p.SHA256, p.Origin = sha, "test"
		c := &Cache{Dir: filepath.Join(dir, "cache"), AptGet: apt}
		_, err := c.Fetch(context.Background(), []Pkg{p})
		if err == nil || !strings.Contains(err.Error(), "refusing to run apt-get") {
			t.Errorf("%s: err = %v, want a refusal", p, err)
		}
		if _, err := os.Stat(ran); err == nil {
			t.Fatalf("%s: apt-get ran", p)
		}
	}
}

// The real apt-get takes PKG=VERSION after "--" (checked against a harmless
// package when apt and the network are there).
func TestRealAptGetAcceptsDoubleDash(t *testing.T) {
	if testing.Short() {
		t.Skip("needs apt-get and the network")
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		t.Skip("no apt-get")
	}
	out, err := exec.Command("apt-cache", "policy", "hello").Output()
	if err != nil {
		t.Skip("no apt-cache")
	}
	var version string
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "Candidate: "); ok && v != "(none)" {
			version = v
		}
	}
	if version == "" {
		t.Skip("apt knows no hello package")
	}
	args, err := downloadArgs([]Pkg{{Name: "hello", Version: version}})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("apt-get", args...)
	cmd.Dir = t.TempDir()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("apt-get %q: %v\n%s", args, err, b)
	}
	if m, _ := filepath.Glob(filepath.Join(cmd.Dir, "hello_*.deb")); len(m) != 1 {
		t.Fatalf("apt-get %q downloaded %v", args, m)
	}
}
