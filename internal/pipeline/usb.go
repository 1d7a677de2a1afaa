package pipeline

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/fwbuild/fwbuild/image"
)

func (r *run) usb(ctx context.Context, pay stageResult) (stageResult, error) {
	b := r.Board
	k := key("usb/1", r.tool, pay.Key, b.Name, fmt.Sprint(uint64(b.Outputs.USB.Size)), r.Epoch.UTC().Format(time.RFC3339))
	return r.stage(ctx, "usb", k, func(dir string) error {
		esp, err := pay.read("payload-esp.efi")
		if err != nil {
			return err
		}
		if err := image.WriteUSB(ctx, filepath.Join(dir, "usb.img"), image.USBSpec{Size: int64(b.Outputs.USB.Size), Payload: esp, Name: b.Name, Epoch: r.Epoch}); err != nil {
			return fmt.Errorf("usb image (%s): %w", b.Loc("outputs.usb"), err)
		}
		return nil
	})
}
