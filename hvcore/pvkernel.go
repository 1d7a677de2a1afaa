package hvcore

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os/exec"
)

// PVKernel turns an x86 bzImage into what Xen's PV domain builder loads
// fastest: the kernel's own ELF image (vmlinux, the bzImage's compressed
// payload unpacked here, at build time) packed to its segments (packELF:
// the builder loads segments and reads its notes from PT_NOTE), and
// gzip-compressed.
//
// libxenguest (xl create) unpacks a bzImage's payload in the control
// domain's user space before it builds the domain: for qemu-q35's
// xz-compressed kernel that was 6.3 s of the demo guest's 12 s xl create
// under TCG (18.6 MB of output). It inflates a gzip'd ELF with zlib, several
// times faster than xz, and the packed ELF is little more than its
// segments. A kernel whose payload is not xz (gzip already, or one the
// builder may not know), or one that is no bzImage of boot protocol 2.08 or
// later, is returned unchanged. The xz payload is unpacked with the host's xz (part of the
// guests stage's key), so the bytes are reproducible.
func PVKernel(ctx context.Context, bzImage []byte) ([]byte, error) {
	payload, err := bzPayload(bzImage)
	if err != nil || len(payload) == 0 {
		// Not a bzImage this can take apart: the domain builder gets it as it is.
		return bzImage, nil
	}
	var elf []byte
	switch {
	case bytes.HasPrefix(payload, []byte("\xfd7zXZ\x00")):
		cmd := exec.CommandContext(ctx, "xz", "--decompress", "--stdout", "--single-stream")
		cmd.Stdin = bytes.NewReader(payload)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if elf, err = cmd.Output(); err != nil {
			return nil, fmt.Errorf("hvcore: unpack the kernel's xz payload (xz-utils): %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
		}
	default:
		// gzip already, or a compression the builder may not know: leave it.
		return bzImage, nil
	}
	elf, err = packELF(elf)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	zw, err := gzip.NewWriterLevel(&out, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	// No name and a zero time in the header: same bytes for the same kernel.
	if _, err := zw.Write(elf); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// bzPayload returns a bzImage's compressed kernel (boot protocol 2.08 or
// later: payload_offset and payload_length, counted from the protected-mode
// code after the setup sectors).
func bzPayload(bz []byte) ([]byte, error) {
	if len(bz) < 0x250 || string(bz[0x202:0x206]) != "HdrS" {
		return nil, errors.New("hvcore: not an x86 bzImage (no \"HdrS\" boot header at 0x202)")
	}
	if v := binary.LittleEndian.Uint16(bz[0x206:]); v < 0x0208 {
		return nil, fmt.Errorf("hvcore: boot protocol %d.%02d has no payload fields (2.08 or later)", v>>8, v&0xff)
	}
	setup := int(bz[0x1f1])
	if setup == 0 {
		setup = 4
	}
	start := uint64(setup+1)*512 + uint64(binary.LittleEndian.Uint32(bz[0x248:]))
	end := start + uint64(binary.LittleEndian.Uint32(bz[0x24c:]))
	if end > uint64(len(bz)) || start > end {
		return nil, fmt.Errorf("hvcore: bzImage payload %#x-%#x outside its %d bytes", start, end, len(bz))
	}
	return bz[start:end], nil
}

// packELF rewrites an ELF64 kernel with only what the domain builder reads:
// the header, the program headers and each segment's file bytes, the
// segments one after another at page-aligned offsets congruent with their
// addresses (as a link with -z max-page-size=4096 lays them out), and no
// section table. x86-64 kernels are linked with 2 MiB alignment, which pads
// the file with megabytes of zeros between segments (qemu-q35's guest kernel:
// 14.6 MB, 8.3 MB of it segments) that libxenguest would inflate and copy
// for nothing: it loads each segment by address from its offset. Symbols,
// strings and debug info are not in any segment and go too. A PT_NOTE inside
// a loaded segment moves with it.
func packELF(elf []byte) ([]byte, error) {
	if len(elf) < 64 || string(elf[:4]) != "\x7fELF" || elf[4] != 2 || elf[5] != 1 {
		return nil, errors.New("hvcore: the bzImage payload is not a little-endian ELF64 kernel")
	}
	le := binary.LittleEndian
	phoff, phent, phnum := le.Uint64(elf[0x20:]), uint64(le.Uint16(elf[0x36:])), uint64(le.Uint16(elf[0x38:]))
	if phent < 56 || phnum == 0 || phoff < 64 || phoff+phent*phnum > uint64(len(elf)) {
		return nil, errors.New("hvcore: the kernel's ELF has no valid program headers")
	}
	const page = 0x1000
	segs := make([]elfSeg, phnum)
	for i := range segs {
		ph := elf[phoff+uint64(i)*phent:]
		segs[i] = elfSeg{le.Uint64(ph[8:]), le.Uint64(ph[16:]), le.Uint64(ph[32:])}
		if segs[i].off+segs[i].filesz > uint64(len(elf)) || segs[i].off+segs[i].filesz < segs[i].off {
			return nil, fmt.Errorf("hvcore: the kernel's ELF segment %d ends past the file", i)
		}
	}
	head := phoff + phent*phnum
	out := bytes.Clone(elf[:head])
	le.PutUint64(out[0x28:], 0) // e_shoff
	le.PutUint16(out[0x3c:], 0) // e_shnum
	le.PutUint16(out[0x3e:], 0) // e_shstrndx
	newOff := make([]uint64, phnum)
	placed := make([]bool, phnum)
	// Loaded segments first, in file order; then anything not inside one.
	for pass := 0; pass < 2; pass++ {
		for i, sg := range segs {
			ptype := le.Uint32(elf[phoff+uint64(i)*phent:])
			if placed[i] || (pass == 0) != (ptype == 1) { // PT_LOAD
				continue
			}
			if pass == 1 {
				if j := container(segs, placed, i); j >= 0 {
					newOff[i], placed[i] = newOff[j]+(sg.off-segs[j].off), true
					continue
				}
			}
			off := uint64(len(out))
			if sg.filesz > 0 {
				// The next page-aligned offset with the address's page offset.
				off = (off+page-1)&^(page-1) + sg.vaddr%page
				out = append(out, make([]byte, off-uint64(len(out)))...)
				out = append(out, elf[sg.off:sg.off+sg.filesz]...)
			}
			newOff[i], placed[i] = off, true
		}
	}
	for i := range segs {
		ph := out[phoff+uint64(i)*phent:]
		le.PutUint64(ph[8:], newOff[i])
		if le.Uint32(ph) == 1 && le.Uint64(ph[48:]) > page {
			le.PutUint64(ph[48:], page) // p_align
		}
	}
	return out, nil
}

// elfSeg is where a segment's bytes are in the file and where they load.
type elfSeg struct{ off, vaddr, filesz uint64 }

// container is the placed segment whose file bytes hold segment i's, or -1.
func container(segs []elfSeg, placed []bool, i int) int {
	for j, sg := range segs {
		if j != i && placed[j] && sg.filesz > 0 && segs[i].off >= sg.off && segs[i].off+segs[i].filesz <= sg.off+sg.filesz {
			return j
		}
	}
	return -1
}
