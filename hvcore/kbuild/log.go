package kbuild

import (
	"bytes"
	"os"
	"strings"
	"sync"
)

// logWriter appends make's output to the build log and counts compiled objects (kbuild's
// "  CC      path.o" / "  AS      path.o" lines) for progress reports.
type logWriter struct {
	f       *os.File
	mu      sync.Mutex
	partial []byte
	objs    int
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
