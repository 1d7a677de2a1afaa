package main

import "golang.org/x/sys/unix"

// rebootUnit restarts the unit for the host's Reset (ForceRestart): guests'
// disks are files on the data disk, so sync first.
func rebootUnit() error {
	unix.Sync()
	return unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
}
