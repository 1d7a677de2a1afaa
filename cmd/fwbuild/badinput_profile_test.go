package main

// Hostile profiles: fwbuild check (and fetch and build, which load the same
// way) refuse them at the profile's file:line:col and field, run no command
// (a fake apt-get on PATH records any run), read no file outside the
// profile's tree and boards/, and create nothing.

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fwbuild/fwbuild/internal/testdeps"
)

func TestHostileProfiles(t *testing.T) {
	// apt-get on PATH is a fake that records that it ran: for a refused
	// profile it must never run, whatever the command.
	bin := t.TempDir()
	ran := filepath.Join(bin, "apt-get-ran")
	if err := os.WriteFile(filepath.Join(bin, "apt-get"), []byte("#!/bin/sh\necho \"$@\" >> "+ran+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	shadow, _ := os.ReadFile("/etc/shadow")

	sha := strings.Repeat("ab", 32)
	script := filepath.Join(bin, "payload.sh")
	os.WriteFile(script, []byte("#!/bin/sh\ntouch "+ran+"\n"), 0o755)
	cases := []struct {
		name    string
		profile string // added to a qemu-q35 variant, unless it starts with "extends:"
		want    []string
	}{
		{"package is an apt option",
			"components:\n  - name: evil\n    package: \"-oAcquire::http::Proxy-Auto-Detect\"\n    version: " + script + "\n    sha256: " + sha + "\n",
			[]string{"bad.yaml:5:14: components[", `].package: package name "-oAcquire::http::Proxy-Auto-Detect" must start with`}},
		{"version is a script",
			"components:\n  - name: evil\n    package: hello\n    version: " + script + "\n    sha256: " + sha + "\n",
			[]string{"bad.yaml:6:14: components[", "].version: version \"" + script + "\": the upstream version must start with a digit"}},
		{"fragment is /etc/shadow",
			"hypervisor:\n  dom0:\n    kernel:\n      source: linux-source\n      fragment: ../../../../../../../../etc/shadow\n",
			[]string{`bad.yaml:7:17: hypervisor.dom0.kernel.fragment: fragment "../../../../../../../../etc/shadow" resolves to /etc/shadow, outside`}},
		{"fragment is /dev/zero",
			"hypervisor:\n  dom0:\n    kernel:\n      source: linux-source\n      fragment: ../../../../../../../../dev/zero\n",
			[]string{`bad.yaml:7:17: hypervisor.dom0.kernel.fragment: fragment "../../../../../../../../dev/zero" resolves to /dev/zero, outside`}},
		{"kernel path is /etc/shadow",
			"hypervisor:\n  dom0:\n    kernel:\n      path: /etc/shadow\n",
			[]string{`bad.yaml:6:13: hypervisor.dom0.kernel.path: kernel "/etc/shadow" resolves to /etc/shadow, outside`}},
		{"extends /etc/passwd",
			"extends: /etc/passwd\nname: bad\n",
			[]string{`bad.yaml:1:10: extends: base profile "/etc/passwd" resolves to /etc/passwd, outside`}},
		{"guest memory wraps",
			"guests:\n  - {name: huge, memory: 0xFFFFFFFFFFF00000, kernel: dom0}\n",
			// The index counts qemu-q35's own guests first (extends: merges by name).
			[]string{"bad.yaml:4:26: guests[", "].memory: 17592186044415MiB is more than the board's RAM"}},
		{"region wraps past 2^64",
			"outputs:\n  spi:\n    regions:\n      - {name: bios, start: 0xFFFFFFFFFFFF0000, size: 0x20000, firmware: true}\n",
			[]string{"bad.yaml:6:55: outputs.spi.regions[0].size: region \"bios\" start 0xffffffffffff0000 plus size 0x20000 wraps past 2^64"}},
		{"duplicate key with extends",
			"outputs:\n  usb:\n    size: 64MiB\n    size: 128MiB\n",
			[]string{"bad.yaml:6:5: outputs.usb.size: key appears twice"}},
		{"control character in a component name",
			"components:\n  - {name: \"evil\\e[2J\", package: hello, version: \"1.0\", sha256: " + sha + "}\n",
			[]string{"bad.yaml:4:12: components[0].name: has '\\x1b'"}},
		{"300-character region name",
			"outputs:\n  spi:\n    regions:\n      - {name: " + strings.Repeat("v", 300) + ", start: 0, size: 64KiB, preserve: true}\n      - {name: bios, start: 0x10000, size: 0xFF0000, firmware: true}\n",
			[]string{"bad.yaml:6:16: outputs.spi.regions[0].name: ", "is 300 bytes long: at most 64"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			top := t.TempDir()
			cache := filepath.Join(top, "cache")
			out := filepath.Join(top, "out")
			os.MkdirAll(cache, 0o755)
			p := filepath.Join(top, "bad.yaml")
			text := c.profile
			if !strings.HasPrefix(text, "extends:") {
				text = "extends: " + filepath.Join(testdeps.RepoRoot(t), "boards", "qemu-q35.yaml") + "\nname: bad\n" + text
			}
			if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			before := treeFiles(top)
			for _, args := range [][]string{
				{"check", "--board", p},
				{"fetch", "--board", p},
				{"build", "--board", p, "--out", out},
			} {
				code, output := runIn(t, context.Background(), cache, args...)
				if code != 1 {
					t.Fatalf("fwbuild %s: exit %d, want 1:\n%s", args[0], code, output)
				}
				for _, w := range c.want {
					if !strings.Contains(output, w) {
						t.Errorf("fwbuild %s: output does not contain %q:\n%s", args[0], w, output)
					}
				}
				if len(shadow) > 8 && strings.Contains(output, string(shadow[:8])) {
					t.Errorf("fwbuild %s: output shows /etc/shadow:\n%s", args[0], output)
				}
			}
			if _, err := os.Stat(ran); err == nil {
				t.Fatal("apt-get (or the profile's script) ran for a refused profile")
			}
			if after := treeFiles(top); !slices.Equal(before, after) {
				t.Errorf("a refused profile created files:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

// treeFiles lists every path under dir.
func treeFiles(dir string) []string {
	var out []string
	filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err == nil {
			out = append(out, p)
		}
		return nil
	})
	return out
}
