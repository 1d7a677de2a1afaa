package hvcore

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// GrubSpec is the input for BuildGrub.
type GrubSpec struct {
	// Mkimage is the host's grub-mkimage (package grub-common); empty means
	// grub-mkimage from PATH.
	Mkimage string
	// ModuleDir holds GRUB's x86_64-efi modules, kernel.img and moddep.lst
	// (package grub-efi-amd64-bin: usr/lib/grub/x86_64-efi).
	ModuleDir string
	// Xz is the xz binary used to recompress Xen; empty means xz from PATH.
	Xz string

	XenGz  []byte // Xen's multiboot2 image, gzipped (/boot/xen-*.gz)
	Kernel []byte // dom0 bzImage
	Initrd []byte // control domain initramfs

	XenOptions  string
	Dom0Cmdline string

	// Mtime stamps every memdisk entry (use SOURCE_DATE_EPOCH); zero means
	// the Unix epoch.
	Mtime time.Time
	// TempDir is where scratch files go; empty means os.TempDir().
	TempDir string
}

// grubModules are the GRUB modules built into the flash payload (their
// dependencies are added by grub-mkimage): the memdisk and its tar file
// system, normal (reads grub.cfg), serial and terminal for the serial
// console, multiboot2 and boot to start Xen; the decompressor matching
// Xen's image is appended.
var grubModules = []string{"memdisk", "tar", "normal", "serial", "terminal", "multiboot2", "boot"}

// GrubImage is a built flash payload and what its memdisk holds.
type GrubImage struct {
	Data []byte
	// Members are the memdisk's files and their sizes, e.g. "xen.xz", "vmlinuz".
	Members map[string]int64
}

// BuildGrub builds a standalone GRUB EFI application whose embedded
// memdisk holds Xen, the dom0 kernel, the initramfs and a grub.cfg that
// boots them with multiboot2. Xen is recompressed with xz when that is
// smaller than the gzip it came in (GRUB decompresses either).
func BuildGrub(ctx context.Context, s GrubSpec) (*GrubImage, error) {
	if len(s.XenGz) == 0 || len(s.Kernel) == 0 || len(s.Initrd) == 0 {
		return nil, errors.New("hvcore: GRUB payload: Xen, the dom0 kernel and the initramfs are all required")
	}
	xenArgs, err := grubWords("Xen options", s.XenOptions)
	if err != nil {
		return nil, err
	}
	dom0Args, err := grubWords("dom0 command line", s.Dom0Cmdline)
	if err != nil {
		return nil, err
	}
	mkimage := s.Mkimage
	if mkimage == "" {
		mkimage = "grub-mkimage"
	}
	if mkimage, err = exec.LookPath(mkimage); err != nil {
		return nil, fmt.Errorf("hvcore: GRUB payload: grub-mkimage not found (%w): apt-get install grub-common", err)
	}
	if err := checkModuleDir(s.ModuleDir); err != nil {
		return nil, err
	}

	xen, xenName, err := smallestXen(ctx, s.Xz, s.XenGz)
	if err != nil {
		return nil, err
	}
	decomp := "gzio"
	if strings.HasSuffix(xenName, ".xz") {
		decomp = "xzio"
	}
	cfg := grubConfig(xenName, xenArgs, dom0Args)
	members := map[string][]byte{
		"boot/grub/grub.cfg": cfg,
		xenName:              xen,
		"vmlinuz":            s.Kernel,
		"initrd":             s.Initrd,
	}
	tarball, err := memdiskTar(s.Mtime, members)
	if err != nil {
		return nil, err
	}

	dir, err := os.MkdirTemp(s.TempDir, "hvcore-grub-")
	if err != nil {
		return nil, fmt.Errorf("hvcore: GRUB payload: %w", err)
	}
	defer os.RemoveAll(dir)
	tarPath := filepath.Join(dir, "memdisk.tar")
	outPath := filepath.Join(dir, "grub.efi")
	if err := os.WriteFile(tarPath, tarball, 0o644); err != nil {
		return nil, fmt.Errorf("hvcore: GRUB payload: %w", err)
	}
	args := []string{"-O", "x86_64-efi", "-d", s.ModuleDir, "-p", "(memdisk)/boot/grub",
		"-m", tarPath, "-o", outPath}
	args = append(args, grubModules...)
	args = append(args, decomp)
	cmd := exec.CommandContext(ctx, mkimage, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("hvcore: GRUB payload: %s %s: %w: %s", mkimage, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	out, err := os.ReadFile(outPath)
	if err != nil {
		return nil, fmt.Errorf("hvcore: GRUB payload: %w", err)
	}
	img := &GrubImage{Data: out, Members: map[string]int64{}}
	for name, data := range members {
		img.Members[strings.TrimPrefix(name, "/")] = int64(len(data))
	}
	return img, nil
}

func checkModuleDir(dir string) error {
	if dir == "" {
		return errors.New("hvcore: GRUB payload: no GRUB module directory given (usr/lib/grub/x86_64-efi from grub-efi-amd64-bin)")
	}
	for _, f := range []string{"kernel.img", "moddep.lst"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return fmt.Errorf("hvcore: GRUB payload: %s is not a GRUB x86_64-efi module directory (%w); it comes from grub-efi-amd64-bin (usr/lib/grub/x86_64-efi)", dir, err)
		}
	}
	return nil
}

// grubConfig writes the memdisk's grub.cfg. Each command-line word is a
// separate GRUB argument; GRUB joins them with spaces for Xen and dom0.
func grubConfig(xenName string, xenArgs, dom0Args []string) []byte {
	var b bytes.Buffer
	b.WriteString("serial --unit=0 --speed=115200\n")
	b.WriteString("terminal_output serial console\n")
	b.WriteString(strings.Join(append([]string{"multiboot2", "/" + xenName}, xenArgs...), " ") + "\n")
	b.WriteString(strings.Join(append([]string{"module2", "/vmlinuz"}, dom0Args...), " ") + "\n")
	b.WriteString("module2 /initrd\n")
	b.WriteString("boot\n")
	return b.Bytes()
}

// grubWords splits a command line into words quoted for GRUB's script
// parser. Quote characters and backslashes are refused: GRUB versions
// differ in how they re-escape them for the loaded kernel.
func grubWords(field, cmdline string) ([]string, error) {
	if err := checkCmdline(field, cmdline); err != nil {
		return nil, err
	}
	if i := strings.IndexAny(cmdline, `'"\`); i >= 0 {
		return nil, fmt.Errorf("hvcore: %s: %q at byte %d: quotes and backslashes cannot be passed through GRUB unchanged", field, cmdline[i], i)
	}
	words := strings.Fields(cmdline)
	for i, w := range words {
		if strings.Trim(w, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.,:=/+@%-") != "" {
			words[i] = "'" + w + "'" // no expansion inside single quotes
		}
	}
	return words, nil
}

// smallestXen returns Xen as the smaller of the given gzip and an xz
// recompression, with its memdisk file name.
func smallestXen(ctx context.Context, xzPath string, gz []byte) ([]byte, string, error) {
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, "", fmt.Errorf("hvcore: GRUB payload: Xen image is not gzip (want /boot/xen-*.gz): %w", err)
	}
	zr.Multistream(false)
	raw, err := io.ReadAll(zr)
	if err != nil {
		return nil, "", fmt.Errorf("hvcore: GRUB payload: decompressing Xen: %w", err)
	}
	xz, err := xzCompress(ctx, xzPath, raw)
	if err != nil {
		return nil, "", err
	}
	if len(xz) < len(gz) {
		return xz, "xen.xz", nil
	}
	return gz, "xen.gz", nil
}

// xzCompress runs xz single-threaded (multi-threaded xz splits the stream
// into blocks depending on the host) with CRC32, which GRUB's xzio checks,
// and a dictionary no larger than the input, because GRUB allocates the
// full dictionary the header asks for.
func xzCompress(ctx context.Context, xzPath string, raw []byte) ([]byte, error) {
	if xzPath == "" {
		xzPath = "xz"
	}
	path, err := exec.LookPath(xzPath)
	if err != nil {
		return nil, fmt.Errorf("hvcore: GRUB payload: xz not found (%w): apt-get install xz-utils", err)
	}
	dict := 1 << 20
	for dict < len(raw) && dict < 64<<20 {
		dict <<= 1
	}
	cmd := exec.CommandContext(ctx, path, "--format=xz", "--check=crc32", "--threads=1",
		fmt.Sprintf("--lzma2=preset=9,dict=%d", dict), "--stdout", "-")
	cmd.Stdin = bytes.NewReader(raw)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("hvcore: GRUB payload: xz: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return out.Bytes(), nil
}

// memdiskTar writes a deterministic ustar archive: sorted names, parent
// directories first, one mtime, root ownership.
func memdiskTar(mtime time.Time, files map[string][]byte) ([]byte, error) {
	if mtime.IsZero() {
		mtime = time.Unix(0, 0)
	}
	if mtime.Unix() < 0 {
		return nil, fmt.Errorf("hvcore: memdisk: mtime %v is before 1970", mtime)
	}
	mtime = time.Unix(mtime.Unix(), 0).UTC()
	entries := map[string]bool{} // name -> is a directory
	for name := range files {
		entries[name] = false
		for d := filepath.Dir(name); d != "."; d = filepath.Dir(d) {
			entries[d+"/"] = true
		}
	}
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)

	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, n := range names {
		h := &tar.Header{Name: n, ModTime: mtime, Format: tar.FormatUSTAR, Mode: 0o644, Typeflag: tar.TypeReg}
		if entries[n] {
			h.Mode, h.Typeflag = 0o755, tar.TypeDir
		} else {
			h.Size = int64(len(files[n]))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("hvcore: memdisk: %s: %w", n, err)
		}
		if _, err := tw.Write(files[n]); err != nil {
			return nil, fmt.Errorf("hvcore: memdisk: %s: %w", n, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("hvcore: memdisk: %w", err)
	}
	return b.Bytes(), nil
}
