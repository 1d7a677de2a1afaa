package image

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/contract/bundle"
	"github.com/fwbuild/fwbuild/hvcore/pe/pesynth"
)

// checkBounds fails if a node below n claims bytes beyond its parent: every
// offset and size is non-negative and a node with bytes lies inside its
// parent. Volumes in a compressed section count from the decompressed
// data, which no node stands for, and the files of a FAT directory have
// no offset (capFiles bounds them by the partition), so they are checked
// only for sign.
func checkBounds(t *testing.T, n *Node) {
	t.Helper()
	var visit func(p *Node)
	visit = func(p *Node) {
		for _, c := range p.Children {
			if c.Offset < 0 || c.Size < 0 {
				t.Fatalf("%s in %s: offset %d, size %d", c.label(), p.label(), c.Offset, c.Size)
			}
			decompressed := c.Kind == "fv" && p.Kind == "file" && strings.Contains(c.Note, " section")
			if c.Size > 0 && !decompressed && p.Kind != "dir" && c.Offset+c.Size > p.Size {
				t.Fatalf("%s claims %#x..%#x, beyond its parent %s of %#x bytes", c.label(), c.Offset, c.Offset+c.Size, p.label(), p.Size)
			}
			visit(c)
		}
	}
	visit(n)
}

func TestInspectRefusesNonRegularFiles(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct{ p, want string }{
		"device": {"/dev/zero", "a device, not a regular file"},
		// Opening a FIFO without a writer would block: refused before.
		"fifo":      {fifo, "a named pipe, not a regular file"},
		"directory": {t.TempDir(), "is a directory"},
	} {
		if _, err := os.Stat(c.p); err != nil {
			t.Logf("%s: %v", name, err)
			continue
		}
		done := make(chan error, 1)
		go func() { _, err := Inspect(c.p); done <- err }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), c.want) || strings.Count(err.Error(), c.p) != 1 {
				t.Errorf("%s: error %v, want one naming %s once and saying %q", name, err, c.p, c.want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: Inspect(%s) blocks", name, c.p)
		}
	}
}

// sparse makes a file of size bytes that starts with head and takes no
// disk space, standing in for a disk image or a core dump.
func sparse(t *testing.T, name string, head []byte, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, head, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, size); err != nil {
		t.Fatal(err)
	}
	return p
}

// A file too large for the format its first bytes suggest is refused
// before it is read: the check must not allocate what the file claims.
func TestInspectSizeBounds(t *testing.T) {
	cpioHead := testArchive(t)
	for name, c := range map[string]struct {
		head []byte
		size int64
		want string
	}{
		"4 GiB of zeros":  {nil, 4 << 30, "more than the 256 MiB inspect reads as a chip or firmware image"},
		"huge PE":         {pesynth.Image(pesynth.Options{}), 600 << 20, "PE image of 629145600 bytes, more than the 512 MiB"},
		"huge cpio":       {cpioHead, 300 << 20, "cpio archive of 314572800 bytes, more than the 256 MiB"},
		"huge bundle":     {bundle.Encode(cpioHead), 300 << 20, "more than the 256 MiB"},
		"huge firmware":   {synthBase(t), 257 << 20, "more than the 256 MiB"},
		"1 byte past cap": {nil, maxChipImage + 1, "more than the 256 MiB"},
	} {
		p := sparse(t, "big", c.head, c.size)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := Inspect(p)
		runtime.ReadMemStats(&after)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", name, err, c.want)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
			t.Errorf("%s: %d bytes allocated to refuse the file", name, alloc)
		}
	}
	// At the cap, a chip image is still read.
	p := sparse(t, "cap", synthBase(t), 64<<20)
	if n, err := Inspect(p); err != nil || n.Size != 64<<20 {
		t.Errorf("64 MiB image: %+v, %v", n, err)
	}
}

// A PE image cut short lists each section with the bytes present and says
// which run past the end, instead of offsets beyond the file.
func TestInspectTruncatedPE(t *testing.T) {
	img := pesynth.Image(pesynth.Options{}) // .text 0x400+0x400, .data 0x800+0x200
	p := filepath.Join(t.TempDir(), "cut.efi")
	if err := os.WriteFile(p, img[:0x900], 0o644); err != nil {
		t.Fatal(err)
	}
	n, err := Inspect(p)
	if err != nil {
		t.Fatal(err)
	}
	checkBounds(t, n)
	if len(n.Children) != 2 || n.Children[0].Warning != "" || n.Children[0].Size != 0x400 {
		t.Fatalf("sections %+v", n.Children)
	}
	d := n.Children[1]
	if d.Name != ".data" || d.Offset != 0x800 || d.Size != 0x100 || d.Warning != "runs past the end of the file: 256 of 512 bytes present" {
		t.Errorf(".data: %+v", d)
	}
	want := []string{
		"pe " + p + " is truncated: 1 of its 2 sections run past the end of the file (copy or download it again)",
		"section .data runs past the end of the file: 256 of 512 bytes present",
	}
	if got := n.Warnings(); !slices.Equal(got, want) {
		t.Errorf("warnings %q, want %q", got, want)
	}
	// The complete image has no warnings.
	if err := os.WriteFile(p, img, 0o644); err != nil {
		t.Fatal(err)
	}
	if n, err := Inspect(p); err != nil || len(n.Warnings()) != 0 {
		t.Errorf("complete image: %v, warnings %q", err, n.Warnings())
	}
}

// A firmware image cut short lists the volumes before the cut and the
// volume that runs past the end, with a warning, rather than failing as
// "not a UEFI image" or listing the volume as complete.
func TestInspectTruncatedFirmware(t *testing.T) {
	base := synthBase(t) // 0xC000-byte volume, then a 0x4000-byte one
	for _, c := range []struct {
		cut     int
		volumes int
		warning string
	}{
		{0xC000 + 0x2000, 2, "runs past the end of the image: 8192 of 16384 bytes present"},
		{0x8000, 1, "runs past the end of the image: 32768 of 49152 bytes present"},
	} {
		n, err := inspectFirmware(base[:c.cut])
		if err != nil {
			t.Fatalf("cut at %#x: %v", c.cut, err)
		}
		checkBounds(t, n)
		if len(n.Children) != c.volumes {
			t.Fatalf("cut at %#x: %d nodes, want %d: %+v", c.cut, len(n.Children), c.volumes, n.Children)
		}
		last := n.Children[c.volumes-1]
		if last.Kind != "fv" || last.Size != int64(c.cut)-last.Offset || !strings.HasPrefix(last.Warning, c.warning) || len(last.Children) != 0 {
			t.Errorf("cut at %#x: last volume %+v, want warning %q", c.cut, last, c.warning)
		}
		if c.volumes == 2 && n.Children[0].find("file", "Shell") == nil {
			t.Errorf("cut at %#x: the complete first volume lost its files", c.cut)
		}
	}
	// OVMF cut to a third: its first volume is listed as truncated.
	code := ovmfCode(t)
	n, err := inspectFirmware(code[:len(code)/3])
	if err != nil {
		t.Fatal(err)
	}
	if w := n.Warnings(); len(w) != 1 || !strings.Contains(w[0], "of 3440640 bytes present") {
		t.Errorf("OVMF cut to a third: warnings %q", w)
	}
}

// An Intel flash image cut short is refused with the region that is
// missing, rather than listed without it (fiano skips the region).
func TestInspectTruncatedFlashDescriptor(t *testing.T) {
	bios := synthBase(t)
	img := append(make([]byte, 0x1000), bios...)
	copy(img[16:], flashSignature)
	img[0x16] = 0x04
	img[0x18] = 0x06
	binary.LittleEndian.PutUint16(img[0x44:], 1)
	binary.LittleEndian.PutUint16(img[0x46:], uint16(len(bios)/0x1000))
	_, err := inspectFirmware(img[:0x8000])
	if err == nil || !strings.Contains(err.Error(), "lays out the BIOS region at 0x1000..0x11000, but the image ends at 0x8000") {
		t.Errorf("truncated descriptor image: %v", err)
	}
}

// A file whose size field runs past its volume (into the next one, which
// fiano does not stop) is listed with the bytes inside and a warning.
func TestInspectFilePastVolume(t *testing.T) {
	const raw = "B0B0B0B0-0000-4000-8000-000000000001"
	fv := synthFV(t, synthGrow, 0x2000, synthFile{guid: raw, ftype: 0x01, sections: [][]byte{make([]byte, 100)}})
	h := fv[0x60 : 0x60+24]
	size := 0x2000 - 0x60 + 0x100 // 256 bytes into the next volume
	h[20], h[21], h[22] = byte(size), byte(size>>8), byte(size>>16)
	h[16] = 0
	var sum byte
	for i, c := range h {
		if i != 17 && i != 23 {
			sum += c
		}
	}
	h[16] = -sum
	n, err := inspectFirmware(append(fv, synthFV(t, synthSec, 0x4000)...))
	if err != nil {
		t.Fatal(err)
	}
	checkBounds(t, n)
	f := n.find("file", raw)
	if f == nil || f.Size != 0x2000-0x60 || f.Warning != fmt.Sprintf("runs past the end of its volume: %d of %d bytes inside it", 0x2000-0x60, size) {
		t.Errorf("file past its volume: %+v", f)
	}
}

const ffs1 = "7A9354D9-0468-444A-81CE-0BF617D890DF"

// asFFS1 rewrites the volume at fv[0:] to file system GUID FFS1, the
// format of older AMI and Insyde images, which fiano does not parse.
func asFFS1(t testing.TB, fv []byte) []byte {
	fv = slices.Clone(fv)
	copy(fv[fvFileSystemGUID:], guidBytes(t, ffs1))
	binary.LittleEndian.PutUint16(fv[fvChecksum:], 0)
	hl := int(binary.LittleEndian.Uint16(fv[fvHeaderLength:]))
	binary.LittleEndian.PutUint16(fv[fvChecksum:], -checksum16(fv[:hl]))
	return fv
}

// An FFS1 volume is listed as a volume whose files are not listed, not
// as an empty one, and a slot that may be inside it is not "not found".
func TestInspectFFS1Volume(t *testing.T) {
	base := synthBase(t)
	old := slices.Concat(asFFS1(t, base[:0xC000]), base[0xC000:])
	n, err := inspectFirmware(old)
	if err != nil {
		t.Fatal(err)
	}
	fv := n.find("fv", synthGrow)
	want := "unsupported volume format FFS1 (" + ffs1 + "): its files are not listed"
	if fv == nil || fv.Type != "FFS1" || fv.Note != want || fv.Free != nil || len(fv.Children) != 0 {
		t.Errorf("FFS1 volume: %+v, want note %q", fv, want)
	}
	if sec := n.find("fv", synthSec); sec == nil || sec.Note != "" || sec.Free == nil {
		t.Errorf("FFS2 volume next to it: %+v", sec)
	}

	spec := synthSpec(t, minimalPE(5000))
	spec.BaseFirmware = old
	_, err = BuildSPI(context.Background(), spec)
	if err == nil || !strings.Contains(err.Error(), "volume "+synthGrow+" at 0x0 (FFS1 ("+ffs1+")) is in an unsupported volume format") ||
		!strings.Contains(err.Error(), "the slot may be inside") {
		t.Errorf("build with the slot in an FFS1 volume: %v", err)
	}
}

// A disk image cut short lists its partition with the bytes present and a
// warning; a FAT that claims more than its partition is not read (go-diskfs
// would allocate what it claims). Both are read by offset, not into memory.
func TestInspectTruncatedDisk(t *testing.T) {
	img := filepath.Join(t.TempDir(), "usb.img")
	if err := WriteUSB(context.Background(), img, USBSpec{Size: 40 << 20, Payload: minimalPE(100 << 10), Name: "qemu-q35", Epoch: testEpoch}); err != nil {
		t.Fatal(err)
	}
	n, err := Inspect(img)
	if err != nil {
		t.Fatal(err)
	}
	if len(n.Children) != 1 || n.Children[0].Warning != "" {
		t.Fatalf("complete disk: %+v", n.Children)
	}
	part := *n.Children[0]
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}

	cut := filepath.Join(t.TempDir(), "cut.img")
	if err := os.WriteFile(cut, b[:20<<20], 0o644); err != nil {
		t.Fatal(err)
	}
	n, err = Inspect(cut)
	if err != nil {
		t.Fatal(err)
	}
	checkBounds(t, n)
	p := n.Children[0]
	want := fmt.Sprintf("runs past the end of the disk image: %d of %d bytes present (the image is truncated)", 20<<20-part.Offset, part.Size)
	if p.Size != 20<<20-part.Offset || !strings.HasPrefix(p.Warning, want) {
		t.Errorf("partition of a cut disk: %+v, want warning %q", p, want)
	}

	bomb := slices.Clone(b)
	binary.LittleEndian.PutUint32(bomb[part.Offset+0x24:], 0xFFFFFFFF) // sectors per FAT
	if err := os.WriteFile(cut, bomb, 0o644); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	n, err = Inspect(cut)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if p := n.Children[0]; !strings.Contains(p.Warning, "claims a 2199023255040-byte FAT, more than the") || len(p.Children) != 0 {
		t.Errorf("partition with a huge FAT: %+v", p)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
		t.Errorf("%d bytes allocated to inspect a 40 MiB disk image", alloc)
	}
}

// A guest bundle or cpio archive cut short lists the files before the cut
// and says the rest is missing.
func TestInspectTruncatedArchives(t *testing.T) {
	archive := testArchive(t)
	b := bundle.Encode(archive)
	cut := len(b) - 200 // in the device entry, as TestListCPIO cuts it
	g := inspectGuestBundle(b[:cut], 0)
	checkBounds(t, g)
	want := fmt.Sprintf("runs past the end of the file: %d of %d archive bytes present (the file is truncated); "+
		"is damaged: cpio: archive ends at %d without a trailer", cut-bundle.HeaderSize, len(archive), cut-bundle.HeaderSize)
	if g.Size != int64(cut) || len(g.Children) != 3 || g.Warning != want {
		t.Errorf("cut bundle: %+v\nwant warning %q", g, want)
	}
	c := inspectCPIO("guests.cpio", archive[:len(archive)-200])
	if len(c.Children) != 3 || !strings.HasPrefix(c.Warning, "is damaged: cpio: archive ends at") {
		t.Errorf("cut cpio: %+v", c)
	}
	if w := inspectCPIO("guests.cpio", archive).Warnings(); len(w) != 0 {
		t.Errorf("complete archive: warnings %q", w)
	}
}
