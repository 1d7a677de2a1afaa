package initramfs

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// mkuimage runs the go command without a context, both itself and through
// golang.org/x/tools/go/packages, and a cold u-root busybox build takes
// minutes on a loaded machine: Ctrl-C would wait for it. Every one of those
// go commands runs in the build's private module directory, so when ctx ends
// stopOnCancel kills, until the build has returned, each process of ours
// whose working directory is inside dir, with everything it started.

// stopOnCancel watches ctx while mkuimage runs in dir; call the returned
// function once the build has returned.
func stopOnCancel(ctx context.Context, dir string) func() {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-done:
			return
		case <-ctx.Done():
		}
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			killWorkingIn(dir)
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); <-stopped }
}

// killWorkingIn SIGKILLs this process's descendants that work inside dir,
// and their descendants.
func killWorkingIn(dir string) {
	dir = filepath.Clean(dir)
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	children := map[int][]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid := parentOf(pid); ppid > 0 {
			children[ppid] = append(children[ppid], pid)
		}
	}
	var kill func(pid int, inside bool)
	kill = func(pid int, inside bool) {
		if !inside {
			cwd, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/cwd")
			inside = err == nil && (cwd == dir || strings.HasPrefix(cwd, dir+"/"))
		}
		if inside {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		for _, c := range children[pid] {
			kill(c, inside)
		}
	}
	for _, c := range children[os.Getpid()] {
		kill(c, false)
	}
}

// parentOf reads a process's parent from /proc/<pid>/stat, whose second
// field (the command, in parentheses) may itself hold spaces and ')'.
func parentOf(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}
