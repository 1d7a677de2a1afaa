package cache

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// fill makes an entry of kind/key holding n bytes and dates its last use.
func fill(t *testing.T, d *Dir, kind, key string, n int, used time.Time) string {
	t.Helper()
	e, err := d.Entry(context.Background(), kind, key, func(tmp string) error {
		return os.WriteFile(filepath.Join(tmp, "blob"), make([]byte, n), 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(e.Path+".lock", used, used); err != nil {
		t.Fatal(err)
	}
	return e.Path
}

func TestPruneOldestFirst(t *testing.T) {
	d, _ := Open(t.TempDir())
	now := time.Now()
	oldest := fill(t, d, "stages/usb", "k1", 1<<20, now.Add(-3*time.Hour))
	middle := fill(t, d, "stages/spi", "k2", 1<<20, now.Add(-2*time.Hour))
	newest := fill(t, d, "kernel", "k3", 1<<20, now.Add(-1*time.Hour))

	us, err := d.Usage(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(us) != 3 || us[0].Path != oldest || us[2].Path != newest || us[0].Kind != "stages/usb" || us[0].Key != "k1" {
		t.Fatalf("usage = %+v", us)
	}
	if us[0].Bytes < 1<<20 {
		t.Errorf("entry of 1 MiB counted as %d bytes", us[0].Bytes)
	}

	// Room for about two entries: only the least recently used goes.
	res, err := d.Prune(context.Background(), PruneOptions{MaxBytes: us[1].Bytes + us[2].Bytes + 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Removed) != 1 || res.Removed[0].Path != oldest || res.Kept {
		t.Fatalf("removed %+v (kept %v), want only %s", res.Removed, res.Kept, oldest)
	}
	if exists(oldest) || !exists(middle) || !exists(newest) {
		t.Errorf("after prune: oldest %v middle %v newest %v, want false true true", exists(oldest), exists(middle), exists(newest))
	}
	if res.After != res.Before-res.Removed[0].Bytes {
		t.Errorf("before %d after %d removed %d", res.Before, res.After, res.Removed[0].Bytes)
	}
	// The removed key is built again on the next claim, not found half gone.
	e, err := d.Entry(context.Background(), "stages/usb", "k1", func(tmp string) error {
		return os.WriteFile(filepath.Join(tmp, "blob"), []byte("again"), 0o644)
	})
	if err != nil || e.Hit {
		t.Fatalf("claim after prune: hit=%v err=%v, want a fresh build", e.Hit, err)
	}
}

func TestPruneKeepsRecentAndBusy(t *testing.T) {
	d, _ := Open(t.TempDir())
	now := time.Now()
	busy := fill(t, d, "stages/usb", "busy", 4096, now.Add(-5*time.Hour))
	old := fill(t, d, "stages/usb", "old", 4096, now.Add(-4*time.Hour))
	recent := fill(t, d, "stages/usb", "recent", 4096, now.Add(-time.Minute))

	// A builder holds busy's lock: prune passes over it.
	unlock, err := Lock(context.Background(), busy+".lock", nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := d.Prune(context.Background(), PruneOptions{MaxBytes: 0, MinAge: time.Hour})
	unlock()
	if err != nil {
		t.Fatal(err)
	}
	if !exists(busy) || exists(old) || !exists(recent) {
		t.Errorf("busy %v old %v recent %v, want true false true", exists(busy), exists(old), exists(recent))
	}
	if !res.Kept || len(res.Removed) != 1 {
		t.Errorf("result %+v: want one removed and Kept set", res)
	}

	// A dry run removes nothing and says what would go.
	res, err = d.Prune(context.Background(), PruneOptions{MaxBytes: 0, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Removed) != 2 || !exists(busy) || !exists(recent) {
		t.Errorf("dry run: %+v; busy %v recent %v", res.Removed, exists(busy), exists(recent))
	}
}

// A hit is a use: it moves the entry to the back of the queue.
func TestHitRecordsUse(t *testing.T) {
	d, _ := Open(t.TempDir())
	long := time.Now().Add(-24 * time.Hour)
	p := fill(t, d, "stages/usb", "k", 10, long)
	e, err := d.Entry(context.Background(), "stages/usb", "k", func(string) error { t.Fatal("rebuilt a hit"); return nil })
	if err != nil || !e.Hit {
		t.Fatalf("hit=%v err=%v", e.Hit, err)
	}
	info, err := os.Stat(p + ".lock")
	if err != nil {
		t.Fatal(err)
	}
	if !info.ModTime().After(long.Add(time.Hour)) {
		t.Errorf("last use after a hit is %v, want now", info.ModTime())
	}
	if _, ok := d.Lookup("stages/usb", "k"); !ok {
		t.Fatal("lookup missed")
	}
}

// Entries fetched in one batch have no lock of their own, and a beside
// manifest goes with its entry.
func TestPruneLocklessAndBeside(t *testing.T) {
	d, _ := Open(t.TempDir())
	old := time.Now().Add(-48 * time.Hour)
	fill(t, d, "debs", "locked.deb", 10, time.Now())
	batch := filepath.Join(d.Root(), "debs", "batch.deb")
	if err := os.WriteFile(batch, make([]byte, 8192), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(batch, old, old)
	src, err := d.WithManifestBeside().Entry(context.Background(), "src", "tree", func(tmp string) error {
		return os.WriteFile(filepath.Join(tmp, "Makefile"), make([]byte, 8192), 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	os.Chtimes(src.Path+".lock", old.Add(time.Hour), old.Add(time.Hour))
	res, err := d.Prune(context.Background(), PruneOptions{MaxBytes: 100, MinAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Removed) != 2 || res.Removed[0].Path != batch || res.Removed[1].Path != src.Path {
		t.Fatalf("removed %+v, want the batch package then the source tree", res.Removed)
	}
	if exists(batch) || exists(src.Path) || exists(src.Path+ManifestName) {
		t.Errorf("left: batch %v tree %v manifest %v", exists(batch), exists(src.Path), exists(src.Path+ManifestName))
	}
}
