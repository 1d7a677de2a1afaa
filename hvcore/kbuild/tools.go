package kbuild

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
)

type toolchainInfo struct {
	cc       []string // compiler command (CC make variable, default gcc)
	compiler string   // first line of `cc --version`
	linker   string   // first line of `ld --version`
	// compressors are the first lines of `xz --version` and `zstd --version`:
	// the bzImage's payload is their output (CONFIG_KERNEL_XZ, _ZSTD).
	compressors map[string]string
}

// toolchain identifies the compiler and linker for the cache key: a compiler upgrade
// changes the output bytes, so it must change the key.
func toolchain(ctx context.Context, vars map[string]string) (toolchainInfo, error) {
	cc := strings.Fields(vars["CC"])
	if len(cc) == 0 {
		cc = []string{"gcc"}
	}
	ld := strings.Fields(vars["LD"])
	if len(ld) == 0 {
		ld = []string{"ld"}
	}
	var t toolchainInfo
	t.cc = cc
	var err error
	if t.compiler, err = versionLine(ctx, cc, "gcc"); err != nil {
		return t, err
	}
	if t.linker, err = versionLine(ctx, ld, "binutils"); err != nil {
		return t, err
	}
	t.compressors = map[string]string{}
	for _, c := range compressorTools {
		// A missing one is reported with every other missing tool by
		// checkTools, before a cold build needs it.
		if t.compressors[c.name], err = versionLine(ctx, []string{c.name}, c.pkg); err != nil {
			t.compressors[c.name] = "missing"
		}
	}
	return t, nil
}

func versionLine(ctx context.Context, argv []string, pkg string) (string, error) {
	if _, err := exec.LookPath(argv[0]); err != nil {
		return "", missingError([]string{argv[0]}, []string{pkg})
	}
	out, err := exec.CommandContext(ctx, argv[0], append(argv[1:], "--version")...).Output()
	if err != nil {
		return "", fmt.Errorf("kbuild: %s --version: %w", strings.Join(argv, " "), err)
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line), nil
}

// tool is a program a kernel build runs and the Debian package providing it.
type tool struct{ name, pkg string }

// compressorTools make the bzImage's payload: their versions are part of the key.
var compressorTools = []tool{{"xz", "xz-utils"}, {"zstd", "zstd"}}

// buildTools are the programs a kernel build runs.
var buildTools = append([]tool{
	{"make", "make"},
	{"bc", "bc"},
	{"bison", "bison"},
	{"flex", "flex"},
	{"perl", "perl"},
	{"tar", "tar"},
	{"objcopy", "binutils"},
}, compressorTools...)

// buildHeaders are host headers the build tools (objtool, the kconfig and signing helpers)
// compile against.
var buildHeaders = []struct{ name, pkg string }{
	{"libelf.h", "libelf-dev"},
	{"openssl/opensslv.h", "libssl-dev"},
}

// checkTools reports every missing tool and header at once, with the apt-get line.
func checkTools(ctx context.Context, cc []string) error {
	var names, pkgs []string
	for _, t := range buildTools {
		if _, err := exec.LookPath(t.name); err != nil {
			names, pkgs = append(names, t.name), append(pkgs, t.pkg)
		}
	}
	for _, h := range buildHeaders {
		cmd := exec.CommandContext(ctx, cc[0], append(cc[1:], "-E", "-x", "c", "-o", "/dev/null", "-")...)
		cmd.Stdin = strings.NewReader("#include <" + h.name + ">\n")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			names, pkgs = append(names, h.name), append(pkgs, h.pkg)
		}
	}
	if len(names) > 0 {
		return missingError(names, pkgs)
	}
	return nil
}

func missingError(names, pkgs []string) error {
	seen := map[string]bool{}
	var uniq []string
	for _, p := range pkgs {
		if !seen[p] {
			seen[p] = true
			uniq = append(uniq, p)
		}
	}
	return fmt.Errorf("kbuild: missing kernel build tools: %s; install them with: apt-get install -y %s",
		strings.Join(names, ", "), strings.Join(uniq, " "))
}
