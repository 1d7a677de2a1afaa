package initramfs

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fwbuild/fwbuild/initramfs/internal/q35test"
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

func TestEmbeddedModuleUpToDate(t *testing.T) {
	files := map[string][]byte{}
	for _, f := range txtar.Parse(urootModule).Files {
		files[f.Name] = f.Data
	}
	for _, dir := range []string{"ctld", "guestinit"} {
		srcs, err := filepath.Glob("../cmd/" + dir + "/*.go")
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, s := range srcs {
			if strings.HasSuffix(s, "_test.go") {
				continue
			}
			n++
			b, err := os.ReadFile(s)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(files["cmd/"+dir+"/"+filepath.Base(s)], b) {
				t.Errorf("uroot.txtar has an old copy of %s: run go generate ./initramfs", s)
			}
		}
		for name := range files {
			if strings.HasPrefix(name, "cmd/"+dir+"/") {
				n--
			}
		}
		if n != 0 {
			t.Errorf("uroot.txtar and cmd/%s hold different files: run go generate ./initramfs", dir)
		}
	}
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	want := urootRequire(string(gomod))
	if want == "" || urootRequire(string(files["go.mod"])) != want {
		t.Errorf("uroot.txtar's go.mod does not require %s as ../go.mod does: run go generate ./initramfs", want)
	}
}

func urootRequire(gomod string) string {
	for _, l := range strings.Split(gomod, "\n") {
		f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(l), "require "))
		if len(f) >= 2 && f[0] == "github.com/u-root/u-root" {
			return f[0] + " " + f[1]
		}
	}
	return ""
}
