package qemutests

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// qemuProcess is a started QEMU, the leader of its own process group (see
// sysProcAttr), so that kill reaches every helper it forked too.
type qemuProcess struct {
	pid   int
	start time.Time // when it started: the zero of every Match.At
	// exited is closed once QEMU has been reaped; waitErr is its exit
	// status, valid from then on.
	exited  chan struct{}
	waitErr error
}

// startProcess starts bin with out as its standard output and error (one
// pipe, so QEMU's own errors land in the log and the tail) and, if not nil,
// in as its standard input. The caller closes its copies of out and in.
func startProcess(bin string, args []string, out, in *os.File) (*qemuProcess, error) {
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if in != nil { // a nil *os.File in the interface would not mean "no input"
		cmd.Stdin = in
	}
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &qemuProcess{pid: cmd.Process.Pid, start: time.Now(), exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// since returns the time elapsed since QEMU started.
func (p *qemuProcess) since() time.Duration { return time.Since(p.start) }

// kill SIGKILLs QEMU's whole process group and waits until QEMU itself is
// reaped. Helpers are reaped by their new parent; the signal is enough to
// stop them running.
func (p *qemuProcess) kill() {
	syscall.Kill(-p.pid, syscall.SIGKILL)
	<-p.exited
}

// status describes how QEMU ended; call it only once exited is closed.
func (p *qemuProcess) status() string {
	if p.waitErr == nil {
		return "exit status 0"
	}
	return p.waitErr.Error()
}
