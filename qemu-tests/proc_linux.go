package qemutests

import "syscall"

// sysProcAttr puts QEMU in its own process group, so one kill reaches it and
// its helpers and a terminal's Ctrl-C reaches only us (we then kill it), and
// asks the kernel to SIGKILL it if we die without cleaning up. Pdeathsig
// fires when the creating OS thread exits; Go threads only exit when a
// goroutine locked to one ends, which Run never does.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
