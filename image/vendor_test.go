package image

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/fwbuild/fwbuild/boardcfg"
	"github.com/fwbuild/fwbuild/hvcore/pe/pesynth"
	"github.com/fwbuild/fwbuild/internal/testdeps"
	"github.com/fwbuild/fwbuild/launcher"
)

// Real firmware from others, for the edit path: Debian's OVMF builds and the
// two third-party images of testdata/firmware (README.md there says
// what they are). Their layouts differ in the ways that matter: OVMF's DXE
// volume lies in an LZMA section of a top-level volume with room to spare,
// galago's is compressed and nearly full, vbox's is two volume levels below
// an LZMA section and has ~39 KiB free.

// vendorFW is one real firmware image for the tests.
type vendorFW struct {
	name string
	// path of the file, or of its xz-compressed copy when sha256 is set
	path   string
	sha256 string
	pkg    string // Debian package that ships path, for the error message
}

var (
	ovmf4M = vendorFW{name: "ovmf-4m", path: "/usr/share/OVMF/OVMF_CODE_4M.fd", pkg: "ovmf"}
	ovmf2M = vendorFW{name: "ovmf-2m", path: "/usr/share/ovmf/OVMF.fd", pkg: "ovmf"}
	galago = vendorFW{name: "galago", path: "minplatform-galagopro3-GALAGOPRO3.fd",
		sha256: "ba2170c6c1cfd893b065f4aa9e2b708c7b3089e4a456a72834bb85c323077f96"}
	vbox = vendorFW{name: "vbox", path: "vbox-5.0.0-VBoxEFI64.fd",
		sha256: "c3bacb98568a4647e20aa897788e45ce50691010da9609d26eaabbee9d617569"}
	vendorFWs = []vendorFW{ovmf4M, ovmf2M, galago, vbox}
)

// read returns the image, unpacked into a temporary directory and checked
// against the digest the README gives, so a changed file fails here and
// not as a puzzling layout difference later.
func (v vendorFW) read(t testing.TB) []byte {
	t.Helper()
	if v.sha256 == "" {
		b, err := os.ReadFile(v.path)
		if err != nil {
			t.Fatalf("%s: %v: install it with `apt-get install -y %s`", v.name, err, v.pkg)
		}
		return b
	}
	xzPath := filepath.Join(testdeps.FirmwareDir(t), v.path+".xz")
	if _, err := os.Stat(xzPath); err != nil {
		t.Fatalf("%s: %v (set FWBUILD_TEST_FIRMWARE to the directory holding %s.xz)", v.name, err, v.path)
	}
	needTool(t, "xz", "xz-utils")
	out := filepath.Join(t.TempDir(), v.path)
	cmd := exec.Command("xz", "-dc", xzPath)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: xz -dc %s: %v\n%s", v.name, xzPath, err, stderr.String())
	}
	if err := os.WriteFile(out, stdout.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(stdout.Bytes())
	if got := hex.EncodeToString(sum[:]); got != v.sha256 {
		t.Fatalf("%s: unpacked %s has SHA-256 %s, the README says %s", v.name, xzPath, got, v.sha256)
	}
	return stdout.Bytes()
}

// chipSpec lays fw out as a chip that is all firmware region, the simplest
// layout BuildSPIReport takes: the chip image is then the edited region.
func chipSpec(fw []byte) SPISpec {
	return SPISpec{
		ChipSize:     uint64(len(fw)),
		Regions:      []boardcfg.Region{{Name: "bios", Start: 0, Size: boardcfg.Size(len(fw)), Firmware: true}},
		BaseFirmware: fw,
	}
}

const testLauncherGUID = "6F2A1C1E-3B8D-4E55-9A41-746573744C6E"

// testLauncherFFS is a launcher-like driver: type DRIVER, a DXE depex
// (TRUE), a PE32 section with a valid PE of about peSize bytes and a UI
// section, built by launcher.File as the build does.
func testLauncherFFS(t testing.TB, g string, peSize int) []byte {
	t.Helper()
	name, err := launcher.GUIDBytes(g)
	if err != nil {
		t.Fatal(err)
	}
	pe := pesynth.Image(pesynth.Options{Subsystem: 11, Sections: []pesynth.Sec{{Name: ".text", Size: max(peSize-0x400, 0x200), Fill: 7}}})
	ui := []byte{}
	for _, c := range "TestLauncher\x00" {
		ui = append(ui, byte(c), 0)
	}
	f, err := launcher.File(name, 0x07, [][2][]byte{{{0x13}, {0x06, 0x08}}, {{0x10}, pe}, {{0x15}, ui}})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// uefiExtract runs the independent parser UEFIExtract (UEFITool NE) over
// b and returns its report rows and the messages it printed (where it
// says a checksum is invalid).
func uefiExtract(t testing.TB, b []byte) (report, messages string) {
	t.Helper()
	bin := needTool(t, "UEFIExtract", "uefitool-cli")
	f := filepath.Join(t.TempDir(), "fw.bin")
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, f, "report").CombinedOutput()
	if err != nil {
		t.Fatalf("UEFIExtract %s report: %v\n%s", f, err, out)
	}
	r, err := os.ReadFile(f + ".report.txt")
	if err != nil {
		t.Fatalf("UEFIExtract wrote no report: %v\n%s", err, out)
	}
	return string(r), string(out)
}

var invalidRE = regexp.MustCompile(`(?i)[^\n]*invalid[^\n]*`)

// newInvalid returns the lines UEFIExtract flags as invalid for after that
// it did not flag for before (counted, so a second copy of a known
// complaint is new too).
func newInvalid(before, after string) []string {
	seen := map[string]int{}
	for _, l := range invalidRE.FindAllString(before, -1) {
		seen[strings.TrimSpace(l)]++
	}
	var out []string
	for _, l := range invalidRE.FindAllString(after, -1) {
		l = strings.TrimSpace(l)
		if seen[l] > 0 {
			seen[l]--
			continue
		}
		out = append(out, l)
	}
	sort.Strings(out)
	return out
}

// onceResult caches one expensive result per key across the tests of a
// run: LZMA recompression of OVMF takes seconds with fiano's Go encoder.
type onceResult[T any] struct {
	mu sync.Mutex
	m  map[string]*onceEntry[T]
}

type onceEntry[T any] struct {
	once sync.Once
	v    T
}

func (o *onceResult[T]) get(key string, fn func() T) T {
	o.mu.Lock()
	if o.m == nil {
		o.m = map[string]*onceEntry[T]{}
	}
	e := o.m[key]
	if e == nil {
		e = &onceEntry[T]{}
		o.m[key] = e
	}
	o.mu.Unlock()
	e.once.Do(func() { e.v = fn() })
	return e.v
}
