package initramfs

import (
	"bytes"
	"context"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/fwbuild/fwbuild"
	"github.com/fwbuild/fwbuild/initramfs/internal/q35test"
	"golang.org/x/mod/modfile"
	"golang.org/x/tools/txtar"
)

func TestBuildRejectsBadToolstackFast(t *testing.T) {
	// Toolstack errors come before the slow u-root build.
	s := q35Spec(t)
	s.Toolstack = append(s.Toolstack, "usr/sbin/not-in-any-package")
	_, err := Build(context.Background(), s)
	if err == nil || !strings.Contains(err.Error(), "/usr/sbin/not-in-any-package") {
		t.Errorf("Build: %v", err)
	}
	// A library missing from the roots, named with who needs it.
	root := t.TempDir()
	for _, p := range []string{"usr/lib/xen-4.17/bin/xl", "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"} {
		b, err := os.ReadFile(q35test.Find(t, p))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "lib64"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", filepath.Join(root, "lib64/ld-linux-x86-64.so.2")); err != nil {
		t.Fatal(err)
	}
	s = q35Spec(t)
	s.Roots, s.Toolstack, s.Modules = []string{root}, []string{"usr/lib/xen-4.17/bin/xl"}, nil
	_, err = Build(context.Background(), s)
	if err == nil || !strings.Contains(err.Error(), "library libxlutil.so.4.17 needed by /usr/lib/xen-4.17/bin/xl") {
		t.Errorf("Build with a library missing: %v", err)
	}

	s = q35Spec(t)
	s.Compression = "gzip"
	if _, err := Build(context.Background(), s); err == nil || !strings.Contains(err.Error(), `compression "gzip"`) {
		t.Errorf("Build with gzip: %v", err)
	}
}

func TestBuildRejectsBadCommands(t *testing.T) {
	needTool(t, "go", "golang-go")
	for _, tc := range []struct {
		cmd, want string
	}{
		{"github.com/u-root/u-root/cmds/core/nope", "u-root command github.com/u-root/u-root/cmds/core/nope:"},
		{"github.com/u-root/u-root/pkg/cmdline", "u-root command github.com/u-root/u-root/pkg/cmdline is package cmdline, not a command"},
		{"./cmds/core/ls", `u-root command "./cmds/core/ls": give a Go package path`},
		{"github.com/u-root/u-root/cmds/core/ls", "both named \"ls\""},
	} {
		s := q35Spec(t)
		s.Commands = append(s.Commands, tc.cmd)
		_, err := Build(context.Background(), s)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Build with %s: %v, want error containing %q", tc.cmd, err, tc.want)
		}
	}
	s := q35Spec(t)
	s.Commands = s.Commands[1:] // no init
	if _, err := Build(context.Background(), s); err == nil || !strings.Contains(err.Error(), "must include init") {
		t.Errorf("Build without init: %v", err)
	}
}

// The generated build module must require the u-root fwbuild's go.mod
// pins and every module the control domain's sources import, at the
// versions fwbuild's go.mod selects, with checksums for each: otherwise the
// offline busybox build fails on a board's machine, not here.
func TestEmbeddedModuleUpToDate(t *testing.T) {
	files := map[string][]byte{}
	for _, f := range txtar.Parse(buildModule).Files {
		files[f.Name] = f.Data
	}
	for _, name := range []string{"go.mod", "go.sum", "tools.go"} {
		if len(files[name]) == 0 {
			t.Fatalf("module.txtar has no %s: run go generate ./initramfs", name)
		}
	}
	for name := range files {
		if strings.HasSuffix(name, ".go") && name != "tools.go" {
			t.Errorf("module.txtar holds a copy of %s: the control domain is built from the real sources", name)
		}
	}
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	main, err := modfile.Parse("go.mod", gomod, nil)
	if err != nil {
		t.Fatal(err)
	}
	built, err := modfile.Parse("module.txtar/go.mod", files["go.mod"], nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, r := range main.Require {
		want[r.Mod.Path] = r.Mod.Version
	}
	have := map[string]string{}
	for _, r := range built.Require {
		have[r.Mod.Path] = r.Mod.Version
	}
	needed := map[string]bool{"github.com/u-root/u-root": true}
	for _, f := range fwbuild.ControlDomainSources() {
		pf, err := parser.ParseFile(token.NewFileSet(), f.Path, f.Data, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, im := range pf.Imports {
			p, _ := strconv.Unquote(im.Path.Value)
			if !strings.Contains(strings.Split(p, "/")[0], ".") || strings.HasPrefix(p, main.Module.Mod.Path+"/") {
				continue // the standard library, or fwbuild's own packages
			}
			mod := ""
			for m := range want {
				if (p == m || strings.HasPrefix(p, m+"/")) && len(m) > len(mod) {
					mod = m
				}
			}
			if mod == "" {
				t.Errorf("%s imports %s, which fwbuild's go.mod does not require", f.Path, p)
				continue
			}
			needed[mod] = true
		}
	}
	for mod := range needed {
		if have[mod] != want[mod] {
			t.Errorf("module.txtar requires %s %q, fwbuild's go.mod %q: run go generate ./initramfs", mod, have[mod], want[mod])
		}
		if !bytes.Contains(files["go.sum"], []byte(mod+" "+want[mod]+" h1:")) {
			t.Errorf("module.txtar's go.sum has no checksum for %s %s: run go generate ./initramfs", mod, want[mod])
		}
	}
}
