package main

import (
	"context"
	"fmt"
	"io"
	"path"
)

// Guest consoles from elsewhere: xenconsoled logs every guest's console to
// a file of its own from the moment the domain exists (--log=all: the log
// is complete whether or not anyone is attached), which `log <guest>` on
// the SSH console prints; `console <guest>` attaches interactively: the
// log's new lines out, keystrokes into the guest's pty (console_linux.go).

// guestConsoleLog is where xenconsoled --log=all writes a guest's console
// (Xen 4.17's daemon/io.c: <log dir>/guest-<domain name>.log).
func guestConsoleLog(name string) string {
	return path.Join(logDir, "console", "guest-"+name+".log")
}

// logTailBytes bounds what `log <guest>` prints: the end of the log.
const logTailBytes = 256 << 10

// consoleAttacher is the seam for an interactive guest console: reads are
// the guest's output, writes its input; Close detaches.
type consoleAttacher interface {
	attach(ctx context.Context, guest string) (io.ReadWriteCloser, error)
}

// guestLog returns the tail of a guest's console log.
func (a *agent) guestLog(name string) ([]byte, error) {
	b, err := a.sys.readFile(guestConsoleLog(name))
	if err != nil {
		return nil, fmt.Errorf("no console log for guest %s (%s): has it run since the control domain started?", name, guestConsoleLog(name))
	}
	// What rotation (console_rotate.go) moved aside comes first.
	if old, err := a.sys.readFile(guestConsoleLog(name) + ".1"); err == nil && len(b) < logTailBytes {
		b = append(old, b...)
	}
	if len(b) > logTailBytes {
		b = b[len(b)-logTailBytes:]
	}
	return b, nil
}

// Escapes that detach an interactive console: Ctrl-] (xenconsole's own),
// and ~. at the start of a line (OpenSSH's; its client usually consumes
// it and ends the whole session, which detaches too).
const ctrlBracket = 0x1d

// escapeFilter passes a user's keystrokes to a console and says when they
// ask to detach. A '~' at the start of a line is held back until the next
// byte shows whether it begins "~.".
type escapeFilter struct {
	atLineStart bool
	tilde       bool
}

func newEscapeFilter() *escapeFilter { return &escapeFilter{atLineStart: true} }

// filter returns the bytes to forward and whether the input asked to
// detach (the bytes before the escape are still forwarded).
func (f *escapeFilter) filter(in []byte) (out []byte, detach bool) {
	for _, c := range in {
		switch {
		case c == ctrlBracket:
			return out, true
		case f.tilde:
			f.tilde = false
			if c == '.' {
				return out, true
			}
			out = append(out, '~', c)
		case c == '~' && f.atLineStart:
			f.tilde = true
			continue
		default:
			out = append(out, c)
		}
		f.atLineStart = c == '\r' || c == '\n'
	}
	return out, false
}
