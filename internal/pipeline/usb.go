package pipeline

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/fwbuild/fwbuild/image"
)

// usb writes usb.img: the ESP with the ESP payload and, when the board has
// guest images, the guest-images partition holding their files.
func (r *run) usb(ctx context.Context, pay, gi stageResult) (stageResult, error) {
	b := r.Board
	k := key("usb/1", r.tool, pay.Key, gi.Key, b.Name, fmt.Sprint(uint64(b.Outputs.USB.Size)), r.Epoch.UTC().Format(time.RFC3339))
	return r.stage(ctx, "usb", k, func(dir string) error {
		esp, err := pay.read("payload-esp.efi")
		if err != nil {
			return err
		}
		spec := image.USBSpec{Size: int64(b.Outputs.USB.Size), Payload: esp, Name: b.Name, Epoch: r.Epoch}
		if len(b.GuestImages) > 0 {
			files, paths, err := guestImageFiles(gi)
			if err != nil {
				return err
			}
			for i, f := range files {
				spec.Images = append(spec.Images, image.USBFile{Path: f.MediaPath, Src: paths[i]})
			}
		}
		if err := image.WriteUSB(ctx, filepath.Join(dir, "usb.img"), spec); err != nil {
			return fmt.Errorf("usb image (%s): %w", b.Loc("outputs.usb"), err)
		}
		return nil
	})
}
