// Package provenance says which fwbuild is running: module version, VCS
// revision, whether the tree was dirty, Go version. `fwbuild version` prints
// it and every build's manifest.json records it, so an image names the exact
// fwbuild that made it.
package provenance

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"time"
)

// Info is fwbuild's provenance as manifest.json records it.
type Info struct {
	Module string `json:"module"`
	// Version is the module version the go command stamped: a tag, a
	// pseudo-version derived from the commit (+dirty for a modified tree),
	// or "(devel)".
	Version string `json:"version"`
	// Revision is the VCS commit the binary was built from, or "unknown".
	Revision string `json:"revision"`
	// Time is the commit's time (RFC 3339), when known.
	Time string `json:"time,omitempty"`
	// Dirty says the working tree had changes the commit does not hold.
	Dirty     bool   `json:"dirty"`
	GoVersion string `json:"go"`
	// Source says where Revision and Dirty come from: "build info" (stamped
	// by `go build`), "git (go run: ...)", or "unknown: <why>".
	Source string `json:"source"`
}

// Source values.
const (
	FromBuildInfo = "build info"
	FromGitGoRun  = "git at start (go run does not stamp VCS information; asked git about the checkout it compiled)"
)

// Current returns the running binary's provenance.
func Current() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return Info{Module: "github.com/fwbuild/fwbuild", Version: "unknown", Revision: "unknown", GoVersion: runtime.Version(),
			Source: "unknown: the binary carries no build information"}
	}
	return fromBuildInfo(bi, goRunCheckout)
}

// fromBuildInfo reads bi; checkout, if the binary has no VCS stamp, returns
// the source directory it can vouch for (see goRunCheckout).
func fromBuildInfo(bi *debug.BuildInfo, checkout func() (string, string)) Info {
	in := Info{Module: bi.Main.Path, Version: bi.Main.Version, Revision: "unknown", GoVersion: bi.GoVersion}
	if in.Version == "" {
		in.Version = "(devel)"
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			in.Revision = s.Value
		case "vcs.time":
			in.Time = s.Value
		case "vcs.modified":
			in.Dirty = s.Value == "true"
		}
	}
	if in.Revision != "unknown" {
		in.Source = FromBuildInfo
		return in
	}
	dir, why := checkout()
	if dir == "" {
		in.Source = "unknown: " + why
		return in
	}
	rev, t, dirty, err := askGit(dir)
	if err != nil {
		in.Source = fmt.Sprintf("unknown: go run binary, but git cannot describe %s: %v", dir, err)
		return in
	}
	in.Revision, in.Time, in.Dirty, in.Source = rev, t, dirty, FromGitGoRun
	return in
}

// goRunCheckout returns the module directory a `go run` binary was compiled
// from. Only then is asking git right: go run compiles the working tree as
// it is, immediately before running it. A binary built elsewhere (go build
// -buildvcs=false, a tarball without .git, a copy) says nothing about the
// checkout now at its compile-time path, so it gets "unknown".
func goRunCheckout() (dir, why string) {
	exe, err := os.Executable()
	if err != nil {
		return "", "cannot find the running binary: " + err.Error()
	}
	if !isGoRunBinary(exe) {
		return "", "the binary was built without VCS stamping (go build -buildvcs=false, outside a git checkout, or a test binary); build it with `go build` in a git checkout"
	}
	_, file, _, ok := runtime.Caller(0)
	if !ok || !filepath.IsAbs(file) {
		return "", "go run binary built with -trimpath: its source directory is unknown"
	}
	// This file is internal/provenance/provenance.go in the module.
	root := filepath.Dir(filepath.Dir(filepath.Dir(file)))
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return "", "go run binary whose source directory " + root + " is gone"
	}
	return root, ""
}

// goCacheEntry is how the go command names a cached executable: <GOCACHE>/<xx>/<sha256>-d/<name>.
var goCacheEntry = regexp.MustCompile(`^[0-9a-f]{64}-d$`)

// isGoRunBinary says whether exe is where `go run` puts what it links: a
// fresh $GOTMPDIR/go-build<N>/b<NNN>/exe/<name>, or (Go >= 1.24) the build
// cache's copy of it, reused only while the compiled sources are unchanged.
func isGoRunBinary(exe string) bool {
	dir := filepath.Dir(exe)
	if filepath.Base(dir) == "exe" && strings.HasPrefix(filepath.Base(filepath.Dir(filepath.Dir(dir))), "go-build") {
		return true
	}
	return goCacheEntry.MatchString(filepath.Base(dir)) && len(filepath.Base(filepath.Dir(dir))) == 2
}

func askGit(dir string) (rev, t string, dirty bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	git := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...)
		cmd.Env = append(os.Environ(), "LC_ALL=C", "GIT_OPTIONAL_LOCKS=0")
		out, err := cmd.Output()
		if err != nil {
			if ee, ok := err.(*exec.ExitError); ok && len(ee.Stderr) > 0 {
				return "", fmt.Errorf("git %s: %s", args[0], strings.TrimSpace(string(ee.Stderr)))
			}
			return "", fmt.Errorf("git %s: %w", args[0], err)
		}
		return strings.TrimSpace(string(out)), nil
	}
	if rev, err = git("rev-parse", "HEAD"); err != nil {
		return "", "", false, err
	}
	if ts, err := git("show", "-s", "--format=%ct", "HEAD"); err == nil {
		var sec int64
		if _, err := fmt.Sscan(ts, &sec); err == nil {
			t = time.Unix(sec, 0).UTC().Format(time.RFC3339)
		}
	}
	// The go command's vcs.modified is the same test.
	st, err := git("status", "--porcelain")
	if err != nil {
		return "", "", false, err
	}
	return rev, t, st != "", nil
}

// Short is one line: the version, the revision and the dirty flag.
func (in Info) Short() string {
	rev := in.Revision
	if len(rev) > 12 {
		rev = rev[:12]
	}
	s := in.Version + " (" + rev
	if in.Dirty {
		s += ", dirty"
	}
	return s + ", " + in.GoVersion + ")"
}

// Text is what `fwbuild version` prints.
func (in Info) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "fwbuild %s\n", in.Version)
	fmt.Fprintf(&b, "  module    %s\n", in.Module)
	dirty := ""
	if in.Dirty {
		dirty = " (dirty: the tree had uncommitted changes)"
	}
	fmt.Fprintf(&b, "  revision  %s%s\n", in.Revision, dirty)
	if in.Time != "" {
		fmt.Fprintf(&b, "  committed %s\n", in.Time)
	}
	fmt.Fprintf(&b, "  go        %s %s/%s\n", in.GoVersion, runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(&b, "  from      %s\n", in.Source)
	return b.String()
}
