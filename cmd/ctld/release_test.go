package main

import (
	"context"
	"strings"
	"testing"
)

func TestStartReportsVersion(t *testing.T) {
	a, _, sys, out := world(t)
	sys.files["/proc/cmdline"] = "console=hvc0 fwbuild.version=1.4.0+3f2a9c1e\n"
	if err := a.start(context.Background()); err != nil {
		t.Fatalf("start: %v\noutput: %s", err, out)
	}
	if !strings.HasPrefix(out.String(), "fwbuild-ctld: payload version=1.4.0+3f2a9c1e\nfwbuild-ctld: ready ") || a.version != "1.4.0+3f2a9c1e" {
		t.Errorf("output %q, version %q", out, a.version)
	}

	a, _, sys, out = world(t)
	sys.files["/proc/cmdline"] = "console=hvc0 fwbuild.version=1.4\n"
	if err := a.start(context.Background()); err == nil || !strings.Contains(out.String(), "FAILED version: fwbuild.version: update: version \"1.4\"") {
		t.Errorf("bad version: err %v, output %q", err, out)
	}
}
