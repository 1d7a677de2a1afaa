package kbuild

import (
	"context"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/internal/progress"
)

// A real (tiny) make run: the objects its kbuild-style lines name are
// reported against the count of the previous build in the cache, and a hit
// reports the cached build's count as done.
func TestBuildReportsObjects(t *testing.T) {
	s := miniSpec(t, "CONFIG_64BIT=y\n")
	cache := t.TempDir()
	build := func() []progress.TaskState {
		t.Helper()
		rec := &progress.Recorder{}
		if _, err := Build(progress.WithReporter(context.Background(), rec), cache, s, func(string) {}); err != nil {
			t.Fatal(err)
		}
		return rec.Snapshot()
	}
	want := func(what string, got []progress.TaskState, name string, total int64) {
		t.Helper()
		if len(got) != 1 || got[0].Name[:len(name)] != name || got[0].Total != total || got[0].Current != 3 || !got[0].Ended || !got[0].OK || got[0].Unit != progress.Items {
			t.Errorf("%s: tasks %+v, want one %q with total %d, 3 objects, ended ok", what, got, name, total)
		}
	}
	// Nothing built before: the total is unknown, the count still grows.
	want("cold build in an empty cache", build(), "kernel: make bzImage", 0)
	want("hit", build(), "kernel (cached)", 3)
	s.Epoch = s.Epoch.Add(time.Second) // another key: a cold build that knows what to expect
	want("cold build after one", build(), "kernel: make bzImage", 3)
}
