package flash

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fwbuild/fwbuild/image"
)

// USBOptions describes writing a disk image (e.g. usb.img) to a block device or a file.
type USBOptions struct {
	// Device is a whole-disk block device (/dev/sdX, /dev/disk/by-id/usb-...) or a regular
	// file, which is created or replaced (through a temp file and rename).
	Device string
	// Image is the path of the disk image.
	Image string
	// Force allows a block device that does not report itself removable (USB SSDs, loop
	// devices). It never allows a mounted, swap, busy, root or too-small device, or a partition.
	Force bool
	// AnyImage skips the check that Image is a bootable disk image (image.CheckDisk: GPT,
	// an EFI System Partition holding \EFI\BOOT\BOOTX64.EFI). Only for images that are
	// deliberately something else, such as test patterns.
	AnyImage bool
	// Built lists what the build's records say the image is (see FindBuilt); the image's
	// SHA-256 must equal each.
	Built []Built
	// Progress, if set, receives "write", "sync" and "verify" reports.
	Progress func(Progress)
	// Logger receives debug logs; nil means slog.Default().
	Logger *slog.Logger
}

// USBResult describes a completed, verified write.
type USBResult struct {
	Target      string // the path written (symlinks resolved)
	BlockDevice bool
	DeviceSize  int64 // size of the block device; 0 for a file
	Bytes       int64 // image bytes written
	SHA256      string
	Elapsed     time.Duration // write + sync + verify
	// BackupGPTFrom and BackupGPTTo are the LBAs of the backup GPT header as the image
	// had it and where WriteUSB moved it: the device's last LBA, since the device is
	// larger than the image. Both 0 when nothing was moved. The device then differs from
	// the image in LBA 0-1 (protective MBR, primary header) and past the image's end.
	BackupGPTFrom, BackupGPTTo uint64
}

// host names the kernel interfaces the USB safety checks read, so tests can point them at
// a fabricated tree.
type host struct {
	sys       string // /sys
	mountinfo string // /proc/self/mountinfo
	swaps     string // /proc/swaps
	// devOf returns "major:minor" of a block device node, or false.
	devOf func(path string) (string, bool)
}

const copyBuf = 4 << 20

// WriteUSB writes o.Image to o.Device, syncs, reads it back and compares SHA-256.
// A block device is refused if it is a partition, mounted (itself or any partition, also
// through device-mapper holders), holds the running root filesystem, is active swap, is in
// use by the kernel (exclusive open fails), is read-only, is smaller than the image, or is
// not removable (unless o.Force). Every refusal or failure is an *Error.
func WriteUSB(ctx context.Context, o USBOptions) (USBResult, error) {
	return writeUSB(ctx, o, realHost())
}

func writeUSB(ctx context.Context, o USBOptions, h host) (USBResult, error) {
	var res USBResult
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	check := func(format string, a ...any) error {
		return &Error{Op: "usb check", Msg: fmt.Sprintf(format, a...)}
	}
	if o.Device == "" {
		return res, check("no target device or file given")
	}
	if o.Image == "" {
		return res, check("no image given")
	}
	img, err := os.Open(o.Image)
	if err != nil {
		return res, check("image: %v", err)
	}
	defer img.Close()
	ist, err := img.Stat()
	if err != nil {
		return res, check("image: %v", err)
	}
	if !ist.Mode().IsRegular() || ist.Size() == 0 {
		return res, check("image %s is not a non-empty regular file", o.Image)
	}
	// What is written must be what fwbuild builds, and what this build made: a bootable
	// disk is the only thing this command exists to put on a key.
	if !o.AnyImage {
		if err := image.CheckDisk(o.Image); err != nil {
			return res, &Error{Op: "usb check", Msg: "the image is not a bootable disk image: " + err.Error(),
				Hint: "nothing was written; write the usb.img that `fwbuild build` made (out/<board>/usb.img)"}
		}
	}
	if len(o.Built) > 0 {
		h := sha256.New()
		if _, err := io.Copy(h, img); err != nil {
			return res, check("read image %s: %v", o.Image, err)
		}
		if _, err := img.Seek(0, io.SeekStart); err != nil {
			return res, check("image %s: %v", o.Image, err)
		}
		if err := checkBuilt(hexSum(h), o.Built); err != nil {
			return res, &Error{Op: "usb check", Msg: err.Error(),
				Hint: "nothing was written; rebuild (fwbuild build) and write the new usb.img, or pass the image you meant with --image"}
		}
	}

	target, err := filepath.EvalSymlinks(o.Device)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// A typo such as /dev/sdx for an unplugged key would otherwise create a file in
		// /dev (RAM) and "succeed".
		if p, _ := filepath.Abs(o.Device); strings.HasPrefix(p, "/dev/") {
			return res, check("%s does not exist: is the USB key plugged in? (lsblk lists disks)", o.Device)
		}
		target = o.Device
		res.Target = target
		return writeFile(ctx, o, img, ist, target, log)
	case err != nil:
		return res, check("target %s: %v", o.Device, err)
	}
	tst, err := os.Stat(target)
	if err != nil {
		return res, check("target %s: %v", target, err)
	}
	if os.SameFile(ist, tst) {
		return res, check("target %s is the image itself", target)
	}
	switch {
	case tst.Mode().IsRegular():
		return writeFile(ctx, o, img, ist, target, log)
	case tst.Mode()&fs.ModeDevice != 0 && tst.Mode()&fs.ModeCharDevice == 0:
		return writeBlock(ctx, o, img, ist.Size(), target, h, log)
	default:
		return res, check("target %s is neither a block device nor a regular file (%s)", target, tst.Mode().Type())
	}
}

// writeFile writes the image to a temp file next to target, verifies it and renames it over
// target, so a failure never leaves a half-written file under the target's name.
func writeFile(ctx context.Context, o USBOptions, img *os.File, ist fs.FileInfo, target string, log *slog.Logger) (USBResult, error) {
	res := USBResult{Target: target, Bytes: ist.Size()}
	start := time.Now()
	mode := fs.FileMode(0o644)
	if st, err := os.Stat(target); err == nil {
		mode = st.Mode().Perm()
	}
	dir := filepath.Dir(target)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(target)+".fwbuild-*")
	if err != nil {
		return res, &Error{Op: "usb write", Msg: "create temp file in " + dir, Err: err}
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	rep := &reporter{fn: o.Progress}
	h, err := copyHashed(ctx, tmp, img, ist.Size(), rep)
	if err != nil {
		return res, &Error{Op: "usb write", Msg: "write " + target, Err: err}
	}
	if err := syncPhase(tmp, ist.Size(), rep); err != nil {
		return res, &Error{Op: "usb write", Msg: "sync " + target, Err: err}
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return res, &Error{Op: "usb verify", Msg: "seek " + tmp.Name(), Err: err}
	}
	got, err := readHashed(ctx, tmp, ist.Size(), rep)
	if err != nil {
		return res, &Error{Op: "usb verify", Msg: "read back " + tmp.Name(), Err: err}
	}
	if got != h {
		return res, &Error{Op: "usb verify", Msg: fmt.Sprintf("read back sha256 %s, wrote %s", got, h),
			Hint: "the target file system lost data: check the medium"}
	}
	if err := tmp.Chmod(mode); err != nil {
		return res, &Error{Op: "usb write", Msg: "chmod " + tmp.Name(), Err: err}
	}
	if err := tmp.Close(); err != nil {
		return res, &Error{Op: "usb write", Msg: "close " + tmp.Name(), Err: err}
	}
	if err := os.Rename(tmp.Name(), target); err != nil {
		return res, &Error{Op: "usb write", Msg: "rename to " + target, Err: err}
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	res.SHA256 = h
	res.Elapsed = time.Since(start)
	log.Debug("flash: usb file written", "target", target, "bytes", res.Bytes, "elapsed", res.Elapsed)
	return res, nil
}

// copyHashed copies total bytes from src to dst, hashing them and reporting "write" progress.
func copyHashed(ctx context.Context, dst io.Writer, src io.Reader, total int64, rep *reporter) (string, error) {
	h := sha256.New()
	err := loop(ctx, "write", total, rep, func(buf []byte) error {
		if _, err := io.ReadFull(src, buf); err != nil {
			return fmt.Errorf("read image: %w", err)
		}
		h.Write(buf)
		_, err := dst.Write(buf)
		return err
	})
	return hexSum(h), err
}

// readHashed hashes total bytes of src, reporting "verify" progress.
func readHashed(ctx context.Context, src io.Reader, total int64, rep *reporter) (string, error) {
	h := sha256.New()
	err := loop(ctx, "verify", total, rep, func(buf []byte) error {
		if _, err := io.ReadFull(src, buf); err != nil {
			return err
		}
		h.Write(buf)
		return nil
	})
	return hexSum(h), err
}

// loop calls step with consecutive chunks covering total bytes, checking ctx between
// chunks and reporting progress at most every 100 ms.
func loop(ctx context.Context, phase string, total int64, rep *reporter, step func([]byte) error) error {
	buf := make([]byte, copyBuf)
	start := time.Now()
	last := start
	var done int64
	for done < total {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("cancelled after %d of %d bytes: %w", done, total, err)
		}
		n := min(int64(len(buf)), total-done)
		if err := step(buf[:n]); err != nil {
			return fmt.Errorf("at byte %d: %w", done, err)
		}
		done += n
		if now := time.Now(); now.Sub(last) >= 100*time.Millisecond && done < total {
			last = now
			rep.report(Progress{Phase: phase, Done: done, Total: total, Elapsed: now.Sub(start)})
		}
	}
	rep.report(Progress{Phase: phase, Done: done, Total: total, Elapsed: time.Since(start), Final: true})
	return nil
}

func syncPhase(f *os.File, total int64, rep *reporter) error {
	start := time.Now()
	rep.report(Progress{Phase: "sync", Total: total})
	err := f.Sync()
	if err == nil {
		rep.report(Progress{Phase: "sync", Done: total, Total: total, Elapsed: time.Since(start), Final: true})
	}
	return err
}

func hexSum(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }
