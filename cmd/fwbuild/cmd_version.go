package main

import (
	"fmt"
	"sync"

	"github.com/spf13/cobra"

	"github.com/fwbuild/fwbuild/internal/provenance"
)

// currentVersion asks once: a `go run` binary asks git.
var currentVersion = sync.OnceValue(provenance.Current)

func (e *env) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print fwbuild's version, VCS revision, dirty flag and Go version (as manifest.json records them)",
		Long: "version prints the module version and VCS revision the go command stamped into the binary\n" +
			"(`go build` in a git checkout), whether the tree was dirty, and the Go version. A `go run` binary\n" +
			"carries no VCS stamp: fwbuild then asks git about the checkout it was compiled from; a binary\n" +
			"built without VCS information says \"unknown\" and why. Every build's manifest.json records the same.",
		Example: "  fwbuild version\n  fwbuild --version\n  fwbuild version --json",
		Args:    noArgs,
		RunE: runE(func(*cobra.Command, []string) error {
			v := currentVersion()
			if e.json {
				return e.printJSON(v)
			}
			_, err := fmt.Fprint(e.stdout, v.Text())
			return err
		}),
	}
}
