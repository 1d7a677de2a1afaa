package pipeline

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/fwbuild/fwbuild/boardcfg"
	"github.com/fwbuild/fwbuild/contract"
	"github.com/fwbuild/fwbuild/internal/atomicfile"
	"github.com/fwbuild/fwbuild/internal/testdeps"
)

// The guest images build to the same bytes in two fresh caches, at
// different wall-clock times (mke2fs copies the staged files' ctime).
func TestGuestImagesReproducible(t *testing.T) {
	o := q35Options(t, t.TempDir())
	o.Epoch = DefaultEpoch
	comps, err := Fetch(context.Background(), o.Board, o.CacheDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	var sums []map[string]string
	for i := range 2 {
		if i == 1 {
			time.Sleep(1100 * time.Millisecond)
		}
		r := &run{Options: o, tool: "test", comps: comps}
		r.CacheDir = t.TempDir()
		res, err := r.guestImages(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		files, paths, err := guestImageFiles(res)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for j, f := range files {
			sum, n, err := atomicfile.HashFile(paths[j])
			if err != nil || sum != f.SHA256 || n != f.Size {
				t.Fatalf("%s: file %s/%d, manifest %s/%d (%v)", paths[j], sum, n, f.SHA256, f.Size, err)
			}
			m[f.Image+"/"+f.Name] = sum
		}
		data, _ := res.read(guestImagesManifest)
		m["manifest"] = string(data)
		sums = append(sums, m)
	}
	for k, v := range sums[0] {
		if sums[1][k] != v {
			t.Errorf("%s differs between two builds", k)
		}
	}
	if len(sums[0]) != 6 { // debian: vmlinuz initrd root.img; installer: vmlinuz initrd; the manifest
		t.Errorf("built %d files, want 6: %v", len(sums[0]), sums[0])
	}
}

// A qemu-q35 build: the manifest is in both payloads, every listed file is
// an artefact and on usb.img's images partition with its pinned hash, and
// the xl configs boot the images' files from the data disk.
func TestGuestImagesBuild(t *testing.T) {
	out := t.TempDir()
	if _, err := Build(context.Background(), q35Options(t, out)); err != nil {
		t.Fatal(err)
	}
	b := testdeps.Board(t, "qemu-q35")
	var m contract.GuestImages
	esp, _ := os.ReadFile(filepath.Join(out, "payload-esp.efi"))
	flash, _ := os.ReadFile(filepath.Join(out, "payload-flash.efi"))
	for name, payload := range map[string][]byte{"payload-esp.efi": esp, "payload-flash.efi": flash} {
		// The manifest rides uncompressed in a cpio appended to the initramfs.
		i := bytes.Index(payload, []byte(strings.TrimPrefix(contract.GuestImagesManifest, "/")+"\x00"))
		if i < 0 {
			t.Fatalf("%s carries no %s", name, contract.GuestImagesManifest)
		}
		j := bytes.Index(payload[i:], []byte("{"))
		k := bytes.Index(payload[i:], []byte("\n}\n"))
		got, err := contract.ParseGuestImages(payload[i+j : i+k+3])
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		m = got
	}
	if len(m.Files) != 5 {
		t.Fatalf("manifest lists %d files, want 5: %+v", len(m.Files), m.Files)
	}

	d, err := diskfs.Open(filepath.Join(out, "usb.img"), diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	table, err := d.GetPartitionTable()
	if err != nil {
		t.Fatal(err)
	}
	parts := table.(*gpt.Table).Partitions
	if len(parts) < 2 || parts[1].Name != contract.ImagesPartitionName {
		t.Fatalf("usb.img partitions %+v: want the ESP then %s", parts, contract.ImagesPartitionName)
	}
	fs, err := d.GetFilesystem(2)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range m.Files {
		wantURL := strings.TrimSuffix(b.GuestImagesURL, "/") + "/" + contract.GuestImageArtefact(f.Image, f.Name)
		if f.MediaPath != f.Image+"/"+f.Name || f.URL != wantURL {
			t.Errorf("%s/%s: media %q url %q, want %s/%s and %s", f.Image, f.Name, f.MediaPath, f.URL, f.Image, f.Name, wantURL)
		}
		sum, n, err := atomicfile.HashFile(filepath.Join(out, contract.GuestImageArtefact(f.Image, f.Name)))
		if err != nil || sum != f.SHA256 || n != f.Size {
			t.Errorf("artefact %s: %s/%d, manifest %s/%d (%v)", contract.GuestImageArtefact(f.Image, f.Name), sum, n, f.SHA256, f.Size, err)
		}
		r, err := fs.OpenFile("/"+f.MediaPath, os.O_RDONLY)
		if err != nil {
			t.Errorf("images partition: %s: %v", f.MediaPath, err)
			continue
		}
		var buf bytes.Buffer
		buf.ReadFrom(r)
		if got := sha256hex(buf.Bytes()); got != f.SHA256 || int64(buf.Len()) != f.Size {
			t.Errorf("images partition: %s: %s/%d, manifest %s/%d", f.MediaPath, got, buf.Len(), f.SHA256, f.Size)
		}
	}

	cpio, _ := os.ReadFile(filepath.Join(out, "guests.cpio"))
	for name, want := range map[string][]string{
		"debian":    {`type = "pvh"`, `kernel = "/var/lib/fwbuild/data/images/debian/vmlinuz"`, `ramdisk = "/var/lib/fwbuild/data/images/debian/initrd"`, "root=/dev/xvda"},
		"installer": {`type = "pv"`, `kernel = "/var/lib/fwbuild/data/images/debian-installer/vmlinuz"`},
		"demo":      {`type = "pv"`, `kernel = "/var/lib/fwbuild/guests/demo/vmlinuz"`},
	} {
		i := bytes.Index(cpio, []byte("name = \""+name+"\""))
		if i < 0 {
			t.Fatalf("guests.cpio has no xl config for %s", name)
		}
		cfg := string(cpio[i:min(len(cpio), i+600)])
		for _, w := range want {
			if !strings.Contains(cfg, w) {
				t.Errorf("xl config of %s lacks %s:\n%s", name, w, cfg)
			}
		}
	}
}

func sha256hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func TestGuestTypeAndXLConfig(t *testing.T) {
	dir := t.TempDir()
	pvh := filepath.Join(dir, "config-pvh")
	os.WriteFile(pvh, []byte("CONFIG_XEN_PV=y\nCONFIG_XEN_PVH=y\n"), 0o644)
	pv := filepath.Join(dir, "config-pv")
	os.WriteFile(pv, []byte("CONFIG_XEN_PV=y\n# CONFIG_XEN_PVH is not set\n"), 0o644)
	for _, c := range []struct {
		g    boardcfg.Guest
		cfg  string
		want string
	}{
		{boardcfg.Guest{Image: "debian"}, pvh, "pvh"},
		{boardcfg.Guest{Image: "debian", Type: "auto"}, pv, "pv"},
		{boardcfg.Guest{Image: "debian", Type: "pv"}, pvh, "pv"},
		{boardcfg.Guest{Image: "debian", Type: "pvh"}, "", "pvh"},
		{boardcfg.Guest{Image: "installer"}, "", "pv"}, // no config to tell
		{boardcfg.Guest{Kernel: boardcfg.GuestKernel{Ref: boardcfg.GuestKernelDom0}}, pvh, "pv"},
	} {
		if got := guestType(c.g, c.cfg); got != c.want {
			t.Errorf("guestType(%+v, %s) = %s, want %s", c.g, filepath.Base(c.cfg), got, c.want)
		}
	}
	img := boardcfg.GuestImage{Name: "debian", Busybox: "bb", Cmdline: "quiet"}
	cfg := string(xlConfig(boardcfg.Guest{Name: "web", Memory: 256 << 20, Image: "debian", Cmdline: "fwbuild.fetch=http://10.0.2.2/x", Autostart: true}, &img, "pvh", ""))
	for _, want := range []string{
		"# fwbuild: autostart=yes\n", `type = "pvh"`, "memory = 256\n",
		`kernel = "/var/lib/fwbuild/data/images/debian/vmlinuz"`, `ramdisk = "/var/lib/fwbuild/data/images/debian/initrd"`,
		`extra = "console=hvc0 fwbuild.guest=web fwbuild.after=poweroff root=/dev/xvda quiet fwbuild.fetch=http://10.0.2.2/x"`,
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("xl config lacks %s:\n%s", want, cfg)
		}
	}
	if got := contract.ParseXLType([]byte(cfg)); got != "pvh" || !contract.ParseTypeAuto([]byte(cfg)) {
		t.Errorf("ParseXLType = %q, ParseTypeAuto = %v: want pvh chosen by auto", got, contract.ParseTypeAuto([]byte(cfg)))
	}
	if cfg := xlConfig(boardcfg.Guest{Name: "web", Memory: 256 << 20, Image: "debian", Type: "pvh"}, &img, "pvh", ""); contract.ParseTypeAuto(cfg) {
		t.Errorf("type: pvh asked for explicitly is marked auto:\n%s", cfg)
	}
	inst := boardcfg.GuestImage{Name: "debian-installer", Initrd: "di:initrd"}
	if cfg := string(xlConfig(boardcfg.Guest{Name: "inst", Memory: 512 << 20, Image: "debian-installer"}, &inst, "pv", "")); strings.Contains(cfg, "root=") {
		t.Errorf("the installer gets a root= it has no use for:\n%s", cfg)
	}
}
