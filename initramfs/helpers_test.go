package initramfs

import (
	"os/exec"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/initramfs/internal/q35test"
)

// q35Spec is the qemu-q35 control domain.
func q35Spec(t testing.TB) Spec {
	return Spec{
		Commands:  q35test.Commands(t),
		BuildTags: DefaultBuildTags(),
		Roots:     q35test.Roots(t),
		Toolstack: q35test.Toolstack(t),
		Modules:   q35test.Modules,
		Symlinks:  q35test.Symlinks(t),
		Extra:     []File{{Path: "/etc/hostname", Data: []byte("dom0\n")}, {Path: "etc/fwbuild/hello", Data: []byte("#!/bin/sh\necho hi\n"), Mode: 0o755}},
		Epoch:     time.Unix(1700000000, 0),
		TempDir:   t.TempDir(),
	}
}

func needTool(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: apt-get install -y %s", name, pkg)
	}
	return p
}
