package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"time"

	"github.com/fwbuild/fwbuild/contract"
)

// redfishLog is the service's log in the control domain.
const redfishLog = "/var/log/fwbuild-redfish.log"

// startRedfish starts the Redfish service once the management network has
// an address: it needs the unit's record (loadUnitRecord, which prints its
// own line), a TLS key (from the data disk when dataOK) and the address to
// listen on. It prints contract.RedfishUp, or a FAILED redfish line; the
// guests start either way. rebootHost restarts the unit (the host's Reset).
func (a *agent) startRedfish(ctx context.Context, h *contract.HostConfig, dataOK bool, rebootHost func() error) error {
	fail := func(err error) error {
		a.say(contract.Failed{Step: "redfish", Reason: err.Error()})
		return err
	}
	if !a.mgmt.IsValid() {
		return fail(errors.New("no management address (see the network line): the service listens only there"))
	}
	rec, err := a.loadUnitRecord(ctx)
	if err != nil {
		return err // its FAILED unit line is out
	}
	acc, err := newAccounts(rec, defaultLockout(), time.Now)
	if err != nil {
		return fail(err)
	}
	var key *ecdsa.PrivateKey
	keyFrom := "memory"
	if dataOK {
		if key, _, err = loadOrCreateKey(tlsKeyPath); err != nil {
			return fail(err)
		}
		keyFrom = "data"
	} else if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return fail(fmt.Errorf("generate key: %w", err))
	}
	cert, fp, err := selfSigned(key, rec.Board, rec.Serial, a.mgmt)
	if err != nil {
		return fail(err)
	}
	bridge := h.GuestBridge()
	// Requests (logins refused, resets, VMs created) go to a log file, not
	// the operator's console, which a guesser could otherwise flood.
	var logw io.Writer = os.Stderr
	level := slog.LevelWarn
	if f, err := os.OpenFile(redfishLog, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600); err == nil {
		logw, level = f, slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: level}))
	vms := &vmManager{a: a, dataOK: dataOK, bridge: bridge, rebootHost: rebootHost, base: ctx}
	svc := newRedfishService(rec, acc, vms, time.Now, log)
	svc.upd = a.updateService(ctx, dataOK, rebootHost, log)
	svc.tpm = newTPMService(linuxTPM, cert, rec.Board, rec.Serial)
	addr, done, err := serveRedfish(ctx, a.mgmt, a.cfg.RedfishPort, cert, svc, log)
	if err != nil {
		return fail(err)
	}
	a.redfishDone = done
	up := redfishLine(addr, keyFrom)
	up.Fingerprint = fp
	// key=memory says that clients see a new certificate after a reboot.
	a.say(up)
	// The SSH console (Redfish's SerialConsole.SSH) shares the accounts and
	// so the lockout.
	keyDir := ""
	if dataOK {
		keyDir = sshHostKeyDir
	}
	if err := a.startConsoleService(ctx, acc, nil, netip.AddrPortFrom(a.mgmt, 22).String(), keyDir, rec.Serial); err != nil {
		a.say(contract.Failed{Step: "console", Reason: err.Error()})
	}
	return nil
}

// keepServing blocks while the Redfish service runs (the guest helper
// would otherwise exit once its guests are watched, taking the service
// with it).
func (a *agent) keepServing(ctx context.Context) {
	if a.redfishDone == nil {
		return
	}
	select {
	case err := <-a.redfishDone:
		if err != nil {
			a.say(contract.Failed{Step: "redfish", Reason: err.Error()})
		}
	case <-ctx.Done():
	}
}
