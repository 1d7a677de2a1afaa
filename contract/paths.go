package contract

import "path"

// Paths inside the control domain.
const (
	// ModulesList names the kernel modules ctld loads, one path a line,
	// dependencies first. The initramfs builder writes it; a missing file
	// means the kernel has its Xen drivers built in.
	ModulesList = "/etc/fwbuild/modules"
	// GuestsDir holds each guest's xl config, <name>.cfg.
	GuestsDir = "/etc/fwbuild/guests"
	// GuestImagesDir holds each guest's kernel and initramfs.
	GuestImagesDir = "/var/lib/fwbuild/guests"
)

// GuestConfig is where a guest's xl config lives.
func GuestConfig(name string) string { return path.Join(GuestsDir, name+".cfg") }

// GuestKernel is where a guest's kernel lives.
func GuestKernel(name string) string { return path.Join(GuestImagesDir, name, "vmlinuz") }

// GuestInitrd is where a guest's initramfs lives.
func GuestInitrd(name string) string { return path.Join(GuestImagesDir, name, "initrd") }

// ValidGuestName says whether a name can be a guest's: it becomes a file
// name and an xl domain name, so it is letters, digits, '-', '_' and '.',
// and not "." or "..".
func ValidGuestName(s string) bool {
	if s == "" || s == "." || s == ".." {
		return false
	}
	for _, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.'
		if !ok {
			return false
		}
	}
	return true
}
