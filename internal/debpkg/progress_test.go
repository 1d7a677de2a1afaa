package debpkg

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/fwbuild/fwbuild/internal/progress"
)

// A download someone watches is reported in bytes against the size apt
// gives for it, and ends with all of them.
func TestFetchReportsDownload(t *testing.T) {
	c := &Cache{Dir: t.TempDir()}
	rec := &progress.Recorder{}
	got, err := c.Fetch(progress.WithReporter(context.Background(), rec), []Pkg{yajl})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(c.Dir, "debs", yajl.SHA256+".deb"))
	if err != nil {
		t.Fatal(err)
	}
	tasks := rec.Snapshot()
	if !got[0].Downloaded || len(tasks) != 1 {
		t.Fatalf("downloaded=%v, tasks %+v: want one download task", got[0].Downloaded, tasks)
	}
	d := tasks[0]
	if d.Name != "download libyajl2" || d.Unit != progress.Bytes || d.Total != fi.Size() || d.Current != fi.Size() || !d.Ended || !d.OK {
		t.Errorf("task %+v, want download libyajl2 of %d bytes, all done", d, fi.Size())
	}
}
