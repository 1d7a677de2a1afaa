//go:build !linux

package flash

import (
	"context"
	"log/slog"
	"os"
)

func realHost() host { return host{} }

func writeBlock(ctx context.Context, o USBOptions, img *os.File, size int64, path string, h host, log *slog.Logger) (USBResult, error) {
	return USBResult{}, &Error{Op: "usb check", Msg: "writing block devices is only supported on Linux; write to a file instead"}
}
