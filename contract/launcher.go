package contract

// The launcher's console lines. The launcher is C (launcher/src), so these
// are the one Go spelling of what it prints; the boot tests match these
// patterns against its real output, which ties the two together.

// LauncherPrefix starts every line the launcher prints.
const LauncherPrefix = "fwbuild-launcher: "

// LauncherStartingPattern matches the line the launcher prints when the
// payload's SHA-256 is the pinned one and the boot manager is about to
// start it; it captures the hash. On a board with two payload slots the
// line goes on with the slot and why (LauncherSlotPattern, spislots.go).
const LauncherStartingPattern = LauncherPrefix + `starting payload .* sha256 ([0-9a-f]{64})`

// LauncherFailedPattern matches the launcher's one line for a payload it
// refuses (missing, blank, wrong hash, no boot option); it captures why.
// The platform's boot order continues after it.
const LauncherFailedPattern = LauncherPrefix + `FAILED (payload .*); continuing with the platform's boot order`

// LauncherHashMismatchPattern is LauncherFailedPattern for a payload whose
// SHA-256 is not the pinned one; it captures the pinned and found hashes.
const LauncherHashMismatchPattern = LauncherPrefix + `FAILED payload .*: SHA-256 mismatch: pinned ([0-9a-f]{64}), found ([0-9a-f]{64})`
