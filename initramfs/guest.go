package initramfs

import (
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/fwbuild/fwbuild/boardcfg"
	"github.com/fwbuild/fwbuild/initramfs/internal/closure"
)

// GuestInitPackage is the import path of the guests' init, built from
// fwbuild's own sources.
const GuestInitPackage = "github.com/fwbuild/fwbuild/cmd/guestinit"

// GuestSpec says how to build a guest initramfs.
type GuestSpec struct {
	// Epoch is every entry's mtime; the zero value means the Unix epoch.
	Epoch time.Time
	// GoCmd is the go command; default "go" on PATH.
	GoCmd string
	// TempDir holds build files, removed afterwards; default os.TempDir().
	TempDir string
	// Compression defaults to xz.
	Compression boardcfg.Compression
}

// Guest builds the initramfs of a test guest: guestinit, compiled
// static for linux/amd64, as /init, and /dev/console. The same spec and Go
// toolchain give the same bytes.
func Guest(ctx context.Context, s GuestSpec) ([]byte, error) {
	if err := checkArchiveSpec("guest initramfs", &s.Compression, s.Epoch); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(s.TempDir, "fwbuild-guestinit-")
	if err != nil {
		return nil, fmt.Errorf("guest initramfs: %w", err)
	}
	defer os.RemoveAll(tmp)
	initBin, err := buildGuestInit(ctx, s.GoCmd, tmp)
	if err != nil {
		return nil, fmt.Errorf("guest initramfs: %w", err)
	}
	nodes := map[string]*closure.Node{
		"/init":        {Path: "/init", Kind: closure.File, Perm: 0o755, Data: initBin, Size: int64(len(initBin))},
		"/dev/console": {Path: "/dev/console", Kind: closure.CharDev, Perm: 0o600, Major: 5, Minor: 1},
	}
	addParents(nodes)
	var raw bytes.Buffer
	if _, err := writeCPIO(&raw, nodes, s.Epoch.Unix()); err != nil {
		return nil, fmt.Errorf("guest initramfs: %w", err)
	}
	var data []byte
	if s.Compression == boardcfg.XZ {
		// The kernel allocates the whole dictionary before it unpacks: xz -9's
		// 64 MiB does not fit a small guest, and the archive is ~2 MB anyway.
		data, err = xzTool(ctx, raw.Bytes(), "--lzma2=preset=9e,dict=2MiB")
	} else {
		data, err = compress(ctx, s.Compression, raw.Bytes())
	}
	if err != nil {
		return nil, fmt.Errorf("guest initramfs: compress: %w", err)
	}
	return data, nil
}

// buildGuestInit compiles guestinit from the embedded module. -trimpath and
// an empty build ID keep the temporary directory out of the binary; -s -w
// drop the symbol table and DWARF, half its size.
func buildGuestInit(ctx context.Context, goCmd, tmp string) ([]byte, error) {
	modDir := filepath.Join(tmp, "module")
	if err := writeModule(modDir); err != nil {
		return nil, err
	}
	goBin, _, err := goEnv(ctx, goCmd)
	if err != nil {
		return nil, err
	}
	out := filepath.Join(tmp, "init")
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-buildvcs=false",
		"-ldflags=-s -w -buildid=", "-o", out, GuestInitPackage)
	cmd.Dir = modDir
	// Static: the guest's initramfs has no C library.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GO111MODULE=on", "GOFLAGS=-mod=mod", "GOWORK=off")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go build %s: %w: %s", GuestInitPackage, err, strings.TrimSpace(stderr.String()))
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, err
	}
	if err := checkStatic(b); err != nil {
		return nil, fmt.Errorf("%s: %w", GuestInitPackage, err)
	}
	return b, nil
}

// checkStatic rejects an ELF that needs a dynamic loader, which the guest
// does not have.
func checkStatic(b []byte) error {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("not an ELF executable: %w", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("dynamically linked (has PT_INTERP); build with CGO_ENABLED=0")
		}
	}
	return nil
}
