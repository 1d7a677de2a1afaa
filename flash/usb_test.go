package flash

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func writeTemp(t testing.TB, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// progressLog records the last report of each phase and checks Done never goes backwards.
type progressLog struct {
	t     *testing.T
	final map[string]Progress
	last  map[string]int64
}

func newProgressLog(t *testing.T) *progressLog {
	return &progressLog{t: t, final: map[string]Progress{}, last: map[string]int64{}}
}

func (l *progressLog) fn(p Progress) {
	if p.Done < l.last[p.Phase] || p.Done > p.Total {
		l.t.Errorf("progress %+v after %d", p, l.last[p.Phase])
	}
	l.last[p.Phase] = p.Done
	if p.Final {
		l.final[p.Phase] = p
	}
}

func TestWriteUSBFile(t *testing.T) {
	img := randBytes(30, 9<<20+123) // several copy chunks, not a sector multiple
	imgPath := writeTemp(t, "usb.img", img)
	dir := t.TempDir()
	target := filepath.Join(dir, "new.img")
	pl := newProgressLog(t)
	res, err := WriteUSB(context.Background(), USBOptions{AnyImage: true, Device: target, Image: imgPath, Progress: pl.fn})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readFile(t, target), img) || res.SHA256 != sha(img) || res.Bytes != int64(len(img)) || res.BlockDevice {
		t.Errorf("new file: %+v", res)
	}
	for _, ph := range []string{"write", "sync", "verify"} {
		if p := pl.final[ph]; p.Done != int64(len(img)) || p.Total != int64(len(img)) {
			t.Errorf("phase %s final %+v", ph, p)
		}
	}

	// Replacing a larger existing file leaves exactly the image, with the file's mode.
	old := writeTemp(t, "old.img", randBytes(31, 20<<20))
	if err := os.Chmod(old, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteUSB(context.Background(), USBOptions{AnyImage: true, Device: old, Image: imgPath}); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(old)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readFile(t, old), img) || st.Mode().Perm() != 0o600 {
		t.Errorf("replaced file: mode %v, equal %v", st.Mode(), bytes.Equal(readFile(t, old), img))
	}
	ents, _ := os.ReadDir(filepath.Dir(old))
	if len(ents) != 1 {
		t.Errorf("temp files left behind: %v", ents)
	}
}

func TestWriteUSBRefusesBadTargets(t *testing.T) {
	imgPath := writeTemp(t, "usb.img", randBytes(32, 4096))
	empty := writeTemp(t, "empty.img", nil)
	for _, tc := range []struct {
		name, dev, img, want string
	}{
		{"unplugged device", "/dev/sdzz9", imgPath, "/dev/sdzz9 does not exist: is the USB key plugged in?"},
		{"image itself", imgPath, imgPath, "is the image itself"},
		{"directory", t.TempDir(), imgPath, "neither a block device nor a regular file"},
		{"char device", "/dev/null", imgPath, "neither a block device nor a regular file"},
		{"empty image", filepath.Join(t.TempDir(), "x"), empty, "not a non-empty regular file"},
		{"missing image", filepath.Join(t.TempDir(), "x"), filepath.Join(t.TempDir(), "nope"), "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := WriteUSB(context.Background(), USBOptions{AnyImage: true, Device: tc.dev, Image: tc.img, Force: true})
			if e := asError(t, err); e.Op != "usb check" || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := os.Stat("/dev/sdzz9"); !errors.Is(err, os.ErrNotExist) {
		t.Error("a file was created in /dev")
	}
}

func TestWriteUSBCancel(t *testing.T) {
	imgPath := writeTemp(t, "usb.img", randBytes(33, 9<<20))
	target := filepath.Join(t.TempDir(), "t.img")
	ctx, cancel := context.WithCancel(context.Background())
	_, err := WriteUSB(ctx, USBOptions{AnyImage: true, Device: target, Image: imgPath, Progress: func(p Progress) {
		if p.Phase == "write" {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err %v", err)
	}
	if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) {
		t.Error("cancelled write left a target file")
	}
}

// needTool fails the test (it never skips) when a host tool is missing.
func needTool(t testing.TB, tool, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		t.Fatalf("%s not found: apt-get install -y %s", tool, pkg)
	}
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// loopDevice attaches a zeroed backing file of size bytes and returns the device and file.
func loopDevice(t *testing.T, size int64) (dev, backing string) {
	t.Helper()
	backing = filepath.Join(t.TempDir(), "backing.img")
	if err := os.WriteFile(backing, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(backing, size); err != nil {
		t.Fatal(err)
	}
	return attachLoop(t, backing), backing
}

func attachLoop(t *testing.T, backing string) string {
	t.Helper()
	needTool(t, "losetup", "mount")
	if os.Geteuid() != 0 {
		t.Fatal("loop device tests need root (they run as root here and in CI)")
	}
	dev := run(t, "losetup", "-f", "--show", "-P", backing)
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	return dev
}

// mkfsMount puts a file system on dev and mounts it. vfat when the kernel has it (like a
// real USB key); some CI kernels lack vfat, then ext4: what matters is that it is mounted.
func mkfsMount(t *testing.T, dev string) string {
	t.Helper()
	fsys := "ext4"
	if b, _ := os.ReadFile("/proc/filesystems"); bytes.Contains(b, []byte("\tvfat\n")) {
		fsys = "vfat"
	}
	t.Logf("mounting %s as %s", dev, fsys)
	if fsys == "vfat" {
		needTool(t, "mkfs.vfat", "dosfstools")
		run(t, "mkfs.vfat", dev)
	} else {
		needTool(t, "mkfs.ext4", "e2fsprogs")
		run(t, "mkfs.ext4", "-q", "-F", dev)
	}
	mnt := t.TempDir()
	run(t, "mount", dev, mnt)
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	return mnt
}

func TestWriteUSBLoopDevice(t *testing.T) {
	dev, backing := loopDevice(t, 32<<20)
	img := randBytes(34, 9<<20+512)
	imgPath := writeTemp(t, "usb.img", img)

	_, err := WriteUSB(context.Background(), USBOptions{AnyImage: true, Device: dev, Image: imgPath})
	if e := asError(t, err); !strings.Contains(e.Msg, "it is not removable") || !strings.Contains(e.Hint, "--force") {
		t.Errorf("non-removable loop device: %v", err)
	}
	if !bytes.Equal(readFile(t, backing), make([]byte, 32<<20)) {
		t.Fatal("refused write modified the device")
	}

	pl := newProgressLog(t)
	res, err := WriteUSB(context.Background(), USBOptions{AnyImage: true, Device: dev, Image: imgPath, Force: true, Progress: pl.fn})
	if err != nil {
		t.Fatal(err)
	}
	if !res.BlockDevice || res.DeviceSize != 32<<20 || res.SHA256 != sha(img) {
		t.Errorf("result %+v", res)
	}
	got := readFile(t, dev)
	if !bytes.Equal(got[:len(img)], img) || !bytes.Equal(got[len(img):], make([]byte, len(got)-len(img))) {
		t.Error("device does not hold the image followed by the untouched rest")
	}
	if p := pl.final["verify"]; p.Done != int64(len(img)) {
		t.Errorf("verify progress %+v", p)
	}
}

func TestWriteUSBRefusesTooSmallDevice(t *testing.T) {
	dev, backing := loopDevice(t, 4<<20)
	imgPath := writeTemp(t, "usb.img", randBytes(35, 8<<20))
	_, err := WriteUSB(context.Background(), USBOptions{AnyImage: true, Device: dev, Image: imgPath, Force: true})
	if e := asError(t, err); !strings.Contains(e.Msg, "it holds 4194304 bytes (4 MiB), the image needs 8388608 (8 MiB)") {
		t.Errorf("err %v", err)
	}
	if !bytes.Equal(readFile(t, backing), make([]byte, 4<<20)) {
		t.Error("device modified")
	}
}

// intactAfter checks a refused write left the mounted file system alone: the image is not
// on the device, and a file written before the attempt survives unmount and remount.
// (Comparing raw bytes cannot work: mount and umount update the superblock themselves.)
func intactAfter(t *testing.T, dev, mnt, backing string, img []byte, attempt func()) {
	t.Helper()
	marker := randBytes(99, 10000)
	if err := os.WriteFile(filepath.Join(mnt, "marker"), marker, 0o644); err != nil {
		t.Fatal(err)
	}
	attempt()
	run(t, "umount", mnt)
	if bytes.Contains(readFile(t, backing), img[:4096]) {
		t.Error("the image was written to the device")
	}
	run(t, "mount", "-o", "ro", dev, mnt)
	if !bytes.Equal(readFile(t, filepath.Join(mnt, "marker")), marker) {
		t.Error("file on the mounted file system lost")
	}
}

func TestWriteUSBRefusesMountedDevice(t *testing.T) {
	dev, backing := loopDevice(t, 64<<20)
	mnt := mkfsMount(t, dev)
	img := randBytes(36, 1<<20)
	imgPath := writeTemp(t, "usb.img", img)
	intactAfter(t, dev, mnt, backing, img, func() {
		_, err := WriteUSB(context.Background(), USBOptions{AnyImage: true, Device: dev, Image: imgPath, Force: true})
		want := fmt.Sprintf("it is mounted: %s on %s", dev, mnt)
		if e := asError(t, err); !strings.Contains(e.Msg, want) || !strings.Contains(e.Hint, "umount "+mnt) {
			t.Errorf("err %v, want %q", err, want)
		}
	})
}

// A mounted partition makes its whole disk unwritable, and a partition is never a target.
func TestWriteUSBRefusesDiskWithMountedPartition(t *testing.T) {
	needTool(t, "sgdisk", "gdisk")
	backing := writeTemp(t, "backing.img", nil)
	if err := os.Truncate(backing, 64<<20); err != nil {
		t.Fatal(err)
	}
	run(t, "sgdisk", "-n", "1:2048:+40M", "-t", "1:0700", backing)
	dev := attachLoop(t, backing)
	part := dev + "p1"
	if _, err := os.Stat(part); err != nil {
		// Kernels without GPT parsing (CONFIG_EFI_PARTITION off) do not scan the table;
		// partx adds the partition from user space.
		needTool(t, "partx", "util-linux")
		run(t, "partx", "-a", dev)
	}
	if _, err := os.Stat(part); err != nil {
		t.Fatalf("partition node %s did not appear: %v", part, err)
	}
	mnt := mkfsMount(t, part)
	img := randBytes(37, 1<<20)
	imgPath := writeTemp(t, "usb.img", img)
	intactAfter(t, part, mnt, backing, img, func() {
		_, err := WriteUSB(context.Background(), USBOptions{AnyImage: true, Device: dev, Image: imgPath, Force: true})
		want := fmt.Sprintf("it is mounted: %s on %s", part, mnt)
		if e := asError(t, err); !strings.Contains(e.Msg, want) {
			t.Errorf("err %v, want %q", err, want)
		}
		_, err = WriteUSB(context.Background(), USBOptions{AnyImage: true, Device: part, Image: imgPath, Force: true})
		want = fmt.Sprintf("it is partition 1 of %s", dev)
		if e := asError(t, err); !strings.Contains(e.Msg, want) {
			t.Errorf("err %v, want %q", err, want)
		}
	})
}

// The running system's root disk must be refused. Only the checks run here, never a write:
// a bug must not be able to destroy the machine running the tests.
func TestRefusesRealRootDisk(t *testing.T) {
	h := realHost()
	f, err := os.Open(h.mountinfo)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ms, err := parseMountinfo(bufio.NewReader(f))
	if err != nil {
		t.Fatal(err)
	}
	var rootDev string
	for _, m := range ms {
		if m.MountPoint == "/" {
			rootDev = m.Dev
		}
	}
	bi, err := h.inspect(rootDev)
	if err != nil {
		// Containers often run on overlayfs (no block device): the fabricated tree in
		// TestRefuseFakeSysfs covers the logic there.
		t.Logf("root %s is not on a block device (%v); only the fake-sysfs test applies", rootDev, err)
		return
	}
	disk := bi
	if bi.Partition != "" {
		dv, err := readTrim(filepath.Join(h.sys, "block", bi.Parent, "dev"))
		if err != nil {
			t.Fatal(err)
		}
		if disk, err = h.inspect(dv); err != nil {
			t.Fatal(err)
		}
	}
	err = h.refuse("/dev/"+disk.Name, disk, 1, true)
	if err == nil || !strings.Contains(err.Error(), "holds the running root filesystem") {
		t.Errorf("root disk %s: %v", disk.Name, err)
	}
}

// fakeSys builds a sysfs tree: sda (removable, 8 GiB) with sda1 and sda2, dm-0 on sda2,
// and sdb (not removable).
func fakeSys(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	w := func(p, s string) {
		p = filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ln := func(target, p string) {
		target, p = filepath.Join(root, target), filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	sda := "devices/pci0000:00/usb1/1-1/host6/block/sda"
	w(sda+"/dev", "8:0")
	w(sda+"/removable", "1")
	w(sda+"/ro", "0")
	w(sda+"/size", "16777216")
	os.MkdirAll(filepath.Join(root, sda, "holders"), 0o755)
	for i, d := range []string{"8:1", "8:2"} {
		p := fmt.Sprintf("%s/sda%d", sda, i+1)
		w(p+"/dev", d)
		w(p+"/partition", fmt.Sprint(i+1))
		os.MkdirAll(filepath.Join(root, p, "holders"), 0o755)
		ln(p, "dev/block/"+d)
	}
	ln("devices/virtual/block/dm-0", sda+"/sda2/holders/dm-0")
	w("devices/virtual/block/dm-0/dev", "254:0")
	ln("devices/virtual/block/dm-0", "dev/block/254:0")
	ln(sda, "dev/block/8:0")
	sdb := "devices/pci0000:00/ata1/host0/block/sdb"
	w(sdb+"/dev", "8:16")
	w(sdb+"/removable", "0")
	w(sdb+"/size", "16777216")
	ln(sdb, "dev/block/8:16")
	return root
}

func TestRefuseFakeSysfs(t *testing.T) {
	sys := fakeSys(t)
	mi := func(lines ...string) string {
		return writeTemp(t, "mountinfo", []byte(strings.Join(lines, "\n")+"\n"))
	}
	const rootLine = "1 0 254:0 / / rw - ext4 /dev/mapper/vg-root rw"
	swaps := writeTemp(t, "swaps", []byte("Filename\tType\tSize\tUsed\tPriority\n"))
	for _, tc := range []struct {
		name, dev, mountinfo string
		force                bool
		want                 string // "" = allowed
	}{
		{"root on dm on a partition", "8:0", mi(rootLine), true, "holds the running root filesystem (/ is on dm-0)"},
		{"dm holder, not mounted", "8:0", mi("1 0 0:20 / / rw - overlay overlay rw"), true, "in use by dm-0"},
		{"partition", "8:1", mi("1 0 0:20 / / rw - overlay overlay rw"), true, "it is partition 1 of /dev/sda"},
		{"mounted with an escaped path", "8:16", mi(rootLine, `2 1 8:16 / /media/my\040key rw - vfat /dev/sdb rw`), true,
			"it is mounted: /dev/sdb on /media/my key"},
		{"btrfs anonymous dev, source names it", "8:16", mi(rootLine, "2 1 0:45 / /srv rw - btrfs /dev/sdb rw"), true,
			"it is mounted: /dev/sdb on /srv"},
		{"not removable", "8:16", mi(rootLine), false, "it is not removable"},
		{"not removable, forced", "8:16", mi(rootLine), true, ""},
		{"too small", "8:16", mi(rootLine), true, "the image needs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := host{sys: sys, mountinfo: tc.mountinfo, swaps: swaps, devOf: func(p string) (string, bool) {
				return map[string]string{"/dev/sdb": "8:16", "/dev/sda": "8:0"}[p], p == "/dev/sdb" || p == "/dev/sda"
			}}
			bi, err := h.inspect(tc.dev)
			if err != nil {
				t.Fatal(err)
			}
			size := int64(1 << 20)
			if tc.name == "too small" {
				size = 16777216*512 + 1
			}
			err = h.refuse("/dev/x", bi, size, tc.force)
			if tc.want == "" {
				if err != nil {
					t.Errorf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
	h := host{sys: sys, mountinfo: mi(rootLine), swaps: writeTemp(t, "swaps2",
		[]byte("Filename\tType\tSize\tUsed\tPriority\n/dev/sdb\tpartition\t1\t0\t-2\n")),
		devOf: func(p string) (string, bool) { return "8:16", p == "/dev/sdb" }}
	bi, _ := h.inspect("8:16")
	if err := h.refuse("/dev/sdb", bi, 1, true); err == nil || !strings.Contains(err.Error(), "active swap") {
		t.Errorf("swap: %v", err)
	}
}

func BenchmarkWriteUSBFile64MiB(b *testing.B) {
	img := writeTemp(b, "usb.img", randBytes(40, 64<<20))
	target := filepath.Join(b.TempDir(), "out.img")
	b.SetBytes(64 << 20)
	for b.Loop() {
		if _, err := WriteUSB(context.Background(), USBOptions{AnyImage: true, Device: target, Image: img}); err != nil {
			b.Fatal(err)
		}
	}
}
