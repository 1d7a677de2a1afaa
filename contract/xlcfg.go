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
