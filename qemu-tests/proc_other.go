//go:build unix && !linux

package qemutests

import "syscall"

// sysProcAttr: outside Linux there is no Pdeathsig; the process group still
// lets Run kill QEMU and its helpers at once.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
