package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/fwbuild/fwbuild/internal/provenance"
	"github.com/fwbuild/fwbuild/internal/testdeps"
)

// commandPaths lists every command fwbuild has, as the words that name it.
func commandPaths() [][]string {
	var out [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		for _, s := range c.Commands() {
			p := append(append([]string{}, path...), s.Name())
			out = append(out, p)
			walk(s, p)
		}
	}
	root := (&env{}).rootCommand()
	root.InitDefaultCompletionCmd()
	root.InitDefaultHelpCmd()
	walk(root, nil)
	return out
}

// Every command takes the global flags after its name (and before it), and
// --help on each shows its usage with an example.
func TestGlobalFlagsAfterCommand(t *testing.T) {
	cache := t.TempDir()
	paths := commandPaths()
	if len(paths) < 12 {
		t.Fatalf("only %d commands found: %v", len(paths), paths)
	}
	for _, p := range paths {
		if p[0] == "help" {
			continue
		}
		name := "fwbuild " + strings.Join(p, " ")
		for _, args := range [][]string{
			append(append(append([]string{}, p...), "--json", "--boards", "../../boards", "--cache", cache, "-v"), "--help"),
			append(append([]string{"--json", "-v", "--cache", cache}, p...), "--help"),
		} {
			var out, errb bytes.Buffer
			code := run(context.Background(), args, &out, &errb)
			if code != 0 || !strings.Contains(out.String(), "usage: "+name) {
				t.Errorf("%v: exit %d, want 0 and the usage of %s:\n%s%s", args, code, name, out.String(), errb.String())
			}
			if !strings.Contains(out.String(), "examples:\n") && p[0] != "completion" {
				t.Errorf("%s --help has no examples:\n%s", name, out.String())
			}
		}
	}
	// And they take effect there.
	for _, args := range [][]string{
		{"boards", "--json"},
		{"check", "--board", "qemu-q35", "--json"},
		{"version", "--json"},
	} {
		code, out, errs := runCLI(t, args...)
		if code != 0 || !json.Valid([]byte(out)) {
			t.Errorf("fwbuild %v: exit %d, want JSON on stdout:\n%s%s", args, code, out, errs)
		}
	}
	var out, errb bytes.Buffer
	t.Chdir(t.TempDir())
	if code := run(context.Background(), []string{"boards", "--cache", cache}, &out, &errb); code != 0 || !strings.Contains(out.String(), "qemu-q35") {
		t.Errorf("boards --cache DIR (built-in boards): exit %d:\n%s%s", code, out.String(), errb.String())
	}
}

func TestBuildJSONAfterCommand(t *testing.T) {
	cache := seededCache(t, true)
	code, out, errs := runCLIJSON(t, cache, "build", "--board", "qemu-q35", "--out", t.TempDir(), "--json")
	var res struct {
		Artefacts []struct{ Name string } `json:"artefacts"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || len(res.Artefacts) < 8 {
		t.Fatalf("build --json: exit %d, want the result as JSON on stdout:\n%s\n%s", code, out, errs)
	}
}

func runCLIJSON(t *testing.T, cache string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"--boards", "../../boards", "--cache", cache}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// Command lines written for the flag-package fwbuild still work.
func TestOldSpellings(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-json", "boards"}, 0, `"name": "qemu-q35"`},
		{[]string{"boards", "-json"}, 0, `"name": "qemu-q35"`},
		{[]string{"check", "-board", "qemu-q35"}, 0, "chip_size: 32MiB"},
		{[]string{"check", "-board=qemu-q35", "-json"}, 0, `"ChipSize"`},
		{[]string{"check", "-help"}, 0, "usage: fwbuild check"},
		{[]string{"test", "-board", "qemu-q35", "-path", "floppy"}, 2, `--path "floppy"`},
		{[]string{"check", "-bogus"}, 2, "flag provided but not defined"},
	} {
		code, out, errs := runCLI(t, c.args...)
		if code != c.code || !strings.Contains(out+errs, c.want) {
			t.Errorf("fwbuild %v: exit %d, want %d and %q:\n%s%s", c.args, code, c.code, c.want, out, errs)
		}
	}
	if got := oldSpellings((&env{}).rootCommand(), []string{"flash", "spi", "-programmer", "-v", "--", "-board"}); strings.Join(got, " ") != "flash spi --programmer -v -- -board" {
		t.Errorf("a flag's value and what follows -- must stay as given: %v", got)
	}
}

// goBuild builds fwbuild from the module in dir into a temporary directory.
func goBuild(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "fwbuild")
	// -buildvcs=true: a go env file (GOFLAGS) may turn stamping off.
	cmd := exec.Command("go", "build", "-buildvcs=true", "-o", bin, "./cmd/fwbuild")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build in %s: %v\n%s", dir, err, out)
	}
	return bin
}

func needTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s not found: run `fwbuild doctor --fix`", name)
	}
}

// The bash completion script parses, and completes --board with the boards' names.
func TestCompletionBash(t *testing.T) {
	needTool(t, "bash")
	const bashCompletion = "/usr/share/bash-completion/bash_completion"
	if _, err := os.Stat(bashCompletion); err != nil {
		t.Fatalf("%v: install bash-completion (`fwbuild doctor --fix`): cobra's bash completion runs on it", err)
	}
	code, script, errs := runCLI(t, "completion", "bash")
	if code != 0 || !strings.Contains(script, "__start_fwbuild") {
		t.Fatalf("completion bash: exit %d:\n%s", code, errs)
	}
	p := filepath.Join(t.TempDir(), "fwbuild.bash")
	os.WriteFile(p, []byte(script), 0o644)
	if out, err := exec.Command("bash", "-n", p).CombinedOutput(); err != nil {
		t.Fatalf("bash -n: %v\n%s", err, out)
	}
	for _, shell := range []string{"zsh", "fish"} {
		if code, out, errs := runCLI(t, "completion", shell); code != 0 || !strings.Contains(out, "fwbuild") {
			t.Errorf("completion %s: exit %d:\n%s", shell, code, errs)
		}
	}
	// The script runs the binary (fwbuild __complete ...) for the candidates.
	bin := goBuild(t, testdeps.RepoRoot(t))
	complete := func(line string) []string {
		t.Helper()
		words := strings.Fields(line)
		if strings.HasSuffix(line, " ") {
			words = append(words, "")
		}
		quoted := make([]string, len(words))
		for i, w := range words {
			quoted[i] = "'" + w + "'"
		}
		drive := "source " + bashCompletion + "\nsource " + p + "\nCOMP_WORDS=(" + strings.Join(quoted, " ") + ")\nCOMP_CWORD=" + itoa(len(words)-1) +
			"\nCOMP_LINE='" + line + "'\nCOMP_POINT=${#COMP_LINE}\n__start_fwbuild\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n"
		cmd := exec.Command("bash", "--norc", "--noprofile", "-c", drive)
		cmd.Dir = testdeps.RepoRoot(t) // ./boards
		cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(bin)+string(os.PathListSeparator)+os.Getenv("PATH"), "FWBUILD_CACHE="+t.TempDir())
		// Only stdout: outside a real completion, bash says so about compopt on stderr.
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("completing %q: %v\n%s", line, err, out)
		}
		return strings.Fields(string(out))
	}
	if got := complete("fwbuild build --board "); !contains(got, "qemu-q35") || !contains(got, "qemu-q35-ovmf2m") {
		t.Errorf("fwbuild build --board <TAB>: %v, want the boards' names", got)
	}
	if got := complete("fwbuild flash spi --board qemu-q35-o"); strings.Join(got, " ") != "qemu-q35-ovmf2m" {
		t.Errorf("fwbuild flash spi --board qemu-q35-o<TAB>: %v, want qemu-q35-ovmf2m", got)
	}
	if got := complete("fwbuild bo"); strings.Join(got, " ") != "boards" {
		t.Errorf("fwbuild bo<TAB>: %v, want boards", got)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func itoa(n int) string { return strconv.Itoa(n) }

// A binary built from a clone names the clone's commit, in `version` and in
// a build's manifest.json; built from a modified tree, it says dirty.
func TestVersionFromClone(t *testing.T) {
	needTool(t, "git")
	src := filepath.Join(t.TempDir(), "src")
	if out, err := exec.Command("git", "clone", "--quiet", "--no-hardlinks", testdeps.RepoRoot(t), src).CombinedOutput(); err != nil {
		t.Fatalf("git clone: %v\n%s", err, out)
	}
	head, err := exec.Command("git", "-C", src, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	rev := strings.TrimSpace(string(head))
	version := func(bin string) provenance.Info {
		t.Helper()
		out, err := exec.Command(bin, "version", "--json").Output()
		var in provenance.Info
		if err != nil || json.Unmarshal(out, &in) != nil {
			t.Fatalf("%s version --json: %v\n%s", bin, err, out)
		}
		return in
	}
	bin := goBuild(t, src)
	in := version(bin)
	if in.Revision != rev || in.Dirty || in.Source != provenance.FromBuildInfo || in.GoVersion != runtime.Version() || in.Module != "github.com/fwbuild/fwbuild" {
		t.Errorf("clean clone at %s: version says %+v", rev, in)
	}
	if out, err := exec.Command(bin, "--version").Output(); err != nil || !strings.Contains(string(out), rev[:12]) || strings.Contains(string(out), "dirty") {
		t.Errorf("--version: %v %q, want %s and no dirty", err, out, rev[:12])
	}

	// A build's manifest records the same (the kernel alone is a build: it is cached).
	out := t.TempDir()
	cmd := exec.Command(bin, "--cache", seededCache(t, true), "--boards", filepath.Join(src, "boards"), "build", "--board", "qemu-q35", "--only", "kernel", "--out", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build --only kernel: %v\n%s", err, b)
	}
	var m struct{ Fwbuild provenance.Info }
	if b, err := os.ReadFile(filepath.Join(out, "manifest.json")); err != nil || json.Unmarshal(b, &m) != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	if m.Fwbuild != in {
		t.Errorf("manifest.json records %+v, version says %+v", m.Fwbuild, in)
	}

	// A change the commit does not hold makes it dirty.
	if err := os.WriteFile(filepath.Join(src, "README.md"), []byte("changed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	in = version(goBuild(t, src))
	if in.Revision != rev || !in.Dirty || !strings.HasSuffix(in.Version, "+dirty") {
		t.Errorf("modified clone: version says %+v, want %s, dirty", in, rev)
	}
}
