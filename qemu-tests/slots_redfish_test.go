package qemutests_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/contract"
	rf "github.com/fwbuild/fwbuild/contract/redfish"
	qemutests "github.com/fwbuild/fwbuild/qemu-tests"
)

// rfClient talks to a booted unit's Redfish service through QEMU's
// forwarded port, TLS pinned to the fingerprint ctld printed (its
// certificate is self-signed), with the provisioned account.
type rfClient struct {
	base, user, pass string
	http             *http.Client
}

func newRFClient(line string, port int, user, pass string) (*rfClient, error) {
	up, err := contract.ParseRedfishUp(line)
	if err != nil {
		return nil, err
	}
	fp := strings.ToLower(up.Fingerprint)
	tc := &tls.Config{
		InsecureSkipVerify: true, // replaced by the pin below
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return fmt.Errorf("no certificate")
			}
			if s := sha256.Sum256(raw[0]); hex.EncodeToString(s[:]) != fp {
				return fmt.Errorf("certificate sha256 %x, ctld printed %s", s, fp)
			}
			return nil
		},
	}
	return &rfClient{base: fmt.Sprintf("https://127.0.0.1:%d", port), user: user, pass: pass,
		http: &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{TLSClientConfig: tc}}}, nil
}

func (c *rfClient) do(ctx context.Context, method, path, ctype string, body io.Reader) (int, http.Header, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return 0, nil, nil, err
	}
	req.SetBasicAuth(c.user, c.pass)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	res, err := c.http.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, b, err
}

// push uploads an artefact (MultipartHttpPushUri) and follows its task to
// the end: the task's final state and messages, or the refusal's error.
func (c *rfClient) push(ctx context.Context, name string, art []byte) (state, msg string, err error) {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	pw, _ := mw.CreateFormField(rf.PartUpdateParameters)
	pw.Write([]byte(`{}`))
	fw, _ := mw.CreateFormFile(rf.PartUpdateFile, name)
	fw.Write(art)
	mw.Close()
	code, hdr, b, err := c.do(ctx, http.MethodPost, rf.UpdatePush, mw.FormDataContentType(), &body)
	if err != nil {
		return "", "", err
	}
	loc := hdr.Get("Location")
	if code != http.StatusAccepted {
		return fmt.Sprintf("HTTP %d", code), string(b), nil
	}
	for deadline := time.Now().Add(10 * time.Minute); time.Now().Before(deadline); time.Sleep(time.Second) {
		code, _, b, err = c.do(ctx, http.MethodGet, loc, "", nil)
		if err != nil {
			return "", "", err
		}
		if code == http.StatusAccepted {
			continue
		}
		var t rf.TaskResource
		if err := json.Unmarshal(b, &t); err != nil {
			return "", "", fmt.Errorf("task %s: HTTP %d: %v: %s", loc, code, err, b)
		}
		var ms []string
		for _, m := range t.Messages {
			ms = append(ms, m.Message)
		}
		return t.TaskState, strings.Join(ms, "; "), nil
	}
	return "", "", fmt.Errorf("task %s still running after 10 minutes", loc)
}

// slot reads a slot's FirmwareInventory member.
func (c *rfClient) slot(ctx context.Context, slot string) (rf.SoftwareInventory, error) {
	code, _, b, err := c.do(ctx, http.MethodGet, rf.Firmware(rf.SlotID(slot)), "", nil)
	var inv rf.SoftwareInventory
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("GET %s: HTTP %d: %s", rf.Firmware(rf.SlotID(slot)), code, b)
	}
	if err == nil {
		err = json.Unmarshal(b, &inv)
	}
	return inv, err
}

// forward adds a hostfwd from 127.0.0.1 to a guest port of the management
// NIC boottest gave the machine, and returns the host port.
func forward(t *testing.T, m *qemutests.Machine, guest int) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hp := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // QEMU binds it
	found := false
	for i, a := range m.Args {
		if strings.HasPrefix(a, "user,id=fwnet0") {
			m.Args[i] = a + fmt.Sprintf(",hostfwd=tcp:127.0.0.1:%d-:%d", hp, guest)
			found = true
		}
	}
	if !found {
		t.Fatal("the machine has no management NIC (netdev fwnet0): does the board have a network section?")
	}
	return hp
}
