package main

import (
	"fmt"

	"github.com/fwbuild/fwbuild/secboot"
)

// cmdKeys creates an owner's test key set; the logic is secboot.Generate.
func cmdKeys(e *env, args []string) error {
	fs := e.flags("keys", "--dir DIR [--owner NAME]")
	dir := fs.String("dir", "", "directory to create the keys in (never overwritten; keep it off the image and out of version control)")
	owner := fs.String("owner", "fwbuild test owner", "common name put in the certificates (\"<owner> PK\", ...)")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		return usagef("--dir is required")
	}
	if err := secboot.Generate(*dir, *owner); err != nil {
		return err
	}
	if e.json {
		files := map[string]string{}
		for _, r := range secboot.Roles {
			files[r+".key"], files[r+".crt"] = secboot.KeyFile(*dir, r), secboot.CertFile(*dir, r)
		}
		return e.printJSON(map[string]any{"dir": *dir, "files": files})
	}
	fmt.Fprintf(e.stdout, "created PK, KEK and db (RSA 2048, self-signed) in %s; build with --keys %s\n", *dir, *dir)
	fmt.Fprintf(e.stdout, "the private keys (*.key) sign payloads and key updates: keep them off images and out of version control\n")
	return nil
}
