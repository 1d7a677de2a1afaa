package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/term"
)

// guestConsoles attaches the SSH console to a guest's console without a
// second xenconsole client: two readers of one pty would split the guest's
// output between them (the serial console's forwarder, guests.go, keeps its
// xl console attached for as long as the guest runs). Output comes from the
// guest's log, which xenconsoled writes whoever is attached; keystrokes are
// written to the guest's pty (xenstore's console/tty), which only writes,
// so any number of sessions and the forwarder can watch one guest.
type guestConsoles struct {
	a *agent
	// logs is where xenconsoled writes the guests' logs ("" means its
	// default, next to the hypervisor's log).
	logs string
}

func (g guestConsoles) logPath(name string) string {
	if g.logs == "" {
		return guestConsoleLog(name)
	}
	return g.logs + "/guest-" + name + ".log"
}

// logPoll is how often an attached console looks for new output.
const logPoll = 50 * time.Millisecond

// attachContext is how much of the log an attach shows first, so the
// user sees the guest's last lines (a prompt) rather than nothing.
const attachContext = 2048

func (g guestConsoles) attach(ctx context.Context, name string) (io.ReadWriteCloser, error) {
	id, err := g.a.guestID(ctx, name)
	if err != nil {
		return nil, err
	}
	out, err := g.a.run.output(ctx, g.a.xenstore("xenstore-read"), fmt.Sprintf("/local/domain/%d/console/tty", id))
	if err != nil {
		return nil, fmt.Errorf("find its console: %w", err)
	}
	tty := strings.TrimSpace(string(out))
	if !strings.HasPrefix(tty, "/dev/pts/") {
		return nil, fmt.Errorf("its console is %q, not a pty xenconsoled made", tty)
	}
	w, err := os.OpenFile(tty, os.O_WRONLY|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	// Raw, as xenconsole leaves it: keystrokes reach the guest unchanged
	// (no \n to \r\n). Best effort: the forwarder's xenconsole did it too.
	term.MakeRaw(int(w.Fd()))
	log, err := os.Open(g.logPath(name))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("its console log: %w (is xenconsoled running with --log=all?)", err)
	}
	if end, err := log.Seek(0, io.SeekEnd); err == nil {
		log.Seek(max(0, end-attachContext), io.SeekStart)
	}
	return &ttyConsole{g: g, name: name, w: w, log: log, stop: make(chan struct{})}, nil
}

type ttyConsole struct {
	g    guestConsoles
	name string
	w    *os.File
	log  *os.File
	stop chan struct{}
	once sync.Once
}

func (c *ttyConsole) Write(p []byte) (int, error) { return c.w.Write(p) }

// Read follows the log as tail -f does, and ends when the console is
// closed or the guest is gone.
func (c *ttyConsole) Read(p []byte) (int, error) {
	for polls := 1; ; polls++ {
		n, err := c.log.Read(p)
		if n > 0 || (err != nil && !errors.Is(err, io.EOF)) {
			return n, err
		}
		select {
		case <-c.stop:
			return 0, io.EOF
		case <-time.After(logPoll):
		}
		if polls%40 == 0 {
			if _, err := c.g.a.guestID(context.Background(), c.name); err != nil {
				return 0, io.EOF
			}
		}
	}
}

func (c *ttyConsole) Close() error {
	c.once.Do(func() {
		close(c.stop)
		c.w.Close()
		c.log.Close()
	})
	return nil
}
