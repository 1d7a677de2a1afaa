package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Console logs live in the control domain's memory (a tmpfs), and
// xenconsoled appends to them for as long as a guest runs: rotation keeps
// each one bounded. A log over consoleLogMax has its end copied to
// guest-<name>.log.1 (replacing the previous one) and is truncated in place:
// xenconsoled opens a guest's log with O_APPEND (Xen 4.17's daemon/io.c,
// create_console_log), so its next write lands at the new end, without a
// signal or a reopen. A guest's log is thus at most consoleLogMax +
// consoleLogKeep. Output the guest writes between the copy and the
// truncation (microseconds) is lost.

const (
	// consoleLogMax is the size at which a guest's console log is cut.
	consoleLogMax = 1 << 20
	// consoleLogKeep is what the .1 file keeps: the end, from a line's
	// start, as much as `log <guest>` and the API's ConsoleLog show.
	consoleLogKeep = logTailBytes
	// consoleRotateEvery is how often the logs are looked at.
	consoleRotateEvery = 10 * time.Second
)

// rotateConsoleLogs rotates every guest console log in dir larger than
// max: its last keep bytes (from the first line start within them) to
// <log>.1, the log itself truncated. It returns the logs it rotated.
func rotateConsoleLogs(dir string, max, keep int64) ([]string, error) {
	logs, err := filepath.Glob(filepath.Join(dir, "guest-*.log"))
	if err != nil {
		return nil, err
	}
	var cut []string
	for _, p := range logs {
		fi, err := os.Stat(p)
		if err != nil || !fi.Mode().IsRegular() || fi.Size() <= max {
			continue
		}
		if err := cutLog(p, fi.Size(), keep); err != nil {
			return cut, fmt.Errorf("console log %s: %w", p, err)
		}
		cut = append(cut, p)
	}
	return cut, nil
}

func cutLog(p string, size, keep int64) error {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	tail := make([]byte, keep)
	n, err := f.ReadAt(tail, size-keep)
	if err != nil && err != io.EOF {
		return err
	}
	tail = tail[:n]
	if i := bytes.IndexByte(tail, '\n'); i >= 0 && i < len(tail)-1 {
		tail = tail[i+1:]
	}
	if err := writeFileAtomic(p+".1", tail, 0o644); err != nil {
		return err
	}
	return f.Truncate(0)
}

// rotateConsoleLogsEvery runs rotateConsoleLogs until ctx ends.
func (a *agent) rotateConsoleLogsEvery(ctx context.Context, dir string) {
	t := time.NewTicker(consoleRotateEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			rotateConsoleLogs(dir, consoleLogMax, consoleLogKeep)
		}
	}
}
