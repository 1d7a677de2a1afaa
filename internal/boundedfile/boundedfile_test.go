package boundedfile

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	ok := filepath.Join(dir, "ok")
	os.WriteFile(ok, []byte("hello"), 0o644)
	if b, err := Read(ok, 5); err != nil || string(b) != "hello" {
		t.Fatalf("Read = %q, %v", b, err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ path, want string }{
		{ok + "x", "cannot be read"},
		{dir, "is not a regular file"},
		{fifo, "is not a regular file"},
		{"/dev/zero", "is not a regular file"},
	} {
		if _, err := Read(c.path, 1<<20); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Read(%s): %v, want %q", c.path, err, c.want)
		}
	}
	if _, err := Read(ok, 4); err == nil || !strings.Contains(err.Error(), "is 5 bytes: at most 4") {
		t.Errorf("Read of a file over the bound: %v", err)
	}
}
