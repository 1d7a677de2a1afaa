package main

import (
	"context"
	"fmt"

	"github.com/fwbuild/fwbuild/contract"
	"github.com/fwbuild/fwbuild/contract/update"
)

// reportVersion prints the payload's version from the command line the
// launcher-checked (or signed) payload carries. A payload without one (an
// older fwbuild, a hand-made boot) is not a failure: it cannot be updated
// in place, which the update service will say.
func (a *agent) reportVersion(context.Context) error {
	cmdline, err := a.sys.readFile("/proc/cmdline")
	if err != nil {
		return fmt.Errorf("read /proc/cmdline: %w", err)
	}
	v, ok := contract.ParseVersionArg(string(cmdline))
	if !ok {
		return nil
	}
	if _, err := update.ParseVersion(v); err != nil {
		return fmt.Errorf("%s: %w", contract.VersionParam, err)
	}
	a.version = v
	fmt.Fprintln(a.out, contract.PayloadVersion{Version: v})
	return nil
}
