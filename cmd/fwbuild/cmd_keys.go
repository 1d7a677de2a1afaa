package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/fwbuild/fwbuild/secboot"
)

// keysFlag adds --keys (default $FWBUILD_KEYS) to a command that builds.
func (e *env) keysFlag(c *cobra.Command, usage string) {
	c.Flags().StringVar(&e.keys, "keys", os.Getenv("FWBUILD_KEYS"), usage)
	c.MarkFlagDirname("keys")
}

func (e *env) keysCommand() *cobra.Command {
	var dir, owner string
	c := &cobra.Command{
		Use:   "keys --dir DIR [--owner NAME]",
		Short: "create a test Secure Boot key set (PK, KEK, db) for build --keys",
		Long: "keys creates a self-signed RSA 2048 PK, KEK and db (key and certificate each) in a new directory.\n" +
			"build --keys signs both payloads with db and, on a Secure Boot board, enrols all three in the\n" +
			"variable store it writes. The private keys never go into an image; keep them out of version control.",
		Example: "  fwbuild keys --dir ~/owner-keys --owner \"Example Corp\"\n  fwbuild build --board qemu-q35-secboot --keys ~/owner-keys",
		Args:    noArgs,
		RunE:    runE(func(*cobra.Command, []string) error { return e.runKeys(dir, owner) }),
	}
	c.Flags().StringVar(&dir, "dir", "", "directory to create the keys in (never overwritten; keep it off the image and out of version control)")
	c.Flags().StringVar(&owner, "owner", "fwbuild test owner", "common name put in the certificates (\"<owner> PK\", ...)")
	c.MarkFlagDirname("dir")
	return c
}

// runKeys creates an owner's test key set; the logic is secboot.Generate.
func (e *env) runKeys(dir, owner string) error {
	if dir == "" {
		return usagef("--dir is required")
	}
	if err := secboot.Generate(dir, owner); err != nil {
		return err
	}
	if e.json {
		files := map[string]string{}
		for _, r := range secboot.Roles {
			files[r+".key"], files[r+".crt"] = secboot.KeyFile(dir, r), secboot.CertFile(dir, r)
		}
		return e.printJSON(map[string]any{"dir": dir, "files": files})
	}
	fmt.Fprintf(e.stdout, "created PK, KEK and db (RSA 2048, self-signed) in %s; build with --keys %s\n", dir, dir)
	fmt.Fprintf(e.stdout, "the private keys (*.key) sign payloads and key updates: keep them off images and out of version control\n")
	return nil
}
