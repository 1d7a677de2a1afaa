package qemutests

import (
	"bufio"
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// kill reaches what the process forked, not only the process itself.
func TestProcKillReachesGroup(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	p, err := startProcess("/bin/sh", []string{"-c", `sleep 300 & echo $!; sleep 300`}, w, nil)
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil {
		p.kill()
		t.Fatal(err)
	}
	child, _ := strconv.Atoi(strings.TrimSpace(line))
	p.kill()
	if st := p.status(); !strings.Contains(st, "killed") {
		t.Errorf("status after kill = %q, want a SIGKILL", st)
	}
	assertGroupGone(t, p.pid)
	assertDead(t, child, 5*time.Second)
}

func TestProcStatus(t *testing.T) {
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	for _, c := range []struct{ script, want string }{{"exit 0", "exit status 0"}, {"exit 3", "exit status 3"}} {
		p, err := startProcess("/bin/sh", []string{"-c", c.script}, null, nil)
		if err != nil {
			t.Fatal(err)
		}
		<-p.exited
		if got := p.status(); got != c.want {
			t.Errorf("%s: status %q, want %q", c.script, got, c.want)
		}
		p.kill() // after the exit: must not block or fail
	}
	if _, err := startProcess("/nonexistent/qemu", nil, null, nil); err == nil || !strings.Contains(err.Error(), "start /nonexistent/qemu") {
		t.Errorf("start of a missing binary: %v", err)
	}
}

// A QEMU that exits while a descendant keeps its output open still ends the
// run, within the grace period for reading what it wrote before it died.
func TestRunFakeExitChildHoldsOutput(t *testing.T) {
	bin, _ := fakeQEMU(t, `sleep 300 & echo "dying"; exit 2`)
	var pid int
	begin := time.Now()
	_, err := Run(context.Background(), Machine{Binary: bin}, []Marker{Substring("x", "never", time.Minute)},
		Options{OnStart: func(p int) { pid = p }, getenv: noEnv})
	if took := time.Since(begin); took > 20*time.Second {
		t.Errorf("Run took %v after QEMU exited", took)
	}
	var me *MarkerError
	if !errors.As(err, &me) || !errors.Is(err, ErrQEMUExited) || !strings.Contains(err.Error(), "exit status 2") {
		t.Fatalf("err = %v, want a MarkerError with ErrQEMUExited and exit status 2", err)
	}
	if len(me.Tail) != 1 || me.Tail[0] != "dying" {
		t.Errorf("tail %q, want the output printed before the exit", me.Tail)
	}
	assertGroupGone(t, pid)
}
