package main

import (
	"context"
	"strings"
	"testing"
)

// traced hands over each line of standard error as it comes, returns
// standard output, and a failure's message keeps what says why: the error
// lines, else the last line that is not debug detail.
func TestTracedRunner(t *testing.T) {
	var lines []string
	out, err := execRunner{}.traced(context.Background(), func(l string) { lines = append(lines, l) },
		"sh", "-c", `echo out; echo "libxl: debug: a" >&2; echo "Parsing config from x" >&2; echo done >&2`)
	if err != nil || string(out) != "out\n" || strings.Join(lines, "|") != "libxl: debug: a|Parsing config from x|done" {
		t.Fatalf("out %q, lines %q, err %v", out, lines, err)
	}
	_, err = execRunner{}.traced(context.Background(), func(string) {},
		"sh", "-c", `echo "Failed to parse config: Invalid argument" >&2; echo "xencall:buffer: debug: total allocations:3" >&2; exit 3`)
	if err == nil || !strings.HasSuffix(err.Error(), "exit status 3: Failed to parse config: Invalid argument") {
		t.Errorf("parse failure: %v", err)
	}
	_, err = execRunner{}.traced(context.Background(), func(string) {},
		"sh", "-c", `echo "libxl: error: libxl_dom.c:592: failed to build" >&2; echo "libxl: debug: x" >&2; echo "detail" >&2; exit 3`)
	if err == nil || !strings.HasSuffix(err.Error(), "exit status 3: libxl: error: libxl_dom.c:592: failed to build") {
		t.Errorf("libxl failure: %v", err)
	}
}
