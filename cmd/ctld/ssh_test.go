package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/fwbuild/fwbuild/contract/unit"
)

// fakeConsole stands in for a guest's console: it greets, then answers
// each chunk of input with "echo:<chunk>".
type fakeConsole struct {
	mu       sync.Mutex
	attached []string
	closed   int
}

func (f *fakeConsole) attach(_ context.Context, name string) (io.ReadWriteCloser, error) {
	f.mu.Lock()
	f.attached = append(f.attached, name)
	f.mu.Unlock()
	outR, outW := io.Pipe()
	inR, inW := io.Pipe()
	go func() {
		fmt.Fprint(outW, "demo login: \r\n")
		b := make([]byte, 256)
		for {
			n, err := inR.Read(b)
			if err != nil {
				outW.Close()
				return
			}
			fmt.Fprintf(outW, "echo:%s\r\n", strings.TrimRight(string(b[:n]), "\r\n"))
		}
	}()
	return &fakeConn{r: outR, w: inW, close: func() {
		f.mu.Lock()
		f.closed++
		f.mu.Unlock()
		inW.Close()
		outR.Close()
	}}, nil
}

type fakeConn struct {
	r     io.Reader
	w     io.Writer
	once  sync.Once
	close func()
}

func (c *fakeConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *fakeConn) Write(p []byte) (int, error) { return c.w.Write(p) }
func (c *fakeConn) Close() error                { c.once.Do(c.close); return nil }

const guestLogText = "fwbuild-guest demo: up domid=3\nsecond line\n"

// consoleServer starts the SSH console on 127.0.0.1 with a fake runner
// (xl list knows the demo guest) and a fake console, for the unit's admin
// account with password "right-pass" and a lockout after 3 failures.
func consoleServer(t *testing.T) (addr string, acc *accounts, fc *fakeConsole, a *agent) {
	t.Helper()
	a, r, sys, _ := world(t)
	a.cfg.XenBin = xenBin
	r.results[xenBin+"/xl list demo"] = fakeResult{out: "Name ID Mem VCPUs State Time(s)\ndemo 3 64 1 -b---- 0.5\n"}
	r.results[xenBin+"/xl list"] = fakeResult{out: xlListDom0 + "demo 3 64 1 -b---- 0.5\n"}
	sys.files[guestConsoleLog("demo")] = guestLogText
	sys.files["/etc/fwbuild/guests/demo.cfg"] = "# fwbuild: autostart=yes\nname = \"demo\"\n"
	h, err := unit.PasswordHash("right-pass")
	if err != nil {
		t.Fatal(err)
	}
	rec := unit.Record{Version: 1, Board: "qemu-q35", Serial: "SN-1", Accounts: []unit.Account{{User: "admin", Role: unit.RoleAdministrator, Hash: h}}}
	acc, err = newAccounts(rec, lockoutPolicy{Threshold: 3, Duration: time.Minute, ResetAfter: time.Minute}, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	key, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	fc = &fakeConsole{}
	go newSSHConsole(a, acc, fc, key, "SN-1").serve(ctx, ln)
	return ln.Addr().String(), acc, fc, a
}

func dial(addr, password string) (*ssh.Client, error) {
	return ssh.Dial("tcp", addr, &ssh.ClientConfig{User: "admin", Auth: []ssh.AuthMethod{ssh.Password(password)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second})
}

// waitFor reads r into buf until it holds want.
func waitFor(t *testing.T, buf *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(buf.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the output:\n%s", want, buf.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestSSHConsoleGoClient drives the console with x/crypto/ssh's client:
// the right password gets the log and an interactive console that detaches
// on Ctrl-]; the wrong one is refused.
func TestSSHConsoleGoClient(t *testing.T) {
	addr, _, fc, _ := consoleServer(t)
	if _, err := dial(addr, "wrong-pass"); err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
		t.Fatalf("wrong password: %v", err)
	}
	c, err := dial(addr, "right-pass")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	s, _ := c.NewSession()
	out, err := s.Output("log demo")
	if err != nil || string(out) != guestLogText {
		t.Errorf("log demo: %q, %v", out, err)
	}
	s, _ = c.NewSession()
	if out, err := s.CombinedOutput("log ../../etc/shadow"); err == nil || !strings.Contains(string(out), "usage: log <guest>") {
		t.Errorf("log with a path: %q, %v", out, err)
	}

	s, _ = c.NewSession()
	stdin, _ := s.StdinPipe()
	var buf syncBuffer
	s.Stdout = &buf
	if err := s.Start("console demo"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, &buf, "demo login:")
	io.WriteString(stdin, "hello\r")
	waitFor(t, &buf, "echo:hello")
	io.WriteString(stdin, "\x1d")
	if err := s.Wait(); err != nil {
		t.Errorf("console session: %v", err)
	}
	if !strings.Contains(buf.String(), "[detached from guest demo]") {
		t.Errorf("output:\n%s", buf.String())
	}
	fc.mu.Lock()
	if len(fc.attached) != 1 || fc.attached[0] != "demo" || fc.closed != 1 {
		t.Errorf("attached %q, closed %d", fc.attached, fc.closed)
	}
	fc.mu.Unlock()

	// A shell with a terminal: commands at a prompt, ~. detaches too.
	s, _ = c.NewSession()
	stdin, _ = s.StdinPipe()
	buf = syncBuffer{}
	s.Stdout = &buf
	if err := s.RequestPty("xterm", 24, 80, ssh.TerminalModes{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Shell(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, &buf, "ctld SN-1> ")
	io.WriteString(stdin, "guests\r")
	waitFor(t, &buf, "demo ")
	io.WriteString(stdin, "console demo\r")
	waitFor(t, &buf, "demo login:")
	io.WriteString(stdin, "x\r~.")
	waitFor(t, &buf, "[detached from guest demo]")
	io.WriteString(stdin, "exit\r")
	if err := s.Wait(); err != nil {
		t.Errorf("shell: %v\n%s", err, buf.String())
	}
	if !strings.Contains(buf.String(), "echo:x") {
		t.Errorf("shell output:\n%s", buf.String())
	}
}

// TestSSHConsoleLockout: after the threshold of wrong passwords the
// account refuses even the right one, in the lockout every service shares.
func TestSSHConsoleLockout(t *testing.T) {
	addr, acc, _, _ := consoleServer(t)
	for i := 0; i < 3; i++ {
		if _, err := dial(addr, "guess-"+strconv.Itoa(i)); err == nil {
			t.Fatal("a wrong password got in")
		}
	}
	if !acc.locked("admin") {
		t.Fatal("admin not locked after 3 failures")
	}
	if _, err := dial(addr, "right-pass"); err == nil {
		t.Fatal("the right password got in while the account is locked")
	}
	if _, err := acc.authenticate("admin", "right-pass"); !errors.Is(err, errLocked) {
		t.Errorf("authenticate: %v, want errLocked (Redfish sees the same lock)", err)
	}
}

// TestSSHConsoleOpenSSH: Debian's OpenSSH client (with sshpass for the
// password) reads the log, attaches to the console and detaches with
// Ctrl-]; a wrong password is refused.
func TestSSHConsoleOpenSSH(t *testing.T) {
	for _, tool := range []string{"ssh", "sshpass"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed: run `fwbuild doctor --fix` (packages openssh-client, sshpass)", tool)
		}
	}
	addr, _, _, _ := consoleServer(t)
	host, port, _ := net.SplitHostPort(addr)
	sshCmd := func(password string, args ...string) *exec.Cmd {
		base := []string{"-p", password, "ssh", "-F", "/dev/null", "-p", port, "-o", "StrictHostKeyChecking=no",
			"-o", "UserKnownHostsFile=/dev/null", "-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no",
			"-o", "NumberOfPasswordPrompts=1", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR", "admin@" + host}
		return exec.Command("sshpass", append(base, args...)...)
	}
	out, err := sshCmd("right-pass", "log", "demo").CombinedOutput()
	if err != nil || !strings.Contains(string(out), guestLogText) {
		t.Fatalf("ssh log demo: %v\n%s", err, out)
	}
	cmd := sshCmd("wrong-pass", "log", "demo")
	out, err = cmd.CombinedOutput()
	var ee *exec.ExitError
	// One prompt only: ssh itself gives up (255) after the server's refusal.
	if !errors.As(err, &ee) || ee.ExitCode() != 255 || !strings.Contains(string(out), "Permission denied (password)") || strings.Contains(string(out), "second line") {
		t.Errorf("wrong password: %v\n%s", err, out)
	}

	cmd = sshCmd("right-pass", "-tt", "console", "demo")
	stdin, _ := cmd.StdinPipe()
	var buf syncBuffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, &buf, "demo login:")
	io.WriteString(stdin, "ping\r")
	waitFor(t, &buf, "echo:ping")
	io.WriteString(stdin, "\x1d")
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ssh console demo: %v\n%s", err, buf.String())
		}
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("ssh did not end after Ctrl-]:\n%s", buf.String())
	}
	if !strings.Contains(buf.String(), "[detached from guest demo]") {
		t.Errorf("output:\n%s", buf.String())
	}
}

func TestHostKeyPersists(t *testing.T) {
	a, _, sys, _ := world(t)
	k1, created, err := a.hostKey("/var/lib/fwbuild/data/ctld")
	if err != nil || !created {
		t.Fatalf("first boot: %v created=%v", err, created)
	}
	p := "/var/lib/fwbuild/data/ctld/" + sshHostKeyFile
	if sys.perms[p] != 0o600 || !strings.Contains(sys.files[p], "OPENSSH PRIVATE KEY") {
		t.Errorf("key file mode %v", sys.perms[p])
	}
	k2, created, err := a.hostKey("/var/lib/fwbuild/data/ctld")
	if err != nil || created || !bytes.Equal(k1.PublicKey().Marshal(), k2.PublicKey().Marshal()) {
		t.Errorf("second boot: %v created=%v, same key %v", err, created, bytes.Equal(k1.PublicKey().Marshal(), k2.PublicKey().Marshal()))
	}
	sys.files[p] = "garbage"
	if _, _, err := a.hostKey("/var/lib/fwbuild/data/ctld"); err == nil || !strings.Contains(err.Error(), "remove it to make a new one") {
		t.Errorf("damaged key: %v", err)
	}
}

func TestEscapeFilter(t *testing.T) {
	for _, c := range []struct {
		in, out string
		detach  bool
	}{
		{"abc", "abc", false},
		{"ab\x1dcd", "ab", true},
		{"~.", "", true},
		{"a~.", "a~.", false},
		{"a\r~.", "a\r", true},
		{"\r~x", "\r~x", false},
		{"~~", "~~", false},
	} {
		out, detach := newEscapeFilter().filter([]byte(c.in))
		if string(out) != c.out || detach != c.detach {
			t.Errorf("filter(%q) = %q, %v; want %q, %v", c.in, out, detach, c.out, c.detach)
		}
	}
}
