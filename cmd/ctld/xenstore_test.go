package main

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeXenstored speaks xenstored's wire protocol on a Unix socket: reads
// and directories from nodes (a node's children are the keys below it),
// ENOENT for the rest, and watches that fire when the test calls fire.
type fakeXenstored struct {
	t     *testing.T
	path  string
	nodes map[string]string
	mu    sync.Mutex
	subs  []func()
	// huge, if set, answers every request with a header claiming this
	// many payload bytes.
	huge uint32
}

func startFakeXenstored(t *testing.T, nodes map[string]string) *fakeXenstored {
	t.Helper()
	f := &fakeXenstored{t: t, path: filepath.Join(t.TempDir(), "socket"), nodes: nodes}
	ln, err := net.Listen("unix", f.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go f.serve(c)
		}
	}()
	return f
}

func (f *fakeXenstored) fire() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.subs {
		s()
	}
}

func (f *fakeXenstored) serve(c net.Conn) {
	defer c.Close()
	var wmu sync.Mutex
	write := func(typ, id uint32, p []byte) {
		wmu.Lock()
		defer wmu.Unlock()
		h := make([]byte, 16)
		binary.LittleEndian.PutUint32(h[0:], typ)
		binary.LittleEndian.PutUint32(h[4:], id)
		binary.LittleEndian.PutUint32(h[12:], uint32(len(p)))
		if f.huge != 0 {
			binary.LittleEndian.PutUint32(h[12:], f.huge)
		}
		c.Write(append(h, p...))
	}
	for {
		var h [16]byte
		if _, err := io.ReadFull(c, h[:]); err != nil {
			return
		}
		typ, id := binary.LittleEndian.Uint32(h[0:]), binary.LittleEndian.Uint32(h[4:])
		p := make([]byte, binary.LittleEndian.Uint32(h[12:]))
		if _, err := io.ReadFull(c, p); err != nil {
			return
		}
		args := strings.Split(strings.TrimRight(string(p), "\x00"), "\x00")
		switch typ {
		case xsRead:
			v, ok := f.nodes[args[0]]
			if !ok {
				write(xsError, id, []byte("ENOENT\x00"))
				continue
			}
			write(xsRead, id, []byte(v))
		case xsDirectory:
			var kids []byte
			seen := map[string]bool{}
			prefix := strings.TrimSuffix(args[0], "/") + "/" // the root is "/"
			for k := range f.nodes {
				rest, ok := strings.CutPrefix(k, prefix)
				if !ok {
					continue
				}
				kid, _, _ := strings.Cut(rest, "/")
				if !seen[kid] {
					seen[kid] = true
					kids = append(append(kids, kid...), 0)
				}
			}
			if len(kids) == 0 {
				write(xsError, id, []byte("ENOENT\x00"))
				continue
			}
			write(xsDirectory, id, kids)
		case xsWatch:
			write(xsWatch, id, []byte("OK\x00"))
			// A watch fires once when it is set, as xenstored's do.
			ev := []byte(args[0] + "\x00" + args[1] + "\x00")
			write(xsWatchEvent, 0, ev)
			f.mu.Lock()
			f.subs = append(f.subs, func() { write(xsWatchEvent, 0, ev) })
			f.mu.Unlock()
		default:
			write(xsError, id, []byte("EINVAL\x00"))
		}
	}
}

func TestDomainIDFromXenstore(t *testing.T) {
	f := startFakeXenstored(t, map[string]string{
		"/local/domain/0/name":      "Domain-0",
		"/local/domain/3/name":      "web",
		"/local/domain/7/memory":    "1024", // being built: no name yet
		"/local/domain/9/name":      "db",
		"/local/domain/9/device/x":  "",
		"/local/domain/junk/name":   "web",
		"/local/domain/12/name":     "webby",
		"/local/domain/12/console/": "",
	})
	s := xsSocket{path: f.path}
	ctx := context.Background()
	for name, want := range map[string]int{"web": 3, "db": 9, "webby": 12} {
		if id, err := domainID(ctx, s, name); err != nil || id != want {
			t.Errorf("domainID(%s) = %d, %v; want %d", name, id, err, want)
		}
	}
	if _, err := domainID(ctx, s, "Domain-0"); !errors.Is(err, errNoDomain) {
		t.Errorf("dom0 by name: %v, want errNoDomain (guests only)", err)
	}
	if _, err := domainID(ctx, s, "mail"); !errors.Is(err, errNoDomain) || !strings.Contains(err.Error(), "mail") {
		t.Errorf("an unknown name: %v, want errNoDomain naming it", err)
	}
	if _, err := s.Read(ctx, "/local/domain/3/nothing"); err == nil || !strings.Contains(err.Error(), "ENOENT") || !strings.Contains(err.Error(), "/local/domain/3/nothing") {
		t.Errorf("a missing node: %v, want xenstored's ENOENT with the path", err)
	}
}

// A peer that claims a payload beyond XENSTORE_PAYLOAD_MAX is refused
// before anything is allocated for it; a dead socket is an error the
// caller can fall back from.
func TestXenstoreBadPeer(t *testing.T) {
	f := startFakeXenstored(t, map[string]string{"/a": "b"})
	f.huge = 1 << 30
	if _, err := (xsSocket{path: f.path}).Read(context.Background(), "/a"); err == nil || !strings.Contains(err.Error(), "at most 4096") {
		t.Errorf("a 1 GiB reply: %v", err)
	}
	if _, err := (xsSocket{path: filepath.Join(t.TempDir(), "none")}).Directory(context.Background(), "/"); err == nil {
		t.Error("no xenstored: no error")
	}
}

func TestXenstoreWatch(t *testing.T) {
	f := startFakeXenstored(t, map[string]string{})
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := (xsSocket{path: f.path}).Watch(ctx, "@releaseDomain")
	if err != nil {
		t.Fatal(err)
	}
	recv := func(what string) {
		t.Helper()
		select {
		case _, ok := <-ch:
			if !ok {
				t.Fatalf("%s: channel closed", what)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no event", what)
		}
	}
	recv("registration")
	f.fire()
	recv("a domain released")
	cancel()
	select {
	case _, ok := <-ch:
		for ok {
			_, ok = <-ch
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the channel stays open after the context ended")
	}
}

// With xenstore, the guest helper finds a domain id without running xl,
// and a stopped guest is reported when xenstored says a domain went, not
// at the next poll.
func TestGuestIDAndWatchUseXenstore(t *testing.T) {
	a, r, _, out := withGuests(t, nil)
	f := startFakeXenstored(t, map[string]string{"/local/domain/0/name": "Domain-0", "/local/domain/5/name": "web"})
	a.xs = xsSocket{path: f.path}
	if id, err := a.guestID(context.Background(), "web"); err != nil || id != 5 {
		t.Fatalf("guestID = %d, %v; want 5", id, err)
	}
	for _, c := range r.calls {
		if strings.Contains(c, " list") {
			t.Errorf("guestID ran %q", c)
		}
	}
	a.cfg.GuestPoll = time.Hour // only an event can end the watch in time
	a.cfg.GuestWatch = 20 * time.Second
	r.lists = []string{xlListDom0 + "web 5 128 1 -b---- 0.2\n", xlListDom0}
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		a.watch(context.Background(), []string{"web"}, func(string) {})
	}()
	// The registration's event lists web running; the next one, gone.
	for deadline := time.Now().Add(5 * time.Second); r.listCount() < 1 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	f.fire()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("watch did not end after the release event")
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("watch took %v", el)
	}
	if want := "fwbuild-ctld: guest web stopped: gone\n"; !strings.Contains(out.String(), want) {
		t.Errorf("output %q, want %q", out.String(), want)
	}
}
