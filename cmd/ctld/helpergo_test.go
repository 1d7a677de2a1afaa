package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestHelperGoLine(t *testing.T) {
	for _, dir := range []string{"/usr/lib/xen-4.17/bin", ""} {
		var b bytes.Buffer
		if err := writeGo(&b, dir); err != nil {
			t.Fatal(err)
		}
		got, ok, err := waitForGo(&b)
		if err != nil || !ok || got != dir {
			t.Errorf("waitForGo(writeGo(%q)) = %q, %v, %v", dir, got, ok, err)
		}
	}
	// ctld closed the pipe without a go: the helper exits, not an error.
	for _, in := range []string{"", "go\t/usr/lib"} {
		if _, ok, err := waitForGo(strings.NewReader(in)); ok || err != nil {
			t.Errorf("waitForGo(%q) = ok %v, err %v; want no go, no error", in, ok, err)
		}
	}
	if _, ok, err := waitForGo(strings.NewReader("run\t/x\n")); ok || err == nil {
		t.Errorf("waitForGo of a wrong word: ok %v, err %v; want an error", ok, err)
	}
	if err := writeGo(&bytes.Buffer{}, "a\nb"); err == nil {
		t.Error("writeGo took a directory with a newline")
	}
}
