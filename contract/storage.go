package contract

import (
	"encoding/json"
	"fmt"
	"path"
)

// The data disk: the server's own storage for guest definitions, guest disks
// and guest operating-system images. ctld prepares it at first boot and
// mounts its file system here on every boot.
const DataMount = "/var/lib/fwbuild/data"

// DataImageFile is where a guest image's file lives on the data disk once
// ctld has copied and verified it.
func DataImageFile(image, file string) string {
	return path.Join(DataMount, "images", image, file)
}

// DataGuestDir holds one guest's definition and disks on the data disk.
func DataGuestDir(guest string) string { return path.Join(DataMount, "guests", guest) }

// DataGuestDisk is one of a guest's virtual disks on the data disk.
func DataGuestDisk(guest, disk string) string {
	return path.Join(DataGuestDir(guest), disk+".img")
}

// GuestImagesManifest lists the guest-image files this payload trusts. It is
// inside the control domain's initramfs, so inside the signed payload: a file
// from the install media or a URL is used only if its size and SHA-256 match.
const GuestImagesManifest = "/etc/fwbuild/guest-images.json"

// ImagesPartitionName is the GPT partition name of the install media's
// guest-images partition (next to the ESP on usb.img). fwbuild writes it as
// FAT32 (label FWIMAGES) holding each file at its MediaPath.
const ImagesPartitionName = "fwbuild-images"

// GuestImageFile is one file of a guest image: a kernel, an initramfs, a root
// file system. It comes from the install media (MediaPath, relative to the
// images partition's root) or from URL, whichever the board provides.
type GuestImageFile struct {
	Image     string `json:"image"` // the guest image it belongs to
	Name      string `json:"name"`  // file name, e.g. vmlinuz, initrd, root.img
	Size      int64  `json:"size"`
	SHA256    string `json:"sha256"`
	MediaPath string `json:"media_path,omitempty"`
	URL       string `json:"url,omitempty"`
}

// GuestImages is the manifest's content.
type GuestImages struct {
	Files []GuestImageFile `json:"files"`
}

// isSHA256Hex avoids package regexp (see console.go).
func isSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}

// Encode writes the manifest; the build calls it with files in a fixed order.
func (g GuestImages) Encode() ([]byte, error) {
	if err := g.Validate(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(g, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// ParseGuestImages reads and validates a manifest.
func ParseGuestImages(b []byte) (GuestImages, error) {
	var g GuestImages
	if err := json.Unmarshal(b, &g); err != nil {
		return GuestImages{}, fmt.Errorf("guest images manifest: %w", err)
	}
	if err := g.Validate(); err != nil {
		return GuestImages{}, err
	}
	return g, nil
}

// Validate checks what ctld relies on: names that are safe as path
// elements, a hash, a size, and a source.
func (g GuestImages) Validate() error {
	seen := map[string]bool{}
	for i, f := range g.Files {
		switch {
		case !ValidGuestName(f.Image) || !ValidGuestName(f.Name):
			return fmt.Errorf("guest images manifest: file %d: image %q / name %q: want letters, digits, '-', '_', '.'", i, f.Image, f.Name)
		case !isSHA256Hex(f.SHA256):
			return fmt.Errorf("guest images manifest: %s/%s: sha256 %q is not 64 lower-case hex digits", f.Image, f.Name, f.SHA256)
		case f.Size <= 0:
			return fmt.Errorf("guest images manifest: %s/%s: size %d", f.Image, f.Name, f.Size)
		case f.MediaPath == "" && f.URL == "":
			return fmt.Errorf("guest images manifest: %s/%s: neither media_path nor url", f.Image, f.Name)
		case seen[f.Image+"/"+f.Name]:
			return fmt.Errorf("guest images manifest: %s/%s listed twice", f.Image, f.Name)
		}
		seen[f.Image+"/"+f.Name] = true
	}
	return nil
}

// The files of a guest image (GuestImageFile.Name). Every image has a
// kernel and an initrd; one fwbuild builds also has a root file system,
// the starting content of each guest's first disk.
const (
	GuestImageKernel = "vmlinuz"
	GuestImageInitrd = "initrd"
	GuestImageRoot   = "root.img"
)

// GuestImageArtefact is the name of a guest-image file among the build's
// artefacts, which a web server can serve from the output directory as is:
// the manifest's URL is the board's base URL joined with it.
func GuestImageArtefact(image, file string) string { return "guest-" + image + "-" + file }

// DataGuestConfig is a guest's xl config on the data disk: once it is
// there, the guest's definition is this file (ctld writes it after the
// guest's disks, so a guest with a config is complete).
func DataGuestConfig(guest string) string { return path.Join(DataGuestDir(guest), "xl.cfg") }
