package initramfs

import _ "embed"

// urootModule is the Go module the busybox is built in: go.mod and go.sum
// covering u-root's core commands plus a copy of cmd/ctld, so an installed
// fwbuild needs no source checkout. Regenerate after changing cmd/ctld.
//
//go:generate go run ./internal/gensrc -repo .. -out uroot.txtar
//go:embed uroot.txtar
var urootModule []byte
