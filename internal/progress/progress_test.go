package progress

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

func TestContextReporter(t *testing.T) {
	ctx := context.Background()
	if Active(ctx) {
		t.Error("a bare context has an active reporter")
	}
	Start(ctx, "nobody watches", Bytes, 10).Done(true) // a no-op, not a panic
	rec := &Recorder{}
	ctx = WithReporter(ctx, rec)
	if !Active(ctx) {
		t.Error("WithReporter: not active")
	}
	task := Start(ctx, "copy", Bytes, 11)
	var out bytes.Buffer
	io.Copy(Writer(&out, task), Reader(strings.NewReader("hello world"), task))
	task.Done(true)
	task.Add(5) // after Done: ignored
	got := rec.Snapshot()
	if len(got) != 1 || got[0].Current != 22 || got[0].Total != 11 || !got[0].OK || out.String() != "hello world" {
		t.Errorf("tasks %+v (want the 11 bytes counted once read and once written), out %q", got, out.String())
	}
}

func TestPoll(t *testing.T) {
	rec := &Recorder{}
	task := rec.Start("grow", Bytes, 0)
	var n int64
	stop := Poll(task, time.Millisecond, func() int64 { n++; return n })
	time.Sleep(20 * time.Millisecond)
	stop()
	after := rec.Snapshot()[0].Current
	time.Sleep(5 * time.Millisecond)
	if after == 0 || rec.Snapshot()[0].Current != after {
		t.Errorf("Poll: %d reports, and %d after stop", after, rec.Snapshot()[0].Current)
	}
}
