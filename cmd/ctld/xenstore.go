package main

// A small client of xenstored's wire protocol (Xen's io/xs_wire.h) over
// its Unix socket. ctld used to ask `xl list` for a guest's domain id and
// poll `xl list` every 2 s while guests boot; each xl run costs dom0
// 0.5-1 s under TCG (the dynamic loader maps libxl and its libraries into
// a PV process), which is time a guest's boot waits for and CPU its
// backends do not get. A domain id is two xenstore reads away, and
// xenstored tells watchers when a domain stops (@releaseDomain).

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// Message types of xsd_sockmsg (io/xs_wire.h).
const (
	xsDirectory  = 1
	xsRead       = 2
	xsWatch      = 4
	xsWatchEvent = 15
	xsError      = 16
)

// xsMaxPayload is XENSTORE_PAYLOAD_MAX: no valid message is larger.
const xsMaxPayload = 4096

// store is what ctld reads from xenstore.
type store interface {
	// Directory lists a node's children.
	Directory(ctx context.Context, path string) ([]string, error)
	// Read returns a node's value.
	Read(ctx context.Context, path string) (string, error)
	// Watch reports on the channel each time path (or a special path
	// such as @releaseDomain) fires, starting with the event xenstored
	// sends when the watch is set, until ctx ends or the connection
	// fails; then the channel is closed. Events that arrive while one is
	// pending are one event.
	Watch(ctx context.Context, path string) (<-chan struct{}, error)
}

// xsSocket is a store on xenstored's socket: a connection per call, so
// calls from the guest helper, the Redfish handlers and the console
// service need no shared state.
type xsSocket struct{ path string }

func (s xsSocket) dial(ctx context.Context) (*xsConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", s.path)
	if err != nil {
		return nil, fmt.Errorf("xenstore: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	return &xsConn{rw: c, close: c.Close}, nil
}

func (s xsSocket) Directory(ctx context.Context, path string) ([]string, error) {
	c, err := s.dial(ctx)
	if err != nil {
		return nil, err
	}
	defer c.close()
	return c.directory(path)
}

func (s xsSocket) Read(ctx context.Context, path string) (string, error) {
	c, err := s.dial(ctx)
	if err != nil {
		return "", err
	}
	defer c.close()
	return c.read(path)
}

func (s xsSocket) Watch(ctx context.Context, path string) (<-chan struct{}, error) {
	c, err := s.dial(ctx)
	if err != nil {
		return nil, err
	}
	return c.watch(ctx, path)
}

// xsConn is one connection, used by one goroutine: a request and its
// reply at a time, or (after watch) the watch's reader alone.
type xsConn struct {
	rw    io.ReadWriter
	close func() error
	reqID uint32
}

// xsErr is xenstored's answer to a failed request (an errno name such
// as ENOENT).
type xsErr struct{ path, errno string }

func (e *xsErr) Error() string { return fmt.Sprintf("xenstore %s: %s", e.path, e.errno) }

func (c *xsConn) send(typ uint32, payload []byte) error {
	if len(payload) > xsMaxPayload {
		return fmt.Errorf("xenstore: request of %d bytes (at most %d)", len(payload), xsMaxPayload)
	}
	c.reqID++
	msg := make([]byte, 16+len(payload))
	binary.LittleEndian.PutUint32(msg[0:], typ)
	binary.LittleEndian.PutUint32(msg[4:], c.reqID)
	binary.LittleEndian.PutUint32(msg[8:], 0) // no transaction
	binary.LittleEndian.PutUint32(msg[12:], uint32(len(payload)))
	copy(msg[16:], payload)
	_, err := c.rw.Write(msg)
	return err
}

// recv reads one message; a payload longer than the protocol allows is an
// error (a peer that is not xenstored), not an allocation.
func (c *xsConn) recv() (typ uint32, payload []byte, err error) {
	var h [16]byte
	if _, err := io.ReadFull(c.rw, h[:]); err != nil {
		return 0, nil, fmt.Errorf("xenstore: read reply: %w", err)
	}
	n := binary.LittleEndian.Uint32(h[12:])
	if n > xsMaxPayload {
		return 0, nil, fmt.Errorf("xenstore: reply of %d bytes (at most %d)", n, xsMaxPayload)
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(c.rw, payload); err != nil {
		return 0, nil, fmt.Errorf("xenstore: read reply: %w", err)
	}
	return binary.LittleEndian.Uint32(h[0:]), payload, nil
}

// call sends a request and returns its reply, skipping watch events that
// arrive first.
func (c *xsConn) call(typ uint32, path string, payload []byte) ([]byte, error) {
	if err := c.send(typ, payload); err != nil {
		return nil, fmt.Errorf("xenstore %s: %w", path, err)
	}
	for {
		t, p, err := c.recv()
		if err != nil {
			return nil, err
		}
		switch t {
		case xsWatchEvent:
			continue
		case xsError:
			return nil, &xsErr{path: path, errno: string(bytes.TrimRight(p, "\x00"))}
		case typ:
			return p, nil
		default:
			return nil, fmt.Errorf("xenstore %s: reply of type %d to a request of type %d", path, t, typ)
		}
	}
}

func (c *xsConn) directory(path string) ([]string, error) {
	p, err := c.call(xsDirectory, path, append([]byte(path), 0))
	if err != nil {
		return nil, err
	}
	var names []string
	for _, n := range bytes.Split(bytes.TrimRight(p, "\x00"), []byte{0}) {
		if len(n) > 0 {
			names = append(names, string(n))
		}
	}
	return names, nil
}

func (c *xsConn) read(path string) (string, error) {
	p, err := c.call(xsRead, path, append([]byte(path), 0))
	return string(p), err
}

// watch registers the watch on this connection and hands it to a reader
// that owns it from then on.
func (c *xsConn) watch(ctx context.Context, path string) (<-chan struct{}, error) {
	const token = "ctld"
	if _, err := c.call(xsWatch, path, []byte(path+"\x00"+token+"\x00")); err != nil {
		c.close()
		return nil, err
	}
	ch := make(chan struct{}, 1)
	fire := func() {
		select {
		case ch <- struct{}{}:
		default: // one pending event stands for any number
		}
	}
	go func() {
		<-ctx.Done()
		c.close()
	}()
	go func() {
		defer close(ch)
		for {
			t, _, err := c.recv()
			if err != nil {
				return
			}
			if t == xsWatchEvent {
				fire()
			}
		}
	}()
	return ch, nil
}

// domainID finds the id of the domain named name from xenstore (libxl
// writes /local/domain/<id>/name before xl create returns).
func domainID(ctx context.Context, s store, name string) (int, error) {
	ids, err := s.Directory(ctx, "/local/domain")
	if err != nil {
		return 0, err
	}
	for _, d := range ids {
		id, err := strconv.Atoi(d)
		if err != nil || id == 0 {
			continue
		}
		n, err := s.Read(ctx, "/local/domain/"+d+"/name")
		var xe *xsErr
		if errors.As(err, &xe) && xe.errno == "ENOENT" {
			continue // a domain being built or torn down
		}
		if err != nil {
			return 0, err
		}
		if strings.TrimRight(n, "\x00") == name {
			return id, nil
		}
	}
	return 0, fmt.Errorf("%w named %s in xenstore", errNoDomain, name)
}

// errNoDomain: xenstore lists no such domain.
var errNoDomain = errors.New("no domain")

// xenstoreTimeout bounds one xenstore lookup: xenstored answers in
// milliseconds, and a caller that gets no answer falls back to xl.
const xenstoreTimeout = 5 * time.Second
