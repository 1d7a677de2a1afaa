//go:build tools

package fwbuild

// The control domain's u-root commands are compiled at build time in a
// module of their own (initramfs/module.txtar), at the u-root version this
// module requires; importing one here keeps that requirement, and its
// checksums, in go.mod where `go mod tidy` would otherwise drop it.
import _ "github.com/u-root/u-root/cmds/core/init"
