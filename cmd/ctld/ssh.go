package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"path"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/term"

	"github.com/fwbuild/fwbuild/contract"
)

// The console service: SSH on the management address (port 22, what
// Redfish's Manager advertises as SerialConsole.SSH), password
// authentication against the unit's accounts with the lockout every
// management service shares (accounts.go). A session is a small command
// line, not a shell of the control domain:
//
//	guests           the guests table (as `ctld guests` on the serial console)
//	log <guest>      the guest's console log (its last 256 KiB)
//	console <guest>  attach to the guest's console (console_linux.go); Ctrl-]
//	                 or ~. detaches
//	exit
//
// `ssh -t admin@host console debian` runs one command and ends.

// sshHostKeyFile is the console's host key, made at first boot on the data
// disk (never in an image: every unit has its own, and it survives
// reboots, so clients can pin it).
const sshHostKeyFile = "ssh_host_ed25519_key"

// hostKey loads the SSH host key from dir, or makes one there. created
// says it was made now.
func (a *agent) hostKey(dir string) (signer ssh.Signer, created bool, err error) {
	p := path.Join(dir, sshHostKeyFile)
	if b, err := a.sys.readFile(p); err == nil {
		s, err := ssh.ParsePrivateKey(b)
		if err != nil {
			return nil, false, fmt.Errorf("ssh host key %s: %w (remove it to make a new one; clients will see a changed host key)", p, err)
		}
		return s, false, nil
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, false, fmt.Errorf("ssh host key: %w", err)
	}
	blk, err := ssh.MarshalPrivateKey(priv, "fwbuild ctld")
	if err != nil {
		return nil, false, fmt.Errorf("ssh host key: %w", err)
	}
	if err := a.sys.mkdirAll(dir); err != nil {
		return nil, false, err
	}
	if err := a.sys.writeFile(p, pem.EncodeToMemory(blk), 0o600); err != nil {
		return nil, false, fmt.Errorf("ssh host key: %w", err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	return s, true, err
}

func memoryHostKey() (ssh.Signer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ssh host key: %w", err)
	}
	return ssh.NewSignerFromKey(priv)
}

// sshConsole is the SSH console service.
type sshConsole struct {
	a      *agent
	acc    *accounts
	attach consoleAttacher
	cfg    *ssh.ServerConfig
	// serial is the unit's, for the prompt.
	serial string
}

func newSSHConsole(a *agent, acc *accounts, at consoleAttacher, key ssh.Signer, serial string) *sshConsole {
	s := &sshConsole{a: a, acc: acc, attach: at, serial: serial}
	s.cfg = &ssh.ServerConfig{
		// Password only: the unit's record holds password hashes; there
		// is no "none" or keyboard-interactive fallback.
		PasswordCallback: func(c ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
			acc, err := s.acc.authenticate(c.User(), string(pw))
			if err != nil {
				return nil, err
			}
			return &ssh.Permissions{Extensions: map[string]string{"role": acc.Role}}, nil
		},
		MaxAuthTries:  3,
		ServerVersion: "SSH-2.0-fwbuild-ctld",
	}
	s.cfg.AddHostKey(key)
	return s
}

// sshHostKeyDir is where the host key lives on the data disk.
const sshHostKeyDir = contract.DataMount + "/ssh"

// startConsoleService listens on addr (the management address with port
// 22) and serves the SSH console until ctx ends, authenticating against acc
// (the accounts object the Redfish service uses too, so one lockout covers
// both). The host key is kept in keyDir (sshHostKeyDir when the data disk
// is there); keyDir "" makes one in memory, which clients see change at
// the next boot. at nil means the guests' real consoles. It prints
// contract.ConsoleListening with the key's fingerprint.
func (a *agent) startConsoleService(ctx context.Context, acc *accounts, at consoleAttacher, addr, keyDir, serial string) error {
	var key ssh.Signer
	var err error
	if keyDir != "" {
		key, _, err = a.hostKey(keyDir)
	} else {
		key, err = memoryHostKey()
	}
	if err != nil {
		return err
	}
	if at == nil {
		at = guestConsoles{a: a}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("ssh console: %w", err)
	}
	a.say(contract.ConsoleListening{Addr: ln.Addr().String(), HostKey: ssh.FingerprintSHA256(key.PublicKey())})
	go newSSHConsole(a, acc, at, key, serial).serve(ctx, ln)
	return nil
}

// serve accepts connections until ctx ends or ln fails.
func (s *sshConsole) serve(ctx context.Context, ln net.Listener) error {
	go func() { <-ctx.Done(); ln.Close() }()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("ssh console: accept: %w", err)
		}
		go s.handle(ctx, c)
	}
}

func (s *sshConsole) handle(ctx context.Context, c net.Conn) {
	defer c.Close()
	// A client that never finishes its handshake does not hold a
	// connection forever.
	c.SetDeadline(time.Now().Add(30 * time.Second))
	conn, chans, reqs, err := ssh.NewServerConn(c, s.cfg)
	if err != nil {
		return
	}
	c.SetDeadline(time.Time{})
	defer conn.Close()
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "only session channels")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		go s.session(ctx, ch, creqs)
	}
}

// session answers a session's requests: a pty (accepted; the session is a
// line editor either way), then a shell or one command.
func (s *sshConsole) session(ctx context.Context, ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	in := newChanInput(ch)
	var w io.Writer = ch
	for req := range reqs {
		switch req.Type {
		case "pty-req":
			// The client's terminal is raw now: line ends need \r.
			w = crlf{ch}
			req.Reply(true, nil)
		case "env", "window-change":
			req.Reply(req.Type == "env", nil)
		case "shell":
			req.Reply(true, nil)
			go func() { discardRest(reqs) }()
			s.exit(ch, s.shell(ctx, in, ch))
			return
		case "exec":
			var p struct{ Command string }
			if err := ssh.Unmarshal(req.Payload, &p); err != nil {
				req.Reply(false, nil)
				continue
			}
			req.Reply(true, nil)
			go func() { discardRest(reqs) }()
			s.exit(ch, s.run(ctx, in, w, strings.Fields(p.Command)))
			return
		default:
			req.Reply(false, nil)
		}
	}
}

func discardRest(reqs <-chan *ssh.Request) {
	for r := range reqs {
		if r.WantReply {
			r.Reply(false, nil)
		}
	}
}

func (s *sshConsole) exit(ch ssh.Channel, status int) {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(status))
	ch.SendRequest("exit-status", false, b[:])
}

// shell reads commands until exit or end of input.
func (s *sshConsole) shell(ctx context.Context, in *chanInput, ch ssh.Channel) int {
	t := term.NewTerminal(struct {
		io.Reader
		io.Writer
	}{in, ch}, fmt.Sprintf("ctld %s> ", s.serial))
	fmt.Fprintf(t, "fwbuild control domain %s: guests | log <guest> | console <guest> | exit\n", s.serial)
	status := 0
	for {
		line, err := t.ReadLine()
		if err != nil {
			return status
		}
		args := strings.Fields(line)
		if len(args) == 1 && (args[0] == "exit" || args[0] == "logout") {
			return status
		}
		if len(args) == 0 {
			continue
		}
		status = s.run(ctx, in, crlf{ch}, args)
	}
}

// run carries out one command; its output goes to w, with \r\n line ends
// when the session is a terminal.
func (s *sshConsole) run(ctx context.Context, in *chanInput, w io.Writer, args []string) int {
	fail := func(format string, a ...any) int {
		fmt.Fprintf(w, format+"\n", a...)
		return 1
	}
	if len(args) == 0 {
		return fail("give a command: guests, log <guest>, console <guest>")
	}
	switch args[0] {
	case "guests":
		if err := s.a.guestTable(ctx, w); err != nil {
			return fail("guests: %v", err)
		}
		return 0
	case "log", "console":
		if len(args) != 2 || !contract.ValidGuestName(args[1]) {
			return fail("usage: %s <guest>", args[0])
		}
	default:
		return fail("unknown command %q: want guests, log <guest>, console <guest> or exit", args[0])
	}
	name := args[1]
	if args[0] == "log" {
		b, err := s.a.guestLog(name)
		if err != nil {
			return fail("log: %v", err)
		}
		w.Write(b)
		return 0
	}
	if err := s.console(ctx, in, w, name); err != nil {
		return fail("console %s: %v", name, err)
	}
	return 0
}

// console attaches the session to a running guest's console until the
// user detaches or the console ends.
func (s *sshConsole) console(ctx context.Context, in *chanInput, w io.Writer, name string) error {
	if _, err := s.a.guestID(ctx, name); err != nil {
		return fmt.Errorf("not running (%v)", err)
	}
	c, err := s.attach.attach(ctx, name)
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Fprintf(w, "[attached to guest %s's console: Ctrl-] or ~. detaches]\n", name)
	done := make(chan struct{})
	go func() {
		io.Copy(rawWriter(w), c)
		close(done)
	}()
	f := newEscapeFilter()
	// Keystrokes typed ahead of the command, already read by the shell's
	// line editor, go first.
	pending := in.takeRest()
	for {
		b := pending
		pending = nil
		if b == nil {
			var ok bool
			select {
			case <-done:
				fmt.Fprintf(w, "\n[guest %s's console closed]\n", name)
				return nil
			case b, ok = <-in.data:
				if !ok {
					return nil // the client went away
				}
			}
		}
		out, detach := f.filter(b)
		if len(out) > 0 {
			if _, err := c.Write(out); err != nil {
				return fmt.Errorf("write to the console: %w", err)
			}
		}
		if detach {
			c.Close()
			<-done
			fmt.Fprintf(w, "\n[detached from guest %s]\n", name)
			return nil
		}
	}
}

// chanInput reads a session's input in one goroutine for the whole
// session, so the shell's line editor and an attached console take turns
// without either leaving a read blocked on the channel.
type chanInput struct {
	data chan []byte
	mu   sync.Mutex
	rest []byte
}

func newChanInput(r io.Reader) *chanInput {
	in := &chanInput{data: make(chan []byte)}
	go func() {
		defer close(in.data)
		for {
			b := make([]byte, 1024)
			n, err := r.Read(b)
			if n > 0 {
				in.data <- b[:n]
			}
			if err != nil {
				return
			}
		}
	}()
	return in
}

// takeRest returns what Read has received but not yet returned.
func (in *chanInput) takeRest() []byte {
	in.mu.Lock()
	defer in.mu.Unlock()
	r := in.rest
	in.rest = nil
	if len(r) == 0 {
		return nil
	}
	return r
}

func (in *chanInput) Read(p []byte) (int, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if len(in.rest) == 0 {
		b, ok := <-in.data
		if !ok {
			return 0, io.EOF
		}
		in.rest = b
	}
	n := copy(p, in.rest)
	in.rest = in.rest[n:]
	return n, nil
}

// crlf turns \n into \r\n for a terminal in raw mode.
type crlf struct{ w io.Writer }

func (c crlf) Write(p []byte) (int, error) {
	if _, err := c.w.Write([]byte(strings.ReplaceAll(string(p), "\n", "\r\n"))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// rawWriter undoes crlf for a guest's own console output, which already
// has the guest's line ends.
func rawWriter(w io.Writer) io.Writer {
	if c, ok := w.(crlf); ok {
		return c.w
	}
	return w
}
