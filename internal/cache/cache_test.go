package cache

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func open(t *testing.T) *Dir {
	t.Helper()
	d, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestLockExcludes(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.lock")
	unlock, err := Lock(context.Background(), p, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan time.Time)
	go func() {
		u, err := Lock(context.Background(), p, nil)
		if err != nil {
			t.Error(err)
		}
		got <- time.Now()
		u()
	}()
	time.Sleep(200 * time.Millisecond)
	released := time.Now()
	unlock()
	if at := <-got; at.Before(released) {
		t.Error("second Lock returned while the first was held")
	}
}

// Ctrl-C must interrupt a wait on another builder's lock.
func TestLockWaitEndsOnCancel(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.lock")
	unlock, err := Lock(context.Background(), p, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()

	ctx, cancel := context.WithCancel(context.Background())
	waiting := make(chan struct{})
	errc := make(chan error)
	go func() {
		_, err := Lock(ctx, p, func() { close(waiting) })
		errc <- err
	}()
	<-waiting // the second holder found the lock busy
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), p) {
			t.Errorf("err = %v, want context.Canceled naming the lock", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("lock wait did not end on cancellation")
	}

	// The same through an entry, with a deadline: the build never runs.
	d := open(t)
	if err := os.MkdirAll(filepath.Join(d.Root(), "k"), 0o755); err != nil {
		t.Fatal(err)
	}
	held, err := Lock(context.Background(), d.Path("k", "busy")+".lock", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer held()
	ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = d.Entry(ctx, "k", "busy", func(string) error {
		t.Error("build ran without the lock")
		return nil
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Entry err = %v, want context.DeadlineExceeded", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("Entry returned %s after its deadline", took)
	}
	if _, ok := d.Lookup("k", "busy"); ok {
		t.Error("a cancelled wait left an entry")
	}
}

func TestEntryMissHitAndRecheckAfterWait(t *testing.T) {
	d := open(t)
	ctx := context.Background()
	var builds atomic.Int32
	build := func(tmp string) error {
		builds.Add(1)
		return os.WriteFile(filepath.Join(tmp, "out"), []byte("result"), 0o644)
	}

	e, err := d.Entry(ctx, "stages/x", "k1", build)
	if err != nil {
		t.Fatal(err)
	}
	if e.Hit || e.Path != filepath.Join(d.Root(), "stages", "x", "k1") || builds.Load() != 1 {
		t.Fatalf("miss: %+v after %d builds", e, builds.Load())
	}
	if b, err := os.ReadFile(filepath.Join(e.Path, "out")); err != nil || string(b) != "result" {
		t.Fatalf("entry content %q, %v", b, err)
	}
	e2, err := d.Entry(ctx, "stages/x", "k1", build)
	if err != nil || !e2.Hit || e2.Path != e.Path || builds.Load() != 1 {
		t.Fatalf("hit: %+v, %v after %d builds", e2, err, builds.Load())
	}

	// A second builder of a key that is being built waits, then finds the
	// first one's entry and does not build.
	started, finish := make(chan struct{}), make(chan struct{})
	first := make(chan error)
	go func() {
		_, err := d.Entry(ctx, "stages/x", "k2", func(tmp string) error {
			close(started)
			<-finish
			return build(tmp)
		})
		first <- err
	}()
	<-started
	var waited atomic.Bool
	wd := d.WithWaiting(func(kind, key string) {
		if kind == "stages/x" && key == "k2" {
			waited.Store(true)
		}
		close(finish)
	})
	e3, err := wd.Entry(ctx, "stages/x", "k2", func(string) error {
		t.Error("second builder built a key the first one had built")
		return nil
	})
	if err != nil || !e3.Hit || !waited.Load() {
		t.Errorf("second builder: %+v, %v, waited=%v; want a hit after a wait", e3, err, waited.Load())
	}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if n := builds.Load(); n != 2 {
		t.Errorf("%d builds, want 2 (k1 and k2 once each)", n)
	}
	assertOnly(t, filepath.Join(d.Root(), "stages", "x"), "k1", "k1.lock", "k2", "k2.lock")
}

func TestFailedBuildLeavesNoEntry(t *testing.T) {
	d := open(t)
	ctx := context.Background()
	boom := errors.New("compiler on fire")
	var tmp string
	_, err := d.Entry(ctx, "kernel", "k", func(dir string) error {
		tmp = dir
		os.WriteFile(filepath.Join(dir, "half"), []byte("x"), 0o644)
		return boom
	})
	if !errors.Is(err, boom) || err.Error() != boom.Error() {
		t.Fatalf("err = %v, want the build's error as it is", err)
	}
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("failed build left its temporary %s", tmp)
	}
	if _, ok := d.Lookup("kernel", "k"); ok {
		t.Error("failed build left an entry")
	}
	// The lock file stays: removing it would let a third builder lock a new inode.
	assertOnly(t, filepath.Join(d.Root(), "kernel"), "k.lock")

	// A crashed build's temporary is removed by the next builder of the key,
	// and the key builds normally.
	crashed := filepath.Join(d.Root(), "kernel", ".k.tmp-12345")
	if err := os.MkdirAll(filepath.Join(crashed, "obj"), 0o755); err != nil {
		t.Fatal(err)
	}
	e, err := d.Entry(ctx, "kernel", "k", func(string) error { return nil })
	if err != nil || e.Hit {
		t.Fatalf("rebuild: %+v, %v", e, err)
	}
	assertOnly(t, filepath.Join(d.Root(), "kernel"), "k", "k.lock")
}

func TestClaimFile(t *testing.T) {
	d := open(t)
	ctx := context.Background()
	e, c, err := d.ClaimFile(ctx, "debs", "abc.deb")
	if err != nil || e.Hit || c == nil {
		t.Fatalf("ClaimFile: %+v %v %v", e, c, err)
	}
	if filepath.Base(c.Temp()) != "abc.deb" || c.Path() != filepath.Join(d.Root(), "debs", "abc.deb") {
		t.Errorf("Temp %s Path %s", c.Temp(), c.Path())
	}
	if err := os.WriteFile(c.Temp(), []byte("deb"), 0o644); err != nil {
		t.Fatal(err)
	}
	if e, err = c.Commit(); err != nil || e.Path != c.Path() {
		t.Fatalf("Commit: %+v %v", e, err)
	}
	c.Release() // deferred in real use: harmless after Commit
	if b, err := os.ReadFile(e.Path); err != nil || string(b) != "deb" {
		t.Errorf("entry %q, %v", b, err)
	}
	assertOnly(t, filepath.Join(d.Root(), "debs"), "abc.deb", "abc.deb.lock")
	if e, c, err := d.ClaimFile(ctx, "debs", "abc.deb"); err != nil || !e.Hit || c != nil {
		t.Errorf("second ClaimFile: %+v %v %v, want a hit", e, c, err)
	}

	// A released claim leaves nothing but the lock, and the entry can be claimed again.
	_, c, err = d.ClaimFile(ctx, "debs", "def.deb")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(c.Temp(), []byte("bad"), 0o644)
	c.Release()
	if _, err := c.Commit(); err == nil {
		t.Error("Commit after Release succeeded")
	}
	assertOnly(t, filepath.Join(d.Root(), "debs"), "abc.deb", "abc.deb.lock", "def.deb.lock")
	if _, c, err = d.ClaimFile(ctx, "debs", "def.deb"); err != nil || c == nil {
		t.Fatalf("claim after release: %v %v", c, err)
	}
	c.Release()
}

func TestNamesStayInsideTheRoot(t *testing.T) {
	d := open(t)
	for _, n := range []struct{ kind, key string }{
		{"stages", "../x"}, {"stages", ".hidden"}, {"stages", "a/b"}, {"stages", "a*"}, {"stages", ""},
		{"../x", "k"}, {"/abs", "k"}, {"stages//x", "k"}, {"", "k"},
	} {
		if _, err := d.Entry(context.Background(), n.kind, n.key, func(string) error { return nil }); err == nil {
			t.Errorf("Entry(%q, %q) accepted", n.kind, n.key)
		}
	}
}

// assertOnly checks that dir holds exactly the named entries.
func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if strings.Join(got, " ") != strings.Join(names, " ") {
		t.Errorf("%s holds %v, want %v", dir, got, names)
	}
}
