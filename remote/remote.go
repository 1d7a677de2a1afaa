// Package remote is the client side of ctld's Redfish service, as
// `fwbuild remote` uses it: list the systems, create, start, stop and
// delete VMs, read a VM's console log. It speaks the JSON of
// contract/redfish over HTTPS with Basic auth, and trusts the unit's
// self-signed certificate only by the SHA-256 fingerprint ctld prints on its
// console (`fwbuild-ctld: redfish https://... sha256=<hex>`); without a
// fingerprint it verifies the certificate against the system's roots.
package remote

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	rf "github.com/fwbuild/fwbuild/contract/redfish"
)

// Options say where the service is and who asks.
type Options struct {
	// Host is host[:port]; the port defaults to 443.
	Host     string
	User     string
	Password string
	// Fingerprint is the certificate's SHA-256 as ctld prints it: 64 hex
	// digits, optionally with colons or a "SHA256:" prefix.
	Fingerprint string
	// Timeout bounds each request; zero: 5 minutes (a Reset On waits for
	// xl create, which takes tens of seconds on a busy unit).
	Timeout time.Duration
}

// Client talks to one unit.
type Client struct {
	base       string
	user, pass string
	http       *http.Client
}

// New checks the options and returns a client; it does not connect.
func New(o Options) (*Client, error) {
	if o.Host == "" {
		return nil, errors.New("remote: no host: give the unit's management address (host[:port])")
	}
	if o.User == "" {
		return nil, errors.New("remote: no user name")
	}
	if o.Password == "" {
		return nil, errors.New("remote: no password (the unit's label has it)")
	}
	hostport := o.Host
	if _, _, err := net.SplitHostPort(hostport); err != nil {
		hostport = net.JoinHostPort(strings.Trim(hostport, "[]"), "443")
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.Fingerprint != "" {
		pin, err := ParseFingerprint(o.Fingerprint)
		if err != nil {
			return nil, err
		}
		// The unit's certificate is self-signed for its management
		// address: the pin replaces the chain and name checks, so
		// skipping those is safe only because VerifyConnection runs.
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("remote: the server sent no certificate")
			}
			got := sha256.Sum256(cs.PeerCertificates[0].Raw)
			if subtle.ConstantTimeCompare(got[:], pin) != 1 {
				return fmt.Errorf("remote: the certificate's SHA-256 is %x, not the pinned %x: not the unit you named (or its key changed: see its console's redfish line)", got, pin)
			}
			return nil
		}
	}
	timeout := o.Timeout
	if timeout == 0 {
		timeout = 5 * time.Minute
	}
	return &Client{
		base: "https://" + hostport, user: o.User, pass: o.Password,
		http: &http.Client{Timeout: timeout, Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}},
	}, nil
}

// ParseFingerprint reads a SHA-256 certificate fingerprint.
func ParseFingerprint(s string) ([]byte, error) {
	h := strings.ToLower(strings.TrimSpace(s))
	h = strings.TrimPrefix(h, "sha256:")
	h = strings.TrimPrefix(h, "sha256=")
	h = strings.ReplaceAll(h, ":", "")
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("remote: fingerprint %q: want the certificate's SHA-256 as 64 hex digits (the sha256= of ctld's redfish line)", s)
	}
	return b, nil
}

// Error is a request the service refused.
type Error struct {
	Method, Path string
	Status       int
	// MessageID is the Base registry's id, e.g. Base.1.16.0.ResourceNotFound.
	MessageID string
	Message   string
}

func (e *Error) Error() string {
	s := fmt.Sprintf("remote: %s %s: %d %s", e.Method, e.Path, e.Status, http.StatusText(e.Status))
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// do sends one request; out, if not nil, receives the JSON answer.
func (c *Client) do(ctx context.Context, method, path string, in, out any) (*http.Response, []byte, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, nil, fmt.Errorf("remote: %w", err)
	}
	req.SetBasicAuth(c.user, c.pass)
	req.Header.Set("Accept", "application/json")
	req.Header.Set(rf.HeaderODataVer, "4.0")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("remote: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("remote: %s %s: read the answer: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		e := &Error{Method: method, Path: path, Status: resp.StatusCode}
		var rerr rf.Error
		if json.Unmarshal(b, &rerr) == nil && rerr.Error.Code != "" {
			e.MessageID, e.Message = rerr.Error.Code, rerr.String()
		}
		return resp, b, e
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp, b, fmt.Errorf("remote: %s %s: the answer is not the JSON expected: %w", method, path, err)
		}
	}
	return resp, b, nil
}

// List returns every system: the host first, then the VMs, as the
// Systems collection orders them.
func (c *Client) List(ctx context.Context) ([]rf.ComputerSystem, error) {
	var col rf.Collection
	if _, _, err := c.do(ctx, http.MethodGet, rf.Systems, nil, &col); err != nil {
		return nil, err
	}
	out := make([]rf.ComputerSystem, 0, len(col.Members))
	for _, m := range col.Members {
		var cs rf.ComputerSystem
		if _, _, err := c.do(ctx, http.MethodGet, m.ID, nil, &cs); err != nil {
			return nil, err
		}
		out = append(out, cs)
	}
	return out, nil
}

// Get returns one system.
func (c *Client) Get(ctx context.Context, id string) (rf.ComputerSystem, error) {
	var cs rf.ComputerSystem
	_, _, err := c.do(ctx, http.MethodGet, rf.System(id), nil, &cs)
	return cs, err
}

// Create defines a VM (POST Systems); it is off until Start.
func (c *Client) Create(ctx context.Context, spec rf.CreateSystem) (rf.ComputerSystem, error) {
	var cs rf.ComputerSystem
	_, _, err := c.do(ctx, http.MethodPost, rf.Systems, spec, &cs)
	return cs, err
}

// Reset runs ComputerSystem.Reset with one of rf.VMResetTypes.
func (c *Client) Reset(ctx context.Context, id, resetType string) error {
	_, _, err := c.do(ctx, http.MethodPost, rf.ResetTarget(id), rf.Reset{ResetType: resetType}, nil)
	return err
}

// Delete destroys a VM and frees its storage on the data disk.
func (c *Client) Delete(ctx context.Context, id string) error {
	_, _, err := c.do(ctx, http.MethodDelete, rf.System(id), nil, nil)
	return err
}

// ConsoleLog returns the end of a VM's console log.
func (c *Client) ConsoleLog(ctx context.Context, id string) ([]byte, error) {
	_, b, err := c.do(ctx, http.MethodGet, rf.ConsoleLog(id), nil, nil)
	return b, err
}
