package kbuild

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fwbuild/fwbuild/internal/progress"
)

// logWriter appends make's output to the build log and counts compiled objects (kbuild's
// "  CC      path.o" / "  AS      path.o" lines) for progress reports.
type logWriter struct {
	f       *os.File
	mu      sync.Mutex
	partial []byte
	objs    int
	// task, if set, is told the object count as it grows.
	task progress.Task
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	data := append(w.partial, p...)
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		if isCompileLine(data[:i]) {
			w.objs++
			if w.task != nil {
				w.task.Set(int64(w.objs))
			}
		}
		data = data[i+1:]
	}
	if len(data) > 4096 {
		data = data[len(data)-4096:]
	}
	w.partial = append(w.partial[:0], data...)
	return w.f.Write(p)
}

func (w *logWriter) objects() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.objs
}

// setTask starts reporting the object count to t (nil: stop).
func (w *logWriter) setTask(t progress.Task) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.task = t
}

// countObjects counts the compile lines of a build log.
func countObjects(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if isCompileLine(sc.Bytes()) {
			n++
		}
	}
	return n, sc.Err()
}

// expectedObjects estimates how many objects a cold build compiles: the
// count in the newest finished build's log in the cache (0 when there is
// none). Another configuration compiles a different number, so the bar
// grows its total if the estimate is low.
func expectedObjects(kernelDir string) int {
	logs, _ := filepath.Glob(filepath.Join(kernelDir, "*", "build.log"))
	var newest string
	var at time.Time
	for _, l := range logs {
		if strings.HasSuffix(filepath.Dir(l), ".tmp") {
			continue // a build under way (this one)
		}
		if fi, err := os.Stat(l); err == nil && fi.ModTime().After(at) {
			newest, at = l, fi.ModTime()
		}
	}
	if newest == "" {
		return 0
	}
	n, _ := countObjects(newest)
	return n
}

func isCompileLine(line []byte) bool {
	return bytes.HasPrefix(line, []byte("  CC ")) || bytes.HasPrefix(line, []byte("  AS "))
}

// tail returns the last n lines of a file (for error messages).
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "(log unreadable: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
