package qemutests

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-tpm/legacy/tpm2"
)

// TPM is a software TPM 2.0 (Debian's swtpm) for one machine: QEMU reaches it
// through swtpm's control socket (-tpmdev emulator), as QEMU's docs show.
// After the machine is gone, PCRs reads the TPM's PCRs from the host side (a
// check that does not trust anything the guest printed).
type TPM struct {
	dir  string
	ctrl string
	cmd  *exec.Cmd
	done chan error
	// stopped is closed by Stop.
	stopped chan struct{}
	once    sync.Once
}

// StartTPM starts swtpm with its state in dir (created; a fresh directory is
// a fresh TPM: new seeds, so a new attestation key). The process ends with ctx
// or Stop.
func StartTPM(ctx context.Context, dir string) (*TPM, error) { return startTPM(ctx, dir) }

// StartStandaloneTPM starts a TPM that needs no machine: swtpm powers it on
// and runs TPM2_Startup itself, and Open talks to it (tests of quotes and
// their verification, with PCRs extended by the test).
func StartStandaloneTPM(ctx context.Context, dir string) (*TPM, error) {
	return startTPM(ctx, dir, "--flags", "not-need-init,startup-clear")
}

func startTPM(ctx context.Context, dir string, extra ...string) (*TPM, error) {
	bin, err := exec.LookPath("swtpm")
	if err != nil {
		return nil, fmt.Errorf("swtpm: not installed (Debian package swtpm; run fwbuild doctor --fix): %w", err)
	}
	state := filepath.Join(dir, "tpm-state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		return nil, fmt.Errorf("swtpm: %w", err)
	}
	t := &TPM{dir: dir, ctrl: filepath.Join(dir, "tpm-ctrl.sock"), done: make(chan error, 1), stopped: make(chan struct{})}
	args := append([]string{"socket", "--tpm2", "--tpmstate", "dir=" + state, "--ctrl", "type=unixio,path=" + t.ctrl,
		"--log", "file=" + filepath.Join(dir, "swtpm.log") + ",level=1"}, extra...)
	t.cmd = exec.Command(bin, args...)
	t.cmd.SysProcAttr = sysProcAttr()
	if err := t.cmd.Start(); err != nil {
		return nil, fmt.Errorf("swtpm: %w", err)
	}
	go func() { t.done <- t.cmd.Wait() }()
	go func() {
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.stopped:
		}
	}()
	// QEMU connects at start: the socket must exist by then.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(t.ctrl); err == nil {
			return t, nil
		}
		select {
		case err := <-t.done:
			return nil, fmt.Errorf("swtpm: exited before creating %s: %v (see %s)", t.ctrl, err, filepath.Join(dir, "swtpm.log"))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Stop()
			return nil, fmt.Errorf("swtpm: %s not created within 10s", t.ctrl)
		}
	}
}

// Args are QEMU's options for the TPM (a TIS interface: what a server's
// discrete TPM presents, and what OVMF's Tcg2Pei probes first).
func (t *TPM) Args() []string {
	return []string{"-chardev", "socket,id=chrtpm,path=" + qemuPath(t.ctrl),
		"-tpmdev", "emulator,id=tpm0,chardev=chrtpm", "-device", "tpm-tis,tpmdev=tpm0"}
}

// swtpm's control channel commands (swtpm's tpm_ioctl.h).
const ctrlSetDataFD = 16

// PCRs reads PCRs 0-7 of the bank alg (tpm2.AlgSHA256, tpm2.AlgSHA1) once
// the machine has gone: it hands swtpm a new data channel over the control
// socket, as QEMU did at start. The TPM keeps its volatile state (the PCRs)
// while swtpm runs.
func (t *TPM) PCRs(alg tpm2.Algorithm) (map[int][]byte, error) {
	data, err := t.Open()
	if err != nil {
		return nil, err
	}
	defer data.Close()
	if err := data.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return nil, err
	}
	out := map[int][]byte{}
	// The TPM returns at most 8 digests per read.
	p, err := tpm2.ReadPCRs(data, tpm2.PCRSelection{Hash: alg, PCRs: []int{0, 1, 2, 3, 4, 5, 6, 7}})
	if err != nil {
		return nil, fmt.Errorf("swtpm: read PCRs: %w", err)
	}
	for i, v := range p {
		out[i] = v
	}
	return out, nil
}

// Open hands swtpm a new data channel over the control socket (as QEMU does
// at start) and returns its other end: raw TPM 2.0 commands and responses.
func (t *TPM) Open() (net.Conn, error) {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: t.ctrl, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("swtpm: control socket: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		return nil, fmt.Errorf("swtpm: socketpair: %w", err)
	}
	ours := os.NewFile(uintptr(fds[0]), "tpm-data")
	defer ours.Close()
	cmd := binary.BigEndian.AppendUint32(nil, ctrlSetDataFD)
	_, _, err = c.WriteMsgUnix(cmd, syscall.UnixRights(fds[1]), nil)
	syscall.Close(fds[1])
	if err != nil {
		return nil, fmt.Errorf("swtpm: set data channel: %w", err)
	}
	res := make([]byte, 4)
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return nil, err
	}
	if _, err := c.Read(res); err != nil {
		return nil, fmt.Errorf("swtpm: set data channel: %w", err)
	}
	if r := binary.BigEndian.Uint32(res); r != 0 {
		return nil, fmt.Errorf("swtpm: set data channel: result %#x", r)
	}
	data, err := net.FileConn(ours)
	if err != nil {
		return nil, err
	}
	ok = true
	// swtpm keeps the data channel while this control connection lasts.
	return &dataConn{Conn: data, ctrl: c}, nil
}

type dataConn struct {
	net.Conn
	ctrl net.Conn
}

func (d *dataConn) Close() error {
	err := d.Conn.Close()
	d.ctrl.Close()
	return err
}

// Stop ends swtpm.
func (t *TPM) Stop() {
	t.once.Do(func() {
		close(t.stopped)
		_ = syscall.Kill(-t.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case err := <-t.done:
			t.done <- err
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-t.cmd.Process.Pid, syscall.SIGKILL)
		}
	})
}
