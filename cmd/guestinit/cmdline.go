package main

import (
	"fmt"
	"strings"
)

// params are what the kernel command line tells guestinit.
type params struct {
	Name  string // fwbuild.guest
	After string // fwbuild.after: "poweroff", "run" or "" (not given)
}

// parseCmdline reads fwbuild.guest and fwbuild.after from the kernel command
// line; other parameters are the kernel's. It returns what it could parse
// along with the error.
func parseCmdline(s string) (params, error) {
	var p params
	for _, f := range strings.Fields(s) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "fwbuild.guest":
			p.Name = v
		case "fwbuild.after":
			p.After = v
		}
	}
	if p.Name == "" {
		return p, fmt.Errorf("no fwbuild.guest=<name> on the kernel command line %q", strings.TrimSpace(s))
	}
	switch p.After {
	case "", "poweroff", "run":
	default:
		bad := p.After
		p.After = ""
		return p, fmt.Errorf("fwbuild.after=%s: want poweroff or run", bad)
	}
	return p, nil
}
