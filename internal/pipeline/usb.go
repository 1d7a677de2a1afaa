package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"time"

	"github.com/fwbuild/fwbuild/contract"
	"github.com/fwbuild/fwbuild/image"
)

// usb writes usb.img: the ESP with the ESP payload (as the removable-media
// boot file and in slot A, with the slots' state file) and, when the board
// has guest images, the guest-images partition holding their files.
func (r *run) usb(ctx context.Context, pay, gi stageResult) (stageResult, error) {
	b := r.Board
	k := key("usb/2", r.tool, pay.Key, gi.Key, b.Name, r.result.Version, fmt.Sprint(uint64(b.Outputs.USB.Size)), r.Epoch.UTC().Format(time.RFC3339))
	return r.stage(ctx, "usb", k, func(dir string) error {
		esp, err := pay.read("payload-esp.efi")
		if err != nil {
			return err
		}
		// Slot A holds the payload, confirmed: it is what the factory tested.
		sum := sha256.Sum256(esp)
		slots, err := contract.EncodeSlots(contract.Slots{Active: contract.SlotA, Slots: map[string]contract.SlotInfo{
			contract.SlotA: {State: contract.SlotConfirmed, Version: r.result.Version, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(esp))},
			contract.SlotB: {State: contract.SlotEmpty},
		}})
		if err != nil {
			return err
		}
		spec := image.USBSpec{Size: int64(b.Outputs.USB.Size), Payload: esp, Slots: slots, Name: b.Name, Epoch: r.Epoch}
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
