package initramfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/fwbuild/fwbuild/initramfs/internal/closure"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"github.com/u-root/gobusybox/src/pkg/golang"
	"github.com/u-root/mkuimage/cpio"
	"github.com/u-root/mkuimage/uimage"
	"github.com/u-root/uio/llog"
)

// CtldPackage is the import path of the control-domain agent, built into the
// busybox from fwbuild's own sources and started as uinit.
const CtldPackage = "github.com/fwbuild/fwbuild/cmd/ctld"

// goEnv finds the go command the busybox build needs.
func goEnv(ctx context.Context, goCmd string) (bin, goroot string, err error) {
	if goCmd == "" {
		goCmd = "go"
	}
	bin, err = exec.LookPath(goCmd)
	if err != nil {
		return "", "", fmt.Errorf("u-root commands are compiled from source and need the go command (https://go.dev/dl/, or apt-get install golang-go): %w", err)
	}
	out, err := exec.CommandContext(ctx, bin, "env", "GOROOT").Output()
	if err != nil {
		return "", "", fmt.Errorf("%s env GOROOT: %w", bin, err)
	}
	return bin, strings.TrimSpace(string(out)), nil
}

// checkCommands asks go about every command before the busybox build, whose
// errors do not say which command is wrong.
func checkCommands(ctx context.Context, env []string, dir, goBin string, cmds []string) error {
	args := append([]string{"list", "-mod=mod", "-e", "-f", "{{.ImportPath}}\t{{.Name}}\t{{with .Error}}{{.Err}}{{end}}", "--"}, cmds...)
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = dir
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("go list: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.SplitN(line, "\t", 3)
		if len(f) != 3 {
			continue
		}
		switch {
		case f[2] != "":
			return fmt.Errorf("u-root command %s: %s", f[0], oneLine(f[2]))
		case f[1] != "main":
			return fmt.Errorf("u-root command %s is package %s, not a command (package main)", f[0], f[1])
		}
	}
	return nil
}

// buildUroot compiles the commands into one busybox with u-root's init as
// /init, gosh as /bin/sh and ctld as /bin/uinit, and returns the archive's
// nodes.
func buildUroot(ctx context.Context, log *slog.Logger, s *Spec, tmp string) (map[string]*closure.Node, error) {
	cmds := append(append([]string(nil), s.Commands...), CtldPackage)
	names := map[string]string{}
	for _, c := range cmds {
		if c == "" || strings.HasPrefix(c, ".") || path.IsAbs(c) {
			return nil, fmt.Errorf("u-root command %q: give a Go package path such as github.com/u-root/u-root/cmds/core/ls", c)
		}
		n := path.Base(c)
		if prev, ok := names[n]; ok {
			return nil, fmt.Errorf("u-root commands %s and %s are both named %q", prev, c, n)
		}
		names[n] = c
	}
	for _, need := range []string{"init", "gosh"} {
		if _, ok := names[need]; !ok {
			return nil, fmt.Errorf("u-root commands must include %s (github.com/u-root/u-root/cmds/core/%s)", need, need)
		}
	}

	modDir := filepath.Join(tmp, "module")
	if err := writeModule(modDir); err != nil {
		return nil, err
	}
	goBin, goroot, err := goEnv(ctx, s.GoCmd)
	if err != nil {
		return nil, err
	}
	genv := golang.Default(
		golang.DisableCGO(),
		golang.WithGOOS("linux"),
		golang.WithGOARCH(s.arch()),
		golang.WithGO111MODULE("on"),
		golang.WithMod(golang.ModOnly),
		golang.WithGOROOT(goroot),
		golang.WithCompiler(goBin),
		golang.WithWorkingDir(modDir),
		golang.WithBuildTag(s.BuildTags...),
	)
	env := append(os.Environ(), genv.Env()...)
	if err := checkCommands(ctx, env, modDir, goBin, cmds); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	buildDir := filepath.Join(tmp, "build")
	if err := os.MkdirAll(buildDir, 0o755); err != nil {
		return nil, err
	}
	out := filepath.Join(tmp, "uroot.cpio")
	l := &llog.Logger{
		Level: slog.LevelInfo,
		Sink: func(level slog.Level, format string, v ...any) {
			log.Log(ctx, level-4, "u-root: "+fmt.Sprintf(format, v...))
		},
	}
	// uimage runs go without a context: see stopOnCancel.
	stop := stopOnCancel(ctx, tmp)
	err = uimage.Create(l,
		uimage.WithReplaceEnv(genv),
		uimage.WithBaseArchive(uimage.DefaultRamfs()),
		uimage.WithTempDir(buildDir),
		uimage.WithBusyboxCommands(cmds...),
		uimage.WithInit("init"),
		uimage.WithShell("gosh"),
		uimage.WithUinit("ctld"),
		uimage.WithCPIOOutput(out),
	)
	stop()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("u-root busybox build: %w", err)
	}
	return readCPIO(out)
}

// readCPIO loads a newc archive into nodes.
func readCPIO(p string) (map[string]*closure.Node, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(f))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	nodes := map[string]*closure.Node{}
	for _, r := range recs {
		name := path.Clean("/" + r.Name)
		if name == "/" {
			continue
		}
		n := &closure.Node{Path: name, Perm: os.FileMode(r.Mode & 0o7777)}
		var data []byte
		if r.ReaderAt != nil && r.FileSize > 0 {
			data = make([]byte, r.FileSize)
			if _, err := r.ReadAt(data, 0); err != nil && !errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("read %s from %s: %w", name, p, err)
			}
		}
		switch r.Mode & cpio.S_IFMT {
		case cpio.S_IFDIR:
			n.Kind = closure.Dir
		case cpio.S_IFREG:
			n.Kind, n.Data, n.Size = closure.File, data, int64(len(data))
		case cpio.S_IFLNK:
			n.Kind, n.Link, n.Size = closure.Symlink, string(data), int64(len(data))
		case cpio.S_IFCHR:
			n.Kind, n.Major, n.Minor = closure.CharDev, uint32(r.Rmajor), uint32(r.Rminor)
		default:
			return nil, fmt.Errorf("%s in %s: unsupported mode %#o", name, p, r.Mode)
		}
		nodes[name] = n
	}
	return nodes, nil
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
