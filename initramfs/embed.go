package initramfs

import _ "embed"

// urootModule is the Go module the busybox and the guest init are built in:
// go.mod and go.sum covering u-root's core commands plus copies of cmd/ctld
// and cmd/guestinit, so an installed fwbuild needs no source checkout.
// Regenerate after changing either command.
//
//go:generate go run ./internal/gensrc -repo .. -out uroot.txtar
//go:embed uroot.txtar
var urootModule []byte
