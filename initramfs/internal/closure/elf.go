package closure

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"strings"
)

// elfInfo is what the dynamic loader needs from an ELF file.
type elfInfo struct {
	Class   elf.Class
	Machine elf.Machine
	Interp  string   // PT_INTERP, empty for static files
	Needed  []string // DT_NEEDED, in order
	RPath   []string // DT_RPATH, used only when there is no DT_RUNPATH
	RunPath []string // DT_RUNPATH
}

var elfMagic = []byte("\x7fELF")

// isELF reports whether r starts with the ELF magic.
func isELF(r io.ReaderAt) bool {
	var b [4]byte
	_, err := r.ReadAt(b[:], 0)
	return err == nil && bytes.Equal(b[:], elfMagic)
}

// readELF parses the dynamic-linking facts of an ELF file. Malformed input
// yields an error, never a panic: debug/elf has panicked on crafted files in
// the past, and package files are input we do not control.
func readELF(r io.ReaderAt) (info *elfInfo, err error) {
	defer func() {
		if p := recover(); p != nil {
			info, err = nil, fmt.Errorf("malformed ELF: %v", p)
		}
	}()
	f, err := elf.NewFile(r)
	if err != nil {
		return nil, err
	}
	info = &elfInfo{Class: f.Class, Machine: f.Machine}
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		if p.Filesz > 4096 {
			return nil, fmt.Errorf("PT_INTERP of %d bytes", p.Filesz)
		}
		b := make([]byte, p.Filesz)
		if _, err := p.ReadAt(b, 0); err != nil {
			return nil, fmt.Errorf("read PT_INTERP: %w", err)
		}
		info.Interp = string(bytes.TrimRight(b, "\x00"))
		if info.Interp == "" || strings.ContainsRune(info.Interp, 0) {
			return nil, errors.New("bad PT_INTERP")
		}
	}
	if f.SectionByType(elf.SHT_DYNAMIC) == nil {
		if hasDynamic(f) {
			// ld.so would read PT_DYNAMIC; debug/elf reads only the section.
			return nil, errors.New("dynamic ELF without section headers")
		}
		return info, nil
	}
	dyn := func(tag elf.DynTag) ([]string, error) {
		v, err := f.DynString(tag)
		if err != nil {
			return nil, fmt.Errorf("read %v: %w", tag, err)
		}
		return v, nil
	}
	if info.Needed, err = dyn(elf.DT_NEEDED); err != nil {
		return nil, err
	}
	rpath, err := dyn(elf.DT_RPATH)
	if err != nil {
		return nil, err
	}
	runpath, err := dyn(elf.DT_RUNPATH)
	if err != nil {
		return nil, err
	}
	info.RPath = splitPath(rpath)
	info.RunPath = splitPath(runpath)
	for _, n := range info.Needed {
		if n == "" || strings.ContainsRune(n, 0) {
			return nil, fmt.Errorf("bad DT_NEEDED %q", n)
		}
	}
	return info, nil
}

func hasDynamic(f *elf.File) bool {
	for _, p := range f.Progs {
		if p.Type == elf.PT_DYNAMIC {
			return true
		}
	}
	return false
}

func splitPath(list []string) []string {
	var out []string
	for _, l := range list {
		for _, p := range strings.Split(l, ":") {
			if p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// defaultLibDirs is where glibc's ld.so looks after RPATH/RUNPATH when there
// is no ld.so.cache (an initramfs has none): Debian's build puts the
// multiarch directories first.
func defaultLibDirs(m elf.Machine) []string {
	triplet := map[elf.Machine]string{
		elf.EM_X86_64:  "x86_64-linux-gnu",
		elf.EM_AARCH64: "aarch64-linux-gnu",
		elf.EM_386:     "i386-linux-gnu",
		elf.EM_RISCV:   "riscv64-linux-gnu",
	}[m]
	var dirs []string
	if triplet != "" {
		dirs = append(dirs, "/lib/"+triplet, "/usr/lib/"+triplet)
	}
	return append(dirs, "/lib", "/usr/lib")
}

// elfKind reads only the ELF header.
func elfKind(r io.ReaderAt) (c elf.Class, m elf.Machine, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("malformed ELF: %v", p)
		}
	}()
	f, err := elf.NewFile(r)
	if err != nil {
		return 0, 0, err
	}
	return f.Class, f.Machine, nil
}
