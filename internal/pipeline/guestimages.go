package pipeline

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/fwbuild/fwbuild/contract"
	"github.com/fwbuild/fwbuild/initramfs"
	"github.com/fwbuild/fwbuild/internal/atomicfile"
)

// guestImagesManifest is the manifest's file in the guest-images stage.
const guestImagesManifest = "guest-images.json"

// guestImages builds the board's guest images: for each, its kernel, its
// initrd and (for an image fwbuild assembles) its root file system, as
// <dir>/<image>/<file>, and the manifest listing them with their sizes,
// SHA-256, path on the install media and URL. The files go to the install
// media's images partition and the output directory, never into the flash;
// the manifest goes into the control domain (see payload).
func (r *run) guestImages(ctx context.Context) (stageResult, error) {
	b := r.Board
	var ids []string
	for _, g := range b.GuestImages {
		for _, c := range []string{g.Kernel, g.Initrd, g.Busybox, g.ModulesFrom} {
			name, _, _ := strings.Cut(c, ":")
			if comp, ok := b.Component(name); ok {
				ids = append(ids, name+"="+string(comp.SHA256)+":"+jsonKey(comp.Files))
			}
		}
	}
	tools := toolVersions(ctx, "xz")
	tools["mke2fs"] = e2fsprogsVersion(ctx)
	k := key("guestimages/1", r.tool, jsonKey(b.GuestImages), b.GuestImagesURL, jsonKey(ids), r.Epoch.UTC().Format(time.RFC3339), jsonKey(tools))
	return r.stage(ctx, "guestimages", k, func(dir string) error {
		var m contract.GuestImages
		for i, g := range b.GuestImages {
			if err := ctx.Err(); err != nil {
				return err
			}
			at := b.Loc(fmt.Sprintf("guest_images[%d]", i))
			out := filepath.Join(dir, g.Name)
			if err := os.MkdirAll(out, 0o755); err != nil {
				return err
			}
			kc, kr := g.KernelRef()
			kernel, err := r.comps.File(kc, kr, b)
			if err != nil {
				return fmt.Errorf("guest image %s (%s): kernel: %w", g.Name, at, err)
			}
			if err := copyFile(kernel, filepath.Join(out, contract.GuestImageKernel)); err != nil {
				return fmt.Errorf("guest image %s: %w", g.Name, err)
			}
			files := []string{contract.GuestImageKernel, contract.GuestImageInitrd}
			if g.BuildsRoot() {
				bc, br := splitRef(g.Busybox, "busybox")
				bb, err := r.comps.File(bc, br, b)
				if err != nil {
					return fmt.Errorf("guest image %s (%s): busybox: %w", g.Name, at, err)
				}
				gos, err := initramfs.BuildGuestOS(ctx, initramfs.GuestOSSpec{
					Name: g.Name, Busybox: bb, Roots: []string{r.comps[kc].Root}, Modules: g.Modules,
					RootSize: int64(g.RootSize), Epoch: r.Epoch, TempDir: dir,
				}, filepath.Join(out, contract.GuestImageRoot))
				if err != nil {
					return fmt.Errorf("%w (%s)", err, at)
				}
				if err := atomicfile.WriteFile(filepath.Join(out, contract.GuestImageInitrd), gos.Initrd, 0o644); err != nil {
					return err
				}
				files = append(files, contract.GuestImageRoot)
			} else {
				ic, ir := splitRef(g.Initrd, "")
				initrd, err := r.comps.File(ic, ir, b)
				if err != nil {
					return fmt.Errorf("guest image %s (%s): initrd: %w", g.Name, at, err)
				}
				data, err := os.ReadFile(initrd)
				if err != nil {
					return fmt.Errorf("guest image %s: %w", g.Name, err)
				}
				if len(g.Modules) > 0 {
					extra, err := initramfs.InstallerExtras(g.Name, []string{r.comps[g.ModulesComponent()].Root}, g.Modules, r.Epoch)
					if err != nil {
						return fmt.Errorf("%w (%s)", err, at)
					}
					data = appendArchive(data, extra)
				}
				if err := os.WriteFile(filepath.Join(out, contract.GuestImageInitrd), data, 0o644); err != nil {
					return err
				}
			}
			for _, f := range files {
				sum, n, err := atomicfile.HashFile(filepath.Join(out, f))
				if err != nil {
					return fmt.Errorf("guest image %s: %w", g.Name, err)
				}
				e := contract.GuestImageFile{Image: g.Name, Name: f, Size: n, SHA256: sum, MediaPath: g.Name + "/" + f}
				if b.GuestImagesURL != "" {
					e.URL = strings.TrimSuffix(b.GuestImagesURL, "/") + "/" + contract.GuestImageArtefact(g.Name, f)
				}
				m.Files = append(m.Files, e)
			}
		}
		data, err := m.Encode()
		if err != nil {
			return fmt.Errorf("guest images: %w", err)
		}
		return os.WriteFile(filepath.Join(dir, guestImagesManifest), data, 0o644)
	})
}

// splitRef splits component:role, role defaulting to def.
func splitRef(ref, def string) (string, string) {
	if c, r, ok := strings.Cut(ref, ":"); ok {
		return c, r
	}
	return ref, def
}

// copyFile copies a package file into a stage directory.
func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

// guestImageFiles lists the built files with their manifest entries, in
// the manifest's order.
func guestImageFiles(gi stageResult) ([]contract.GuestImageFile, []string, error) {
	data, err := gi.read(guestImagesManifest)
	if err != nil {
		return nil, nil, err
	}
	m, err := contract.ParseGuestImages(data)
	if err != nil {
		return nil, nil, err
	}
	var paths []string
	for _, f := range m.Files {
		paths = append(paths, gi.path(filepath.Join(f.Image, f.Name)))
	}
	return m.Files, paths, nil
}

// manifestArchive is the cpio that carries the guest-images manifest into
// the control domain, appended to its initramfs like the guests.
func manifestArchive(gi stageResult, epoch time.Time) ([]byte, error) {
	data, err := gi.read(guestImagesManifest)
	if err != nil {
		return nil, err
	}
	arch, err := initramfs.Pack([]initramfs.File{{Path: contract.GuestImagesManifest, Data: data}}, epoch)
	if err != nil {
		return nil, fmt.Errorf("guest images manifest: %w", err)
	}
	return arch.Data, nil
}

// e2fsprogsVersion is mke2fs -V's first line (it has no --version; it
// prints to stderr), for the stage key: the root images' bytes depend on it.
func e2fsprogsVersion(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "mke2fs", "-V").CombinedOutput()
	if err != nil {
		return "missing"
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line)
}
