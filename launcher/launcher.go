// Package launcher builds fwbuild's UEFI launcher: a small boot service
// driver (C on gnu-efi, sources in src/) that the build inserts into a
// firmware's DXE volume. It starts the flash payload through the platform's
// own boot manager: it installs a LoadFile handle for the payload and makes
// it the next boot option (BootNext), so the payload runs where any OS
// loader runs, after ReadyToBoot, and a payload that is missing or whose
// SHA-256 is not the pinned one is refused with one console line while the
// platform's boot order goes on.
package launcher

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"unicode/utf16"
)

//go:embed src/*.c src/*.h
var src embed.FS

// Sources returns the launcher's C sources by file name, for cache keys
// and the SBOM.
func Sources() map[string][]byte {
	out := map[string][]byte{}
	names, _ := src.ReadDir("src")
	for _, e := range names {
		b, _ := src.ReadFile("src/" + e.Name())
		out[e.Name()] = b
	}
	return out
}

// Source says where the launcher finds the payload.
type Source int

const (
	// FromRegion: memory-mapped flash at Pin.Address (a region of its own).
	FromRegion Source = 1
	// FromFile: the PE32 section of FFS file Pin.File in any firmware volume.
	FromFile Source = 2
)

// Pin is what the build pins into the launcher.
type Pin struct {
	Source  Source
	Address uint64 // FromRegion: CPU address of the payload's first byte
	Size    uint64 // payload length
	// AddressB is slot b's first byte on a board with two payload slots
	// (FromRegion only; Address is slot a's), 0 with one slot. Both slots
	// hold Size bytes whose SHA-256 is SHA256.
	AddressB uint64
	File     [16]byte // FromFile: the payload file's name, in EFI GUID byte order
	SHA256   [32]byte
	// Description names the boot option, e.g. "fwbuild qemu-q35".
	Description string
}

func (p Pin) check() error {
	switch p.Source {
	case FromRegion:
		if p.Address == 0 || p.Address+p.Size > 1<<32 || p.Address+p.Size < p.Address {
			return fmt.Errorf("launcher: payload at %#x (%d bytes) is not below 4 GiB, where flash is memory-mapped", p.Address, p.Size)
		}
		if b := p.AddressB; b != 0 && (b+p.Size > 1<<32 || b+p.Size < b || b < p.Address+p.Size && p.Address < b+p.Size) {
			return fmt.Errorf("launcher: payload slot b at %#x (%d bytes) is not below 4 GiB or overlaps slot a at %#x", b, p.Size, p.Address)
		}
	case FromFile:
		if p.AddressB != 0 {
			return errors.New("launcher: payload slots are regions: a payload file has one slot")
		}
		if p.File == ([16]byte{}) {
			return errors.New("launcher: payload file GUID is empty")
		}
	default:
		return fmt.Errorf("launcher: unknown payload source %d", p.Source)
	}
	if p.Size == 0 {
		return errors.New("launcher: payload size is 0")
	}
	if p.Description == "" || len(p.Description) > 100 {
		return fmt.Errorf("launcher: boot option description %q: want 1-100 characters", p.Description)
	}
	for _, c := range p.Description {
		if c < 0x20 || c > 0x7e {
			return fmt.Errorf("launcher: boot option description %q: printable ASCII only", p.Description)
		}
	}
	return nil
}

// pinC renders p as the C definition launcher.h declares.
func (p Pin) pinC() string {
	var b strings.Builder
	b.WriteString("#include \"launcher.h\"\n\nconst struct fwb_pin fwb_pin = {\n")
	fmt.Fprintf(&b, "\t.source = %d,\n\t.address = %#x,\n\t.address_b = %#x,\n\t.size = %#x,\n", p.Source, p.Address, p.AddressB, p.Size)
	g := p.File
	fmt.Fprintf(&b, "\t.file = { %#x, %#x, %#x, {", binary.LittleEndian.Uint32(g[0:]), binary.LittleEndian.Uint16(g[4:]), binary.LittleEndian.Uint16(g[6:]))
	for i, c := range g[8:] {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, " %#x", c)
	}
	b.WriteString(" } },\n\t.sha256 = {")
	for i, c := range p.SHA256 {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, " %#x", c)
	}
	fmt.Fprintf(&b, " },\n\t.description = L%q,\n};\n", p.Description)
	return b.String()
}

// Spec is one launcher build.
type Spec struct {
	Pin Pin
	// GnuEFI is the root of the unpacked gnu-efi package (usr/include/efi,
	// usr/lib/crt0-efi-x86_64.o, elf_x86_64_efi.lds, libgnuefi.a).
	GnuEFI string
	// CC, LD and Objcopy default to gcc, ld and objcopy from PATH.
	CC, LD, Objcopy string
	TempDir         string
}

// Build compiles the launcher with p pinned and returns the PE image (an
// EFI boot service driver).
func Build(ctx context.Context, s Spec) ([]byte, error) {
	if err := s.Pin.check(); err != nil {
		return nil, err
	}
	inc := filepath.Join(s.GnuEFI, "usr/include/efi")
	lib := filepath.Join(s.GnuEFI, "usr/lib")
	for _, f := range []string{filepath.Join(inc, "efi.h"), filepath.Join(lib, "crt0-efi-x86_64.o"), filepath.Join(lib, "elf_x86_64_efi.lds"), filepath.Join(lib, "libgnuefi.a")} {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("launcher: %s is not an unpacked gnu-efi package (%w): pin Debian's gnu-efi as a component", s.GnuEFI, err)
		}
	}
	tool := func(name, def, pkg string) (string, error) {
		if name == "" {
			name = def
		}
		p, err := exec.LookPath(name)
		if err != nil {
			return "", fmt.Errorf("launcher: %s not found (%w): apt-get install %s", name, err, pkg)
		}
		return p, nil
	}
	cc, err := tool(s.CC, "gcc", "gcc")
	if err != nil {
		return nil, err
	}
	ld, err := tool(s.LD, "ld", "binutils")
	if err != nil {
		return nil, err
	}
	objcopy, err := tool(s.Objcopy, "objcopy", "binutils")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(s.TempDir, "fwbuild-launcher-")
	if err != nil {
		return nil, fmt.Errorf("launcher: %w", err)
	}
	defer os.RemoveAll(dir)
	files := Sources()
	files["pin.c"] = []byte(s.Pin.pinC())
	var objs []string
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), files[n], 0o644); err != nil {
			return nil, fmt.Errorf("launcher: %w", err)
		}
	}
	run := func(name string, args ...string) error {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "LC_ALL=C", "SOURCE_DATE_EPOCH=0")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("launcher: %s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, strings.TrimSpace(out.String()))
		}
		return nil
	}
	cflags := []string{"-std=gnu11", "-ffreestanding", "-fno-stack-protector", "-fno-stack-check", "-fpic",
		"-fshort-wchar", "-mno-red-zone", "-maccumulate-outgoing-args", "-DGNU_EFI_USE_MS_ABI",
		"-Wall", "-Wextra", "-Werror", "-Os", "-ffile-prefix-map=" + dir + "=.", "-frandom-seed=fwbuild-launcher",
		"-I" + inc, "-I" + filepath.Join(inc, "x86_64"), "-I" + filepath.Join(inc, "protocol"), "-c"}
	for _, n := range names {
		if !strings.HasSuffix(n, ".c") {
			continue
		}
		o := strings.TrimSuffix(n, ".c") + ".o"
		if err := run(cc, append(cflags, n, "-o", o)...); err != nil {
			return nil, err
		}
		objs = append(objs, o)
	}
	args := []string{"-nostdlib", "-znocombreloc", "-T", filepath.Join(lib, "elf_x86_64_efi.lds"), "-shared", "-Bsymbolic",
		"--build-id=none", filepath.Join(lib, "crt0-efi-x86_64.o")}
	args = append(args, objs...)
	args = append(args, "-o", "launcher.so", "-L", lib, "-lgnuefi")
	if err := run(ld, args...); err != nil {
		return nil, err
	}
	if err := run(objcopy, "-j", ".text", "-j", ".sdata", "-j", ".data", "-j", ".rodata", "-j", ".dynamic", "-j", ".dynsym",
		"-j", ".rel", "-j", ".rela", "-j", ".rel.*", "-j", ".rela.*", "-j", ".reloc",
		"--target", "efi-bsdrv-x86_64", "launcher.so", "launcher.efi"); err != nil {
		return nil, err
	}
	pe, err := os.ReadFile(filepath.Join(dir, "launcher.efi"))
	if err != nil {
		return nil, fmt.Errorf("launcher: %w", err)
	}
	return pe, nil
}

// FileGUID names the launcher's FFS file in the firmware.
const FileGUID = "6F2A1C1E-3B8D-4E55-9A41-6C61756E6368"

// PayloadFileGUID names the payload's FFS file when a board keeps the
// payload in a firmware volume (Source FromFile).
const PayloadFileGUID = "6F2A1C1E-3B8D-4E55-9A41-7061796C6F61"

// MaxFFSSize bounds the launcher's FFS file (14,868 bytes measured with
// gnu-efi 3.0.15 and gcc 12): what `fwbuild fit` reserves for it.
// TestBuild keeps the bound true.
const MaxFFSSize = 16 << 10

// Name is the launcher file's UI name.
const Name = "FwbuildLauncher"

// The architectural protocols the launcher needs at its entry point: it
// writes Boot#### and BootNext.
var depexGUIDs = []string{
	"1E5668E2-8481-11D4-BCF1-0080C73C8881", // EFI_VARIABLE_ARCH_PROTOCOL
	"6441F818-6362-4E44-B570-7DBA31DD2453", // EFI_VARIABLE_WRITE_ARCH_PROTOCOL
}

// FFS wraps the launcher's PE image into an FFS file of type DRIVER with
// a DXE dependency section, the PE32 section and a user interface section.
func FFS(pe []byte) ([]byte, error) {
	var depex []byte
	for i, g := range depexGUIDs {
		b, err := GUIDBytes(g)
		if err != nil {
			return nil, err
		}
		depex = append(depex, 0x02) // PUSH
		depex = append(depex, b[:]...)
		if i > 0 {
			depex = append(depex, 0x03) // AND
		}
	}
	depex = append(depex, 0x08) // END
	ui := uiString(Name)
	g, err := GUIDBytes(FileGUID)
	if err != nil {
		return nil, err
	}
	return File(g, 0x07, [][2][]byte{{{0x13}, depex}, {{0x10}, pe}, {{0x15}, ui}})
}

// PayloadFFS wraps a payload PE into an FFS file of type APPLICATION that
// the launcher finds by PayloadFileGUID (Source FromFile).
func PayloadFFS(pe []byte) ([]byte, error) {
	g, err := GUIDBytes(PayloadFileGUID)
	if err != nil {
		return nil, err
	}
	return File(g, 0x09, [][2][]byte{{{0x10}, pe}, {{0x15}, uiString("FwbuildPayload")}})
}

func uiString(s string) []byte {
	var b []byte
	for _, c := range utf16.Encode([]rune(s)) {
		b = binary.LittleEndian.AppendUint16(b, c)
	}
	return append(b, 0, 0)
}

// File assembles an FFS2 file (erase polarity 1, no file checksum) from
// (type, data) sections, each 4-byte aligned.
func File(name [16]byte, fileType byte, sections [][2][]byte) ([]byte, error) {
	var body []byte
	for _, s := range sections {
		for len(body)%4 != 0 {
			body = append(body, 0)
		}
		n := 4 + len(s[1])
		if n >= 0xFFFFFF {
			return nil, fmt.Errorf("launcher: section of %d bytes needs an extended header", n)
		}
		body = append(body, byte(n), byte(n>>8), byte(n>>16), s[0][0])
		body = append(body, s[1]...)
	}
	size := 24 + len(body)
	if size >= 0xFFFFFF {
		return nil, fmt.Errorf("launcher: FFS file of %d bytes needs a large-file header", size)
	}
	h := make([]byte, 24)
	copy(h, name[:])
	h[18] = fileType
	h[19] = 0 // attributes
	h[20], h[21], h[22] = byte(size), byte(size>>8), byte(size>>16)
	// The header checksum covers the header with the file checksum and
	// state taken as 0; the file checksum is 0xAA without FFS_ATTRIB_CHECKSUM.
	var sum byte
	for i, c := range h {
		if i != 16 && i != 17 && i != 23 {
			sum += c
		}
	}
	h[16] = -sum
	h[17] = 0xAA
	// State: header construction, header valid and data valid bits set,
	// written inverted for erase polarity 1.
	h[23] = ^byte(0x07)
	return append(h, body...), nil
}

// GUIDBytes encodes a GUID string in EFI byte order.
func GUIDBytes(s string) ([16]byte, error) {
	var g [16]byte
	var a uint32
	var b, c uint16
	var d [8]byte
	n, err := fmt.Sscanf(s, "%08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x", &a, &b, &c, &d[0], &d[1], &d[2], &d[3], &d[4], &d[5], &d[6], &d[7])
	if err != nil || n != 11 || len(s) != 36 {
		return g, fmt.Errorf("launcher: %q is not a GUID", s)
	}
	binary.LittleEndian.PutUint32(g[0:], a)
	binary.LittleEndian.PutUint16(g[4:], b)
	binary.LittleEndian.PutUint16(g[6:], c)
	copy(g[8:], d[:])
	return g, nil
}

// PayloadHash is the value a launcher pins for payload.
func PayloadHash(payload []byte) [32]byte { return sha256.Sum256(payload) }
