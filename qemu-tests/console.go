package qemutests

import (
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// console is the run's side of QEMU's I/O: the pipe QEMU writes everything
// to, the pipe to its standard input when markers type (Marker.Then), and
// the log that receives the output raw.
type console struct {
	log        *os.File
	sink       io.Writer // log, plus Options.Console if set
	outR, outW *os.File
	// keysR stays open in this process until the run ends, so typing
	// into a QEMU that has gone never fails (it shows up as a missing
	// marker instead).
	keysR, keysW *os.File
	// keys feeds the typist (see typeKeys); done stops it.
	keys chan string
	done chan struct{}
}

// openConsole creates the log (logPath, or a new temp file when empty) and
// the pipes; echo, if set, also receives the raw output.
func openConsole(logPath string, echo io.Writer, typing bool) (*console, error) {
	c := &console{}
	var err error
	if logPath != "" {
		c.log, err = os.Create(logPath)
	} else {
		c.log, err = os.CreateTemp("", "fwbuild-qemu-*.log")
	}
	if err != nil {
		return nil, fmt.Errorf("console log: %w", err)
	}
	c.sink = c.log
	if echo != nil {
		c.sink = io.MultiWriter(c.log, echo)
	}
	if c.outR, c.outW, err = os.Pipe(); err != nil {
		c.close()
		return nil, err
	}
	if typing {
		if c.keysR, c.keysW, err = os.Pipe(); err != nil {
			c.close()
			return nil, err
		}
		c.keys, c.done = make(chan string, 64), make(chan struct{})
		go c.typist()
	}
	return c, nil
}

// started drops this process's copy of the output pipe's write end once
// QEMU holds it: QEMU's exit then ends the reads.
func (c *console) started() { c.outW.Close() }

// close releases whatever openConsole opened; closing twice is harmless.
func (c *console) close() {
	if c.done != nil {
		select {
		case <-c.done:
		default:
			close(c.done)
		}
	}
	for _, f := range []*os.File{c.outR, c.outW, c.keysR, c.keysW, c.log} {
		if f != nil {
			f.Close()
		}
	}
}

func (c *console) logPath() string { return c.log.Name() }

// record appends raw output to the log (and the echo).
func (c *console) record(b []byte) error {
	_, err := c.sink.Write(b)
	return err
}

// syncLog makes the log complete on disk before a failure points at it.
func (c *console) syncLog() { c.log.Sync() }

// typeKeys has s typed on QEMU's standard input, after what was typed
// before, without waiting. Errors are not worth reporting: a QEMU that has
// gone shows up as a missing marker.
func (c *console) typeKeys(s string) {
	if c.keys == nil {
		return
	}
	select {
	case c.keys <- s:
	case <-c.done:
	}
}

// typeChunk and typePause pace typing: Xen's console keeps only 128 bytes
// of serial input for dom0, and a dom0 busy under TCG reads them late, so
// a long command written at once lost characters on a loaded machine.
const (
	typeChunk = 16
	typePause = 15 * time.Millisecond
)

// typist writes what typeKeys queued, typeChunk bytes at a time.
func (c *console) typist() {
	for {
		select {
		case <-c.done:
			return
		case s := <-c.keys:
			for len(s) > 0 {
				n := min(typeChunk, len(s))
				if _, err := io.WriteString(c.keysW, s[:n]); err != nil {
					return
				}
				s = s[n:]
				select {
				case <-c.done:
					return
				case <-time.After(typePause):
				}
			}
		}
	}
}

// chunk is output read from QEMU, stamped when it was read.
type chunk struct {
	b  []byte
	at time.Duration
}

// outputReader reads QEMU's output sources (its output pipe and, for
// SerialSocket, the serial socket) concurrently into one channel of chunks.
type outputReader struct {
	start  time.Time
	chunks chan chunk
	stop   chan struct{} // closed when nobody reads chunks any more
	done   chan struct{} // closed when every reader has returned
	wg     sync.WaitGroup
	// Closing a source is what unblocks its reader; a source that
	// appears after closeSources (the socket, dialled late) is closed
	// at once.
	mu      sync.Mutex
	sources []io.Closer
	closed  bool
}

// readOutput starts reading out and, if socket is not empty, the serial
// socket QEMU serves there (dialled until QEMU has created it, or exited).
// Chunks are stamped with the time since start.
func readOutput(start time.Time, out io.ReadCloser, socket string, exited <-chan struct{}) *outputReader {
	r := &outputReader{start: start, chunks: make(chan chunk, 64), stop: make(chan struct{}), done: make(chan struct{})}
	r.addSource(out)
	r.wg.Add(1)
	go r.read(out)
	if socket != "" {
		r.wg.Add(1)
		go func() {
			conn := dialSerial(socket, exited, r.stop)
			if conn == nil {
				r.wg.Done()
				return
			}
			r.addSource(conn)
			r.read(conn)
		}()
	}
	go func() {
		r.wg.Wait()
		close(r.done)
	}()
	return r
}

func (r *outputReader) addSource(c io.Closer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		c.Close()
	}
	r.sources = append(r.sources, c)
}

// closeSources unblocks every reader.
func (r *outputReader) closeSources() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	for _, c := range r.sources {
		c.Close()
	}
}

// closeAfter closes the sources if the readers have not finished within d:
// a descendant of QEMU holding the pipe open must not keep the run waiting
// for ever.
func (r *outputReader) closeAfter(d time.Duration) {
	go func() {
		select {
		case <-r.done:
		case <-time.After(d):
			r.closeSources()
		}
	}()
}

// shutdown stops the readers and waits for them.
func (r *outputReader) shutdown() {
	close(r.stop)
	r.closeSources()
	<-r.done
}

func (r *outputReader) read(src io.Reader) {
	defer r.wg.Done()
	// The emulated UART often hands over a byte or two per read: copy out
	// what arrived rather than give away the buffer.
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			select {
			case r.chunks <- chunk{append([]byte(nil), buf[:n]...), time.Since(r.start)}:
			case <-r.stop:
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// dialSerial connects to QEMU's serial socket, retrying until QEMU has
// created it; nil if QEMU exits or the run stops first.
func dialSerial(path string, exited, stop <-chan struct{}) net.Conn {
	for {
		conn, err := net.Dial("unix", path)
		if err == nil {
			return conn
		}
		select {
		case <-exited:
			return nil
		case <-stop:
			return nil
		case <-time.After(20 * time.Millisecond):
		}
	}
}
