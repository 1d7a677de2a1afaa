package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY makes a pty pair as xenconsoled does: the master stands for the
// guest's side (what it reads is what the user typed), the slave's path is
// what xenstore's console/tty names.
func openPTY(t *testing.T) (master *os.File, slave string) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetUint32(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	return m, fmt.Sprintf("/dev/pts/%d", n)
}

// TestGuestConsolesRealPTY: the real attach shows the end of the guest's
// log and then what the guest prints next, and writes keystrokes to its pty
// unchanged; it ends when the guest is gone.
func TestGuestConsolesRealPTY(t *testing.T) {
	a, r, _, _ := world(t)
	a.cfg.XenBin = xenBin
	master, slave := openPTY(t)
	r.results[xenBin+"/xl list demo"] = fakeResult{out: "Name ID Mem VCPUs State Time(s)\ndemo 3 64 1 -b---- 0.5\n"}
	r.results["/usr/bin/xenstore-read /local/domain/3/console/tty"] = fakeResult{out: slave + "\n"}
	lr := &lockedRunner{fakeRunner: r}
	a.run = lr
	logs := t.TempDir()
	logFile := filepath.Join(logs, "guest-demo.log")
	os.WriteFile(logFile, []byte(strings.Repeat("old boot noise\n", 500)+"demo login: "), 0o644)

	c, err := guestConsoles{a: a, logs: logs}.attach(context.Background(), "demo")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := make(chan string, 16)
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := c.Read(b)
			if n > 0 {
				got <- string(b[:n])
			}
			if err != nil {
				close(got)
				return
			}
		}
	}()
	var seen strings.Builder
	wait := func(want string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for !strings.Contains(seen.String(), want) {
			select {
			case s, ok := <-got:
				if !ok {
					t.Fatalf("console ended before %q:\n%s", want, seen.String())
				}
				seen.WriteString(s)
			case <-deadline:
				t.Fatalf("no %q in:\n%s", want, seen.String())
			}
		}
	}
	wait("demo login: ")
	if len(seen.String()) > attachContext {
		t.Errorf("attach showed %d bytes of old log, want at most %d", len(seen.String()), attachContext)
	}
	if _, err := c.Write([]byte("root\r\n")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 64)
	master.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := io.ReadAtLeast(master, b, 6)
	if err != nil || string(b[:n]) != "root\r\n" {
		t.Errorf("the guest read %q (%v), want the keys unchanged", b[:n], err)
	}
	f, _ := os.OpenFile(logFile, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("root\r\nPassword: ")
	f.Close()
	wait("Password: ")

	// The guest goes away: the console ends by itself.
	lr.mu.Lock()
	r.results[xenBin+"/xl list demo"] = fakeResult{err: fmt.Errorf("xl list: domain demo not found")}
	lr.mu.Unlock()
	select {
	case _, ok := <-got:
		for ok {
			_, ok = <-got
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the console did not end after the guest was gone")
	}
}

// lockedRunner lets a test change the fake's answers while a console's
// goroutine asks it.
type lockedRunner struct {
	*fakeRunner
	mu sync.Mutex
}

func (l *lockedRunner) output(ctx context.Context, name string, args ...string) ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fakeRunner.output(ctx, name, args...)
}
