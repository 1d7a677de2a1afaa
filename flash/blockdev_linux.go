package flash

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func realHost() host {
	return host{
		sys:       "/sys",
		mountinfo: "/proc/self/mountinfo",
		swaps:     "/proc/swaps",
		devOf: func(p string) (string, bool) {
			var st unix.Stat_t
			if unix.Stat(p, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
				return "", false
			}
			return fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev)), true
		},
	}
}

// blockInfo is what sysfs says about a block device and everything stacked on it.
type blockInfo struct {
	Name      string // kernel name, e.g. sdb
	Dev       string // major:minor
	Partition string // partition number if this is a partition, else ""
	Parent    string // the whole disk of a partition
	Removable bool
	ReadOnly  bool
	Size      int64 // bytes, from sysfs
	// devs maps major:minor to the kernel name of the disk, its partitions and, recursively,
	// their holders (device-mapper, md): a mount of any of them uses this disk.
	devs    map[string]string
	holders []string // names of holders (direct or of a partition)
}

// inspect reads sysfs for the block device with the given major:minor.
func (h host) inspect(dev string) (blockInfo, error) {
	bi := blockInfo{Dev: dev, devs: map[string]string{}}
	dir, err := filepath.EvalSymlinks(filepath.Join(h.sys, "dev", "block", dev))
	if err != nil {
		return bi, fmt.Errorf("no sysfs entry for block device %s: %w", dev, err)
	}
	bi.Name = filepath.Base(dir)
	if p, err := readTrim(filepath.Join(dir, "partition")); err == nil {
		bi.Partition = p
		bi.Parent = filepath.Base(filepath.Dir(dir))
	}
	rem, _ := readTrim(filepath.Join(dir, "removable"))
	bi.Removable = rem == "1"
	ro, _ := readTrim(filepath.Join(dir, "ro"))
	bi.ReadOnly = ro == "1"
	if s, err := readTrim(filepath.Join(dir, "size")); err == nil {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			bi.Size = n * 512 // sysfs counts 512-byte sectors whatever the logical block size
		}
	}
	visited := map[string]bool{}
	var add func(d string, top bool)
	add = func(d string, top bool) {
		if visited[d] {
			return
		}
		visited[d] = true
		if dv, err := readTrim(filepath.Join(d, "dev")); err == nil {
			bi.devs[dv] = filepath.Base(d)
		}
		hs, _ := os.ReadDir(filepath.Join(d, "holders"))
		for _, e := range hs {
			hd, err := filepath.EvalSymlinks(filepath.Join(d, "holders", e.Name()))
			if err != nil {
				continue
			}
			if top {
				bi.holders = append(bi.holders, e.Name())
			}
			add(hd, false)
		}
	}
	add(dir, true)
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		sub := filepath.Join(dir, e.Name())
		if _, err := os.Stat(filepath.Join(sub, "partition")); err == nil {
			add(sub, true)
		}
	}
	sort.Strings(bi.holders)
	return bi, nil
}

// refuse returns why the device must not be written, or nil.
func (h host) refuse(path string, bi blockInfo, imageSize int64, force bool) error {
	no := func(msg, hint string) error {
		return &Error{Op: "usb check", Msg: fmt.Sprintf("refusing to write %s (%s): %s", path, bi.Name, msg), Hint: hint}
	}
	if bi.Partition != "" {
		return no(fmt.Sprintf("it is partition %s of /dev/%s, and a disk image must go to the whole disk", bi.Partition, bi.Parent),
			"write to /dev/"+bi.Parent+" instead")
	}
	mounts, err := readMounts(h.mountinfo)
	if err != nil {
		return &Error{Op: "usb check", Msg: "cannot tell whether " + path + " is mounted", Err: err}
	}
	uses := func(m mountEntry) (string, bool) {
		if n, ok := bi.devs[m.Dev]; ok {
			return n, true
		}
		// btrfs and friends show an anonymous major:minor; the source names the device.
		if h.devOf != nil && strings.HasPrefix(m.Source, "/dev/") {
			if d, ok := h.devOf(m.Source); ok {
				n, ok := bi.devs[d]
				return n, ok
			}
		}
		return "", false
	}
	var mounted []string
	for _, m := range mounts {
		n, ok := uses(m)
		if !ok {
			continue
		}
		if m.MountPoint == "/" {
			return no(fmt.Sprintf("it holds the running root filesystem (/ is on %s)", n),
				"this is the system disk: pick the USB key's device (lsblk shows TRAN=usb, RM=1)")
		}
		mounted = append(mounted, fmt.Sprintf("/dev/%s on %s", n, m.MountPoint))
	}
	if len(mounted) > 0 {
		sort.Strings(mounted)
		mps := make([]string, 0, len(mounted))
		for _, m := range mounted {
			mps = append(mps, m[strings.Index(m, " on ")+4:])
		}
		return no("it is mounted: "+strings.Join(mounted, ", "),
			"unmount it first (umount "+strings.Join(mps, " ")+") if it is really the key to overwrite")
	}
	if sw, err := readSwaps(h.swaps); err == nil && h.devOf != nil {
		for _, p := range sw {
			if d, ok := h.devOf(p); ok {
				if n, ok := bi.devs[d]; ok {
					return no("/dev/"+n+" is active swap", "swapoff "+p+" first if it is really the key to overwrite")
				}
			}
		}
	}
	if len(bi.holders) > 0 {
		return no("it is in use by "+strings.Join(bi.holders, ", ")+" (device-mapper, RAID or LVM)",
			"deactivate those first (dmsetup ls, lsblk) if it is really the key to overwrite")
	}
	if bi.ReadOnly {
		return no("the kernel marks it read-only", "check the medium's write-protect switch")
	}
	if !bi.Removable && !force {
		return no(fmt.Sprintf("it is not removable (%s/block/%s/removable is 0), so it may be an internal disk", h.sys, bi.Name),
			"check with lsblk that it is the USB key (some USB SSDs report non-removable) and pass --force")
	}
	if bi.Size > 0 && bi.Size < imageSize {
		return no(fmt.Sprintf("it holds %d bytes (%s), the image needs %d (%s)", bi.Size, humanSize(uint64(bi.Size)),
			imageSize, humanSize(uint64(imageSize))), "use a larger device")
	}
	return nil
}

// writeBlock checks the device, writes the image, syncs, drops the cached pages and reads
// the device back.
func writeBlock(ctx context.Context, o USBOptions, img *os.File, size int64, path string, h host, log *slog.Logger) (USBResult, error) {
	res := USBResult{Target: path, BlockDevice: true, Bytes: size}
	start := time.Now()
	dev, ok := h.devOf(path)
	if !ok {
		return res, &Error{Op: "usb check", Msg: path + " is not a block device"}
	}
	bi, err := h.inspect(dev)
	if err != nil {
		return res, &Error{Op: "usb check", Msg: "inspect " + path, Err: err}
	}
	if err := h.refuse(path, bi, size, o.Force); err != nil {
		return res, err
	}
	// O_EXCL on a block device fails with EBUSY if the kernel uses it (mounted, swap,
	// claimed by md/dm) and keeps anyone from mounting it while we write.
	w, err := os.OpenFile(path, os.O_WRONLY|unix.O_EXCL, 0)
	if err != nil {
		e := &Error{Op: "usb check", Msg: "open " + path, Err: err}
		if errors.Is(err, syscall.EBUSY) {
			e.Msg = "refusing to write " + path + ": the kernel reports it busy (mounted, swap, or part of RAID/LVM)"
			e.Hint = "find the user with lsblk / findmnt and release it"
		}
		return res, e
	}
	defer w.Close()
	devSize, err := blkSize(w)
	if err != nil {
		return res, &Error{Op: "usb check", Msg: "size of " + path, Err: err}
	}
	res.DeviceSize = devSize
	if devSize < size {
		return res, &Error{Op: "usb check", Msg: fmt.Sprintf("refusing to write %s: it holds %d bytes (%s), the image needs %d (%s)",
			path, devSize, humanSize(uint64(devSize)), size, humanSize(uint64(size))), Hint: "use a larger device"}
	}
	rep := &reporter{fn: o.Progress}
	partial := func(op string, err error) error {
		return &Error{Op: op, Msg: path + " is partly written and will not boot", Err: err,
			Hint: "run the write again (the device may be failing if this repeats)"}
	}
	sumW, err := copyHashed(ctx, w, img, size, rep)
	if err != nil {
		return res, partial("usb write", err)
	}
	if err := syncPhase(w, size, rep); err != nil {
		return res, partial("usb write", fmt.Errorf("fsync: %w", err))
	}
	r, err := os.Open(path)
	if err != nil {
		return res, partial("usb verify", err)
	}
	defer r.Close()
	// Read the device, not the page cache we just filled.
	_ = unix.Fadvise(int(r.Fd()), 0, 0, unix.FADV_DONTNEED)
	_ = unix.IoctlSetInt(int(r.Fd()), unix.BLKFLSBUF, 0)
	sumR, err := readHashed(ctx, r, size, rep)
	if err != nil {
		return res, partial("usb verify", err)
	}
	if sumR != sumW {
		return res, &Error{Op: "usb verify", Msg: fmt.Sprintf("%s reads back sha256 %s, wrote %s", path, sumR, sumW),
			Hint: "the device does not keep what is written: it may be failing or fake-capacity; use another one"}
	}
	// The image's backup GPT ends the image, which is the middle of a larger device.
	rel, moved, err := relocateBackupGPT(r, w, w.Sync, size, devSize)
	if err != nil {
		return res, &Error{Op: "usb write", Msg: path + " holds the image, but moving its backup GPT to the end of the device failed", Err: err,
			Hint: "the disk boots from the primary GPT; run `sgdisk -e " + path + "` to move the backup, or write again"}
	}
	if moved {
		if err := checkGPTAt(r, devSize); err != nil {
			return res, &Error{Op: "usb verify", Msg: path + ": the GPT does not check after moving its backup to the end", Err: err,
				Hint: "write again; `sgdisk -v " + path + "` shows the problem"}
		}
		res.BackupGPTFrom, res.BackupGPTTo = rel.From, rel.To
		log.Debug("flash: backup GPT moved to the end of the device", "device", path, "from", rel.From, "to", rel.To)
	}
	// Let the kernel (and lsblk) see the new partition table; not possible on every device
	// (loop devices without partscan), and not needed for the write itself.
	if err := unix.IoctlSetInt(int(w.Fd()), unix.BLKRRPART, 0); err != nil {
		log.Debug("flash: re-reading partition table failed", "device", path, "err", err)
	}
	res.SHA256 = sumW
	res.Elapsed = time.Since(start)
	log.Debug("flash: usb device written", "device", path, "bytes", size, "elapsed", res.Elapsed)
	return res, nil
}

func blkSize(f *os.File) (int64, error) {
	var n uint64
	_, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&n)))
	if e != 0 {
		return 0, fmt.Errorf("BLKGETSIZE64: %w", e)
	}
	return int64(n), nil
}

func readTrim(p string) (string, error) {
	b, err := os.ReadFile(p)
	return strings.TrimSpace(string(b)), err
}

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	Dev        string // major:minor
	MountPoint string
	FSType     string
	Source     string
}

func readMounts(path string) ([]mountEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseMountinfo(f)
}

// parseMountinfo parses proc(5) mountinfo:
// "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue".
func parseMountinfo(r io.Reader) ([]mountEntry, error) {
	var out []mountEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if len(f) < 6 || sep < 0 || sep+2 >= len(f) {
			return nil, fmt.Errorf("mountinfo line %d: malformed: %q", n, sc.Text())
		}
		out = append(out, mountEntry{Dev: f[2], MountPoint: unescapeOctal(f[4]), FSType: f[sep+1], Source: unescapeOctal(f[sep+2])})
	}
	return out, sc.Err()
}

// readSwaps returns the active swap paths from /proc/swaps.
func readSwaps(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for i, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); i > 0 && len(f) > 0 {
			out = append(out, unescapeOctal(f[0]))
		}
	}
	return out, nil
}

// unescapeOctal undoes the kernel's \ooo escaping of spaces, tabs, newlines and backslashes.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOct(s[i+1]) && isOct(s[i+2]) && isOct(s[i+3]) &&
			s[i+1] <= '3' {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOct(c byte) bool { return c >= '0' && c <= '7' }
