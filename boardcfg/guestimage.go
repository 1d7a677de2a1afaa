package boardcfg

import (
	"fmt"
	"net/url"
	"strings"
)

// GuestImage is a guest operating system built from pinned Debian packages:
// either a stock kernel with a small root file system fwbuild assembles
// (Busybox, Modules, RootSize: an initramfs that loads the disk and network
// drivers and mounts the root from the guest's virtual disk, and an ext4
// root image), or a stock kernel with a ready-made initrd (Initrd: Debian's
// installer). Its files travel on the install media or behind
// GuestImagesURL, pinned by SHA-256 in the control domain's manifest.
type GuestImage struct {
	Name string `yaml:"name"`
	// Kernel is a component with files.bzimage, or component:role.
	Kernel string `yaml:"kernel"`
	// Initrd is component:role of a ready-made initrd.
	Initrd string `yaml:"initrd,omitempty"`
	// Busybox is a component with files.busybox (a static busybox): the
	// userland of the image fwbuild builds.
	Busybox string `yaml:"busybox,omitempty"`
	// Modules are kernel modules (lib/modules/<release>/...) in the
	// kernel's component or in ModulesFrom; their dependencies come along.
	// The initramfs fwbuild builds loads them in order; a packaged initrd
	// (Debian's installer) gets them appended, with a startup hook of the
	// installer's that loads them, so the guest sees its virtual disk from
	// the first screen on.
	Modules []string `yaml:"modules,omitempty"`
	// ModulesFrom is the component holding Modules when the kernel's does
	// not (the installer's kernel comes without its modules): it must be
	// the same kernel build.
	ModulesFrom string `yaml:"modules_from,omitempty"`
	// RootSize is the size of the root file system image.
	RootSize Size `yaml:"root_size,omitempty"`
	// Cmdline is added to the kernel command line of every guest that
	// boots the image.
	Cmdline string `yaml:"cmdline,omitempty"`
}

// Guest types (Guest.Type).
const (
	GuestTypeAuto = "auto"
	GuestTypePV   = "pv"
	GuestTypePVH  = "pvh"
)

// ModulesComponent is the component Modules are found in.
func (g GuestImage) ModulesComponent() string {
	if g.ModulesFrom != "" {
		return g.ModulesFrom
	}
	c, _ := g.KernelRef()
	return c
}

// BuildsRoot says whether fwbuild assembles the image's initramfs and root
// file system (else it uses the packaged initrd).
func (g GuestImage) BuildsRoot() bool { return g.Initrd == "" }

// KernelRef is the image's kernel as component and role.
func (g GuestImage) KernelRef() (component, role string) {
	if c, r, ok := strings.Cut(g.Kernel, ":"); ok {
		return c, r
	}
	return g.Kernel, "bzimage"
}

// GuestImage returns the guest image with the given name.
func (b *Board) GuestImage(name string) (GuestImage, bool) {
	for _, g := range b.GuestImages {
		if g.Name == name {
			return g, true
		}
	}
	return GuestImage{}, false
}

// Root file system bounds: busybox alone is 2 MB, and the image is copied
// to every guest's disk.
const (
	minRootSize = 8 << 20
	maxRootSize = 4 << 30
)

func (b *Board) validateGuestImages(comps map[string]Component) []error {
	var errs []error
	add := func(field, format string, args ...any) { errs = append(errs, b.errAt(field, format, args...)) }
	// fileRef checks component:role (or a bare component with defRole).
	fileRef := func(field, v, defRole string) {
		name, role, ok := strings.Cut(v, ":")
		if !ok {
			role = defRole
		}
		c, found := comps[name]
		switch {
		case !found:
			add(field, "no component named %q", name)
		case c.Files[role] == "":
			add(field, "component %q has no file with role %q (add it under its files:)", name, role)
		}
	}
	names := map[string]bool{}
	for i, g := range b.GuestImages {
		f := fmt.Sprintf("guest_images[%d]", i)
		switch {
		case g.Name == "":
			errs = append(errs, b.missing(f+".name"))
		case !guestNameRE.MatchString(g.Name):
			add(f+".name", "%q: a guest image name is lower-case letters, digits and -, starting with a letter, at most 32", g.Name)
		case names[g.Name]:
			add(f+".name", "guest image %q is declared twice", g.Name)
		}
		names[g.Name] = true
		if g.Kernel == "" {
			errs = append(errs, b.missing(f+".kernel"))
		} else {
			fileRef(f+".kernel", g.Kernel, "bzimage")
		}
		switch {
		case g.Initrd != "" && (g.Busybox != "" || g.RootSize != 0):
			add(f+".initrd", "an image with a packaged initrd gets no root file system from fwbuild: drop busybox and root_size, or drop initrd")
		case g.Initrd != "":
			if _, _, ok := strings.Cut(g.Initrd, ":"); !ok {
				add(f+".initrd", "%q: want component:role of the initrd file", g.Initrd)
			} else {
				fileRef(f+".initrd", g.Initrd, "")
			}
		default:
			if g.Busybox == "" {
				add(f, "give busybox (a component with files.busybox, e.g. busybox-static) for a root file system fwbuild builds, or initrd (component:role) for a packaged one")
			} else {
				fileRef(f+".busybox", g.Busybox, "busybox")
			}
			switch {
			case g.RootSize == 0:
				errs = append(errs, b.missing(f+".root_size"))
			case g.RootSize < minRootSize || g.RootSize > maxRootSize || g.RootSize%(1<<20) != 0:
				add(f+".root_size", "%v: give whole MiB from %v to %v", g.RootSize, Size(minRootSize), Size(maxRootSize))
			}
		}
		for j, m := range g.Modules {
			if !packagePath(m) || !strings.HasPrefix(m, "lib/modules/") || !strings.HasSuffix(m, ".ko") {
				add(fmt.Sprintf("%s.modules[%d]", f, j), "%q: give a module's path in the kernel's package, lib/modules/<release>/.../name.ko", m)
			}
		}
		if g.ModulesFrom != "" {
			if _, ok := comps[g.ModulesFrom]; !ok {
				add(f+".modules_from", "no component named %q", g.ModulesFrom)
			} else if len(g.Modules) == 0 {
				add(f+".modules_from", "names where modules come from, but the image lists no modules")
			}
		}
		if strings.ContainsAny(g.Cmdline, "\"\n\\") {
			add(f+".cmdline", "quotes, backslashes and newlines cannot go into an xl config")
		} else if err := checkCmdline(g.Cmdline, 1024); err != nil {
			add(f+".cmdline", "%v", err)
		}
	}
	if u := b.GuestImagesURL; u != "" {
		p, err := url.Parse(u)
		switch {
		case err != nil:
			add("guest_images_url", "%q: %v", u, err)
		case p.Scheme != "http" && p.Scheme != "https" || p.Host == "" || p.RawQuery != "" || p.Fragment != "":
			add("guest_images_url", "%q: want an http:// or https:// base URL without query, e.g. http://10.0.2.2:8080/images", u)
		case strings.ContainsAny(u, " \t\"'\\"):
			add("guest_images_url", "%q: no spaces, quotes or backslashes", u)
		}
	}
	return errs
}
