package hvcore

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"debug/pe"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/internal/testdeps"
	"github.com/ulikunitz/xz"
)

const (
	testXenOpts  = "console=com1 com1=115200,8n1 loglvl=all guest_loglvl=all dom0_mem=512M,max:512M bootscrub=false"
	testDom0Opts = "console=hvc0 earlyprintk=xen"
)

func needTools(t testing.TB) {
	t.Helper()
	for tool, pkg := range map[string]string{"grub-mkimage": "grub-common", "xz": "xz-utils"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: apt-get install %s", tool, pkg)
		}
	}
}

func grubSpec(t testing.TB) GrubSpec {
	return GrubSpec{
		ModuleDir:   testdeps.File(t, "grub", "modules"),
		XenGz:       readFile(t, "xen", "gz"),
		Kernel:      readFile(t, "linux-image", "bzimage"),
		Initrd:      bytes.Repeat([]byte("initramfs "), 10000),
		XenOptions:  testXenOpts,
		Dom0Cmdline: testDom0Opts,
		Mtime:       time.Unix(1700000000, 0),
		TempDir:     t.TempDir(),
	}
}

// memdiskOf finds the memdisk tar that grub-mkimage embedded (uncompressed)
// in the image: the first ustar header named "boot/".
func memdiskOf(t *testing.T, img []byte) *tar.Reader {
	t.Helper()
	for i := 0; ; {
		j := bytes.Index(img[i:], []byte("boot/\x00"))
		if j < 0 {
			t.Fatal("no memdisk tar in the GRUB image")
		}
		i += j
		if i+512 <= len(img) && string(img[i+257:i+262]) == "ustar" {
			return tar.NewReader(bytes.NewReader(img[i:]))
		}
		i++
	}
}

func TestGrubPayload(t *testing.T) {
	needTools(t)
	s := grubSpec(t)
	ctx := context.Background()
	gi, err := BuildGrub(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	img := gi.Data
	f, err := pe.NewFile(bytes.NewReader(img))
	if err != nil {
		t.Fatalf("GRUB image is not a PE: %v", err)
	}
	if oh, ok := f.OptionalHeader.(*pe.OptionalHeader64); f.Machine != pe.IMAGE_FILE_MACHINE_AMD64 || !ok || oh.Subsystem != pe.IMAGE_SUBSYSTEM_EFI_APPLICATION {
		t.Errorf("GRUB image is not an x86-64 EFI application")
	}

	zr, err := gzip.NewReader(bytes.NewReader(s.XenGz))
	if err != nil {
		t.Fatal(err)
	}
	xenRaw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	wantCfg := "serial --unit=0 --speed=115200\n" +
		"terminal_output serial console\n" +
		"multiboot2 /xen.xz " + testXenOpts + "\n" +
		"module2 /vmlinuz " + testDom0Opts + "\n" +
		"module2 /initrd\n" +
		"boot\n"

	tr := memdiskOf(t, img)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" || !h.ModTime.Equal(s.Mtime) {
			t.Errorf("%s: uid %d gid %d %q %q mtime %v; want root, no names, %v", h.Name, h.Uid, h.Gid, h.Uname, h.Gname, h.ModTime, s.Mtime)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		switch h.Name {
		case "boot/grub/grub.cfg":
			if string(data) != wantCfg {
				t.Errorf("grub.cfg =\n%s\nwant\n%s", data, wantCfg)
			}
		case "vmlinuz":
			if !bytes.Equal(data, s.Kernel) {
				t.Error("vmlinuz differs from the kernel")
			}
		case "initrd":
			if !bytes.Equal(data, s.Initrd) {
				t.Error("initrd differs from the initramfs")
			}
		case "xen.xz":
			// GRUB's xzio verifies CRC32 (stream flags 0x00 0x01).
			if !bytes.HasPrefix(data, []byte("\xfd7zXZ\x00\x00\x01")) {
				t.Errorf("xen.xz stream header % x: want xz with CRC32", data[:min(8, len(data))])
			}
			if len(data) >= len(s.XenGz) {
				t.Errorf("xen.xz (%d bytes) is not smaller than xen.gz (%d)", len(data), len(s.XenGz))
			}
			xr, err := xz.NewReader(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(xr)
			if err != nil || !bytes.Equal(got, xenRaw) {
				t.Errorf("xen.xz does not decompress to Xen (err %v)", err)
			}
		}
	}
	want := []string{"boot/", "boot/grub/", "boot/grub/grub.cfg", "initrd", "vmlinuz", "xen.xz"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("memdisk holds %v, want %v", names, want)
	}

	// Byte-stable across runs, whatever the scratch directory.
	s.TempDir = t.TempDir()
	again, err := buildGrubData(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(img, again) {
		t.Error("two builds of the GRUB payload differ")
	}
}

func TestGrubPayloadErrors(t *testing.T) {
	needTools(t)
	ctx := context.Background()
	cases := []struct {
		name   string
		modify func(*testing.T, *GrubSpec)
		want   string
	}{
		{"missing grub-mkimage", func(t *testing.T, s *GrubSpec) { s.Mkimage = filepath.Join(t.TempDir(), "grub-mkimage") }, "apt-get install grub-common"},
		{"grub-mkimage not on PATH", func(t *testing.T, s *GrubSpec) { t.Setenv("PATH", t.TempDir()) }, "apt-get install grub-common"},
		{"no module dir", func(t *testing.T, s *GrubSpec) { s.ModuleDir = "" }, "grub-efi-amd64-bin"},
		{"wrong module dir", func(t *testing.T, s *GrubSpec) { s.ModuleDir = t.TempDir() }, "grub-efi-amd64-bin"},
		{"xen not gzip", func(t *testing.T, s *GrubSpec) { s.XenGz = s.Kernel }, "Xen image is not gzip"},
		{"no initrd", func(t *testing.T, s *GrubSpec) { s.Initrd = nil }, "all required"},
		{"newline in Xen options", func(t *testing.T, s *GrubSpec) { s.XenOptions = "a\nboot" }, "Xen options"},
		{"quote in dom0 cmdline", func(t *testing.T, s *GrubSpec) { s.Dom0Cmdline = `foo="a b"` }, "dom0 command line"},
		{"missing xz", func(t *testing.T, s *GrubSpec) { s.Xz = filepath.Join(t.TempDir(), "xz") }, "apt-get install xz-utils"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := grubSpec(t)
			s.Kernel = []byte("not a kernel")
			c.modify(t, &s)
			_, err := buildGrubData(ctx, s)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want one containing %q", err, c.want)
			}
		})
	}
}

func TestGrubWords(t *testing.T) {
	got, err := grubWords("f", "  console=com1  a;b $x dom0_mem=512M,max:512M #c {d}")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"console=com1", "'a;b'", "'$x'", "dom0_mem=512M,max:512M", "'#c'", "'{d}'"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("grubWords = %q, want %q", got, want)
	}
}

func TestSmallestXenKeepsGzip(t *testing.T) {
	needTools(t)
	// Random data does not compress: xz's framing is larger than stored gzip blocks.
	raw := make([]byte, 256<<10)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.NoCompression)
	zw.Write(raw)
	zw.Close()
	data, name, err := smallestXen(context.Background(), "", gz.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if name != "xen.gz" || !bytes.Equal(data, gz.Bytes()) {
		t.Errorf("got %s (%d bytes), want the original xen.gz (%d bytes)", name, len(data), gz.Len())
	}
	if c := grubConfig(name, nil, nil); !bytes.Contains(c, []byte("multiboot2 /xen.gz\n")) {
		t.Errorf("grub.cfg does not load xen.gz:\n%s", c)
	}
}

func BenchmarkGrubPayload(b *testing.B) {
	needTools(b)
	s := grubSpec(b)
	var out []byte
	for b.Loop() {
		var err error
		if out, err = buildGrubData(context.Background(), s); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(out)), "bytes")
	b.ReportMetric(float64(len(out)-len(s.Kernel)-len(s.Initrd)), "grub+xen-bytes")
}

// buildGrubData is BuildGrub's image bytes.
func buildGrubData(ctx context.Context, s GrubSpec) ([]byte, error) {
	gi, err := BuildGrub(ctx, s)
	if err != nil {
		return nil, err
	}
	return gi.Data, nil
}
