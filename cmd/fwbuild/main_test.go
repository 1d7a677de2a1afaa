package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"--boards", "../../boards"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func TestExitCodes(t *testing.T) {
	cases := []struct {
		args []string
		code int
		want string // in stdout+stderr
	}{
		{[]string{"boards"}, 0, "qemu-q35"},
		{[]string{"check", "--board", "qemu-q35"}, 0, "chip_size: 32MiB"},
		{[]string{"check"}, 2, "--board is required"},
		{[]string{"check", "--board", "qemu-q35", "--bogus"}, 2, "flag provided but not defined"},
		{[]string{"check", "--board", "no-such-board"}, 1, `no board "no-such-board"`},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{}, 2, "usage: fwbuild"},
		{[]string{"check", "-h"}, 0, "usage: fwbuild check"},
		{[]string{"fetch", "-h"}, 0, "usage: fwbuild fetch"},
		{[]string{"doctor", "-h"}, 0, "usage: fwbuild doctor"},
	}
	for _, c := range cases {
		code, out, errs := runCLI(t, c.args...)
		if code != c.code || !strings.Contains(out+errs, c.want) {
			t.Errorf("fwbuild %v: exit %d, want %d; output lacks %q?\n%s%s", c.args, code, c.code, c.want, out, errs)
		}
	}
}

func TestCheckBadProfileNamesFileAndLine(t *testing.T) {
	data, _ := os.ReadFile("../../boards/qemu-q35.yaml")
	vpd := "      - {name: vpd,"
	vpdLine := strings.Count(string(data[:strings.Index(string(data), vpd)]), "\n") + 1
	for _, c := range []struct{ old, new, want string }{
		{"chip_size: 32MiB", "chip_size: 32 megs", "outputs.spi.chip_size"},
		// A name the image stage and flashrom would refuse fails check, not the build.
		{vpd, "      - {name: " + strings.Repeat("v", 65) + ",", fmt.Sprintf("bad.yaml:%d:16: outputs.spi.regions[1].name: ", vpdLine)},
		{vpd, "      - {name: \"v p d\",", fmt.Sprintf("bad.yaml:%d:16: outputs.spi.regions[1].name: ", vpdLine)},
	} {
		p := filepath.Join(t.TempDir(), "bad.yaml")
		os.WriteFile(p, []byte(strings.Replace(string(data), c.old, c.new, 1)), 0o644)
		code, _, errs := runCLI(t, "check", "--board", p)
		if code != 1 || !strings.Contains(errs, "bad.yaml:") || !strings.Contains(errs, c.want) {
			t.Errorf("%q: exit %d, stderr %s", c.new, code, errs)
		}
	}
}

func TestBoardsJSON(t *testing.T) {
	code, out, errs := runCLI(t, "--json", "boards")
	var rows []struct{ Name, Description, Error string }
	if code != 0 || json.Unmarshal([]byte(out), &rows) != nil || len(rows) == 0 {
		t.Fatalf("exit %d: %s %s", code, out, errs)
	}
	for _, r := range rows {
		if r.Error != "" {
			t.Errorf("board %s invalid: %s", r.Name, r.Error)
		}
	}
}

// The built-in boards let an installed binary work outside the repository.
func TestBuiltinBoards(t *testing.T) {
	var out, errb bytes.Buffer
	t.Chdir(t.TempDir())
	code := run(context.Background(), []string{"--cache", t.TempDir(), "boards"}, &out, &errb)
	if code != 0 || !strings.Contains(out.String(), "qemu-q35") {
		t.Fatalf("exit %d: %s %s", code, out.String(), errb.String())
	}
}

// A line ctld printed while the shell waited is printed without the prompt
// in front of it; nothing else about a line changes.
func TestWithoutPrompt(t *testing.T) {
	for in, want := range map[string]string{
		"$ fwbuild-ctld: guest demo running domid=1":  "fwbuild-ctld: guest demo running domid=1",
		"$ $ fwbuild-ctld: ready xen=4.17.7":          "fwbuild-ctld: ready xen=4.17.7",
		" $ xen 4.17.7, dom0 511 MiB":                 "xen 4.17.7, dom0 511 MiB",
		"[guest demo] fwbuild-guest demo: up domid=1": "[guest demo] fwbuild-guest demo: up domid=1",
		"(XEN) Xen version 4.17.7 (Debian $ 4.17.7)":  "(XEN) Xen version 4.17.7 (Debian $ 4.17.7)",
		"demo   yes        not running  -      -":     "demo   yes        not running  -      -",
		"$5 is not a prompt":                          "$5 is not a prompt",
	} {
		if got := withoutPrompt(in); got != want {
			t.Errorf("withoutPrompt(%q) = %q, want %q", in, got, want)
		}
	}
}
