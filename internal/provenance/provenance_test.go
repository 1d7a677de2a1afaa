package provenance

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	stamped := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/fwbuild/fwbuild", Version: "v0.0.0-20261201144937-77a7db827daf+dirty"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "77a7db827daff2aa8a14c708539d10a954207aad"}, {Key: "vcs.time", Value: "2026-12-01T14:49:37Z"}, {Key: "vcs.modified", Value: "true"}}}
	never := func() (string, string) { t.Fatal("a stamped binary must not ask git"); return "", "" }
	in := fromBuildInfo(stamped, never)
	if in.Revision != "77a7db827daff2aa8a14c708539d10a954207aad" || !in.Dirty || in.Source != FromBuildInfo || in.Time != "2026-12-01T14:49:37Z" {
		t.Errorf("stamped: %+v", in)
	}
	if s := in.Short(); s != "v0.0.0-20261201144937-77a7db827daf+dirty (77a7db827daf, dirty, go1.26.8)" {
		t.Errorf("Short = %q", s)
	}
	bare := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/fwbuild/fwbuild", Version: "(devel)"}}
	in = fromBuildInfo(bare, func() (string, string) { return "", "no stamp" })
	if in.Revision != "unknown" || in.Dirty || in.Source != "unknown: no stamp" {
		t.Errorf("unstamped, not go run: %+v", in)
	}
	in = fromBuildInfo(bare, func() (string, string) { return t.TempDir(), "" })
	if in.Revision != "unknown" || !strings.HasPrefix(in.Source, "unknown: go run binary, but git cannot describe ") {
		t.Errorf("go run binary outside a checkout: %+v", in)
	}
}

func TestIsGoRunBinary(t *testing.T) {
	for p, want := range map[string]bool{
		"/tmp/go-build3984206156/b001/exe/fwbuild":                                                            true,
		"/root/.cache/go-build/21/213f8830c4ad17b31aa6e31019c6303cb4884a100b09fbfc78a48023e44f6e64-d/fwbuild": true,
		"/usr/local/bin/fwbuild":                      false,
		"/tmp/go-build1/b001/fwbuild.test":            false,
		"/home/me/src/fwbuild/exe/fwbuild":            false,
		"/root/.cache/go-build/21/notahash-d/fwbuild": false,
	} {
		if got := isGoRunBinary(p); got != want {
			t.Errorf("isGoRunBinary(%s) = %v, want %v", p, got, want)
		}
	}
}
