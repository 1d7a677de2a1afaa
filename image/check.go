package image

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/fwbuild/fwbuild/boardcfg"
)

// CheckFirmware reports whether chip, a whole-chip image laid out per regions,
// is UEFI firmware of the shape fwbuild builds: the region flagged firmware
// (the whole image when none is) holds at least one firmware volume and, when
// payloadFile (outputs.spi.payload_file) is given, a volume holding that file,
// the slot fwbuild puts its payload in. The flasher runs it before writing so
// that random bytes of the right size never reach a chip.
func CheckFirmware(chip []byte, regions []boardcfg.Region, payloadFile string) error {
	name, start, end := "image", uint64(0), uint64(len(chip))
	for _, r := range regions {
		if r.Firmware {
			name, start, end = "region "+r.Name, uint64(r.Start), uint64(r.End())+1
			break
		}
	}
	where := fmt.Sprintf("%s (0x%x-0x%x)", name, start, end-1)
	if len(chip) == 0 || end > uint64(len(chip)) || start >= end {
		return fmt.Errorf("%s is not inside the %d-byte image", where, len(chip))
	}
	n, err := inspectFirmware(chip[start:end])
	if err != nil {
		if strings.HasPrefix(err.Error(), "no firmware volume") {
			return fmt.Errorf("no firmware volume in %s: is this a UEFI image?", where)
		}
		return fmt.Errorf("no firmware volume in %s: %w", where, err)
	}
	// Top-level volumes, also those under an Intel descriptor's BIOS region.
	var fvs []string
	for _, c := range n.Children {
		switch c.Kind {
		case "fv":
			fvs = append(fvs, c.GUID)
		case "region":
			for _, v := range c.Children {
				if v.Kind == "fv" {
					fvs = append(fvs, v.GUID)
				}
			}
		}
	}
	if len(fvs) == 0 {
		return fmt.Errorf("no firmware volume in %s", where)
	}
	if payloadFile == "" || findFile(n, payloadFile) {
		return nil
	}
	sort.Strings(fvs)
	return fmt.Errorf("%s holds firmware volumes %s but no file %s (outputs.spi.payload_file, the payload slot): not a build for this board",
		where, strings.Join(fvs, ", "), strings.ToUpper(payloadFile))
}

// findFile reports whether a file with the GUID is anywhere below n; GUIDs
// compare case-insensitively (profiles may spell them in either case).
func findFile(n *Node, guid string) bool {
	if n.Kind == "file" && strings.EqualFold(n.GUID, guid) {
		return true
	}
	for _, c := range n.Children {
		if findFile(c, guid) {
			return true
		}
	}
	return false
}

// CheckDisk reports whether the file at p is a bootable disk image of the
// shape fwbuild builds: a GPT disk with an EFI System Partition whose file
// system holds a non-empty \EFI\BOOT\BOOTX64.EFI (what removable-media boot
// starts).
func CheckDisk(p string) error {
	n, err := inspectDisk(p)
	if err != nil {
		return fmt.Errorf("not a GPT disk image: %w", err)
	}
	var seen []string
	for _, part := range n.Children {
		if part.Kind != "partition" {
			continue
		}
		seen = append(seen, fmt.Sprintf("%q (type %s)", part.Name, part.Type))
		if !strings.EqualFold(part.Type, string(gpt.EFISystemPartition)) {
			continue
		}
		if part.Note == "no readable file system" {
			return fmt.Errorf("%s: EFI System Partition %q holds no readable file system", p, part.Name)
		}
		if f := findPath(part, bootPath); f != nil && f.Size > 0 {
			return nil
		}
		return fmt.Errorf("%s: EFI System Partition %q holds no %s (removable-media boot starts nothing)",
			p, part.Name, strings.ReplaceAll(bootPath, "/", `\`))
	}
	if len(seen) == 0 {
		return fmt.Errorf("%s: GPT disk without partitions", p)
	}
	return errors.New(p + ": no EFI System Partition among the partitions " + strings.Join(seen, ", "))
}

// findPath finds a file by path; FAT names compare case-insensitively.
func findPath(n *Node, p string) *Node {
	if n.Kind == "file" && strings.EqualFold(n.Name, p) {
		return n
	}
	for _, c := range n.Children {
		if f := findPath(c, p); f != nil {
			return f
		}
	}
	return nil
}
