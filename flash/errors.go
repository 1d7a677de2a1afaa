package flash

import (
	"fmt"
	"strings"
)

// Chip states reported in Error.Chip after a failed SPI write.
const (
	ChipUnchanged = "unchanged" // read back after the failure: equals the backup
	ChipModified  = "modified"  // differs from the backup: restore it with Error.Restore
	ChipUnknown   = "unknown"   // could not be read back
)

// Error is returned for every refusal or failure of WriteSPI and WriteUSB. Its message is
// multi-line and meant to be printed as is; the fields let a CLI render it differently
// (e.g. --json) or offer to run Restore.
type Error struct {
	Op       string   // "spi check", "spi probe", "spi backup", "spi write", "spi verify", "usb check", "usb write", "usb verify"
	Msg      string   // what went wrong
	Flashrom []string // flashrom's own relevant output lines
	Hint     string   // what to do
	Chip     string   // ChipUnchanged, ChipModified, ChipUnknown or "" (not applicable)
	ChipNote string   // how Chip is known, e.g. "nothing was written to it"; "" prints the default for Chip
	Backup   string   // full-chip backup taken before the write, if any
	Restore  string   // shell command that writes Backup back to the whole chip
	Err      error    // underlying error, if any
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "flash: %s: %s", e.Op, e.Msg)
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	for _, l := range e.Flashrom {
		fmt.Fprintf(&b, "\n  flashrom: %s", l)
	}
	if e.Chip != "" {
		note := e.ChipNote
		if note == "" {
			note = map[string]string{ChipUnchanged: "read back, it equals the backup",
				ChipModified: "it no longer equals the backup", ChipUnknown: "could not read it back"}[e.Chip]
		}
		state := map[string]string{ChipUnchanged: "unchanged", ChipModified: "MODIFIED", ChipUnknown: "state unknown"}[e.Chip]
		if state == "" {
			state = e.Chip
		}
		fmt.Fprintf(&b, "\n  chip: %s (%s)", state, note)
	}
	if e.Backup != "" {
		fmt.Fprintf(&b, "\n  backup: %s", e.Backup)
	}
	if e.Restore != "" {
		fmt.Fprintf(&b, "\n  restore: %s", e.Restore)
	}
	fmt.Fprintf(&b, "\n  what to do: %s", e.whatToDo())
	return b.String()
}

// whatToDo is the hint as printed: never empty, whoever built the Error, because a
// bare "what to do:" line leaves someone holding a half-written chip with nothing.
func (e *Error) whatToDo() string {
	if h := joinHints(e.Hint); h != "" {
		return h
	}
	verbose := "run again with -v for flashrom's full output"
	if strings.HasPrefix(e.Op, "usb") {
		verbose = "run again with -v for details"
	}
	switch {
	case e.Chip == ChipModified || e.Chip == ChipUnknown:
		if e.Restore != "" {
			return "restore the backup with the restore command above, then " + verbose
		}
		return "do not power-cycle the board; " + verbose
	case e.Chip == ChipUnchanged || strings.HasSuffix(e.Op, " check"):
		return "nothing was written: fix the cause above and run again"
	case strings.HasPrefix(e.Op, "usb"):
		return "the target may be partly written and not boot: write it again (the device may be failing if this repeats)"
	}
	return verbose
}

// joinHints joins the non-empty parts with "; ": hints are assembled from several
// places (flashrom's diagnosis, the step that failed), and any of them may be empty.
func joinHints(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p = strings.Trim(p, " \t\n;"); p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, "; ")
}

func (e *Error) Unwrap() error { return e.Err }
