package contract

import (
	"fmt"
	"strings"
)

// AutostartTag is the comment fwbuild writes into each guest's xl config:
// xl ignores comments, ctld reads it to know which guests to start.
const AutostartTag = "# fwbuild: autostart="

// AutostartLine is the tag's line for a config, without the newline.
func AutostartLine(autostart bool) string {
	if autostart {
		return AutostartTag + "yes"
	}
	return AutostartTag + "no"
}

// ParseAutostart reads the tag from an xl config; a config without one is
// not started, and the last tag wins.
func ParseAutostart(cfg []byte) (bool, error) {
	auto := false
	for _, line := range strings.Split(string(cfg), "\n") {
		v, ok := strings.CutPrefix(strings.TrimSpace(line), AutostartTag)
		if !ok {
			continue
		}
		switch strings.TrimSpace(v) {
		case "yes":
			auto = true
		case "no":
			auto = false
		default:
			return false, fmt.Errorf("%q: want autostart=yes or autostart=no", strings.TrimSpace(line))
		}
	}
	return auto, nil
}

// ParseXLType reads a guest's virtualization mode from its xl config (the
// type = "pv" line fwbuild writes); "" when none is given.
func ParseXLType(cfg []byte) string {
	t := ""
	for _, line := range strings.Split(string(cfg), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if ok && strings.TrimSpace(k) == "type" {
			t = strings.Trim(strings.TrimSpace(v), `"'`)
		}
	}
	return t
}

// GuestXL is an xl config as fwbuild writes it for a guest of a guest image
// on the data disk: the build for the profile's guests, ctld for a guest
// created through its API. Disks are raw files set up by ctld's phy
// hotplug (xvda, xvdb, ... in order), NICs join Bridge, ctld is the hotplug
// script of both (the control domain has no bash for Xen's own).
type GuestXL struct {
	Name      string
	Type      string // pv or pvh
	MemoryMiB int
	VCPUs     int
	Kernel    string
	Ramdisk   string
	Extra     string // the kernel command line
	Autostart bool
	Disks     []string // targets, in vdev order
	// CD is a read-only disk after Disks (virtual media), "" for none.
	CD     string
	Bridge string
	MACs   []string // one NIC each; "" lets xl choose the address
}

// Encode writes the config, in the layout of the build's configs.
func (g GuestXL) Encode() []byte {
	var b strings.Builder
	fmt.Fprintln(&b, AutostartLine(g.Autostart))
	fmt.Fprintf(&b, "name = %q\ntype = %q\nmemory = %d\nvcpus = %d\n", g.Name, g.Type, g.MemoryMiB, g.VCPUs)
	fmt.Fprintf(&b, "kernel = %q\nramdisk = %q\n", g.Kernel, g.Ramdisk)
	fmt.Fprintf(&b, "extra = %q\non_poweroff = \"destroy\"\non_crash = \"destroy\"\n", strings.Join(strings.Fields(g.Extra), " "))
	var disks []string
	for i, d := range g.Disks {
		disks = append(disks, fmt.Sprintf("%q", XLDiskSpec(i, d, false)))
	}
	if g.CD != "" {
		disks = append(disks, fmt.Sprintf("%q", XLDiskSpec(len(g.Disks), g.CD, true)))
	}
	if len(disks) > 0 {
		fmt.Fprintf(&b, "disk = [ %s ]\n", strings.Join(disks, ", "))
	}
	if len(g.MACs) > 0 {
		var vifs []string
		for _, m := range g.MACs {
			spec := "bridge=" + g.Bridge
			if m != "" {
				spec += ", mac=" + strings.ToLower(m)
			}
			vifs = append(vifs, fmt.Sprintf("%q", spec+", script="+CtldPath))
		}
		fmt.Fprintf(&b, "vif = [ %s ]\n", strings.Join(vifs, ", "))
	}
	return []byte(b.String())
}

// XLDiskSpec is the i-th disk's xl disk spec (xvda, xvdb, ...); a read-only
// one is a CD (virtual media).
func XLDiskSpec(i int, target string, readOnly bool) string {
	access, dev := "rw", ""
	if readOnly {
		access, dev = "ro", ", devtype=cdrom"
	}
	return fmt.Sprintf("format=raw, vdev=xvd%c, access=%s%s, backendtype=phy, script=%s, target=%s", 'a'+i, access, dev, CtldPath, target)
}

// ParseXLInt reads an integer setting ("memory = 512") from an xl config;
// ok is false when it is absent or not a number.
func ParseXLInt(cfg []byte, key string) (n int, ok bool) {
	for _, line := range strings.Split(string(cfg), "\n") {
		k, v, found := strings.Cut(line, "=")
		if !found || strings.TrimSpace(k) != key {
			continue
		}
		if _, err := fmt.Sscanf(strings.Trim(strings.TrimSpace(v), `"'`), "%d", &n); err == nil {
			ok = true
		}
	}
	return n, ok
}

// TypeAutoLine is the comment fwbuild writes into the xl config of a guest
// whose profile says type: auto and whose kernel supports PVH: the type line
// says pvh, and ctld starts it as PV instead on a CPU that cannot run PVH
// guests (no HVM, or neither hardware-assisted nor shadow paging).
const TypeAutoLine = "# fwbuild: type=auto"

// ParseTypeAuto says whether an xl config carries TypeAutoLine.
func ParseTypeAuto(cfg []byte) bool {
	for _, line := range strings.Split(string(cfg), "\n") {
		if strings.TrimSpace(line) == TypeAutoLine {
			return true
		}
	}
	return false
}
