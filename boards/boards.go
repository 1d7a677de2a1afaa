// Package boards embeds the shipped board profiles and their kernel config
// fragments, so an installed fwbuild works outside this repository.
package boards

import "embed"

// FS holds every profile (*.yaml) and fragment shipped in this directory.
//
//go:embed *
var FS embed.FS
