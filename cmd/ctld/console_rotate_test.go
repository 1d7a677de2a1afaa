package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A log over the limit has its end (from a line start) moved to .1 and
// is emptied in place; an appender holding it open with O_APPEND, as
// xenconsoled does, goes on writing at the new end; guestLog shows the
// .1 part first. A log under the limit is left alone.
func TestRotateConsoleLogs(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "guest-web.log")
	small := filepath.Join(dir, "guest-db.log")
	var b bytes.Buffer
	for i := 0; b.Len() < 5000; i++ {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	if err := os.WriteFile(big, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(small, []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	app, err := os.OpenFile(big, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()

	cut, err := rotateConsoleLogs(dir, 4096, 1000)
	if err != nil || len(cut) != 1 || cut[0] != big {
		t.Fatalf("rotated %v, %v; want only %s", cut, err, big)
	}
	old, _ := os.ReadFile(big + ".1")
	if len(old) > 1000 || len(old) < 900 || !bytes.HasSuffix(b.Bytes(), old) || !strings.HasPrefix(string(old), "line ") {
		t.Errorf(".1 holds %d bytes %q...: want the last ~1000 from a line start", len(old), old[:min(20, len(old))])
	}
	if st, _ := os.Stat(big); st.Size() != 0 {
		t.Errorf("rotated log has %d bytes, want 0", st.Size())
	}
	app.Write([]byte("after rotation\n"))
	if now, _ := os.ReadFile(big); string(now) != "after rotation\n" {
		t.Errorf("the appender's next write: log is %q", now)
	}
	if st, _ := os.Stat(small); st.Size() != 6 {
		t.Errorf("small log changed: %d bytes", st.Size())
	}
	if _, err := os.Stat(small + ".1"); err == nil {
		t.Error("small log rotated")
	}

	fs := &fakeSystem{files: map[string]string{guestConsoleLog("web"): "after rotation\n", guestConsoleLog("web") + ".1": string(old)}}
	a := &agent{sys: fs}
	got, err := a.guestLog("web")
	if err != nil || string(got) != string(old)+"after rotation\n" {
		t.Errorf("guestLog after rotation: %v, %q", err, got)
	}
}
