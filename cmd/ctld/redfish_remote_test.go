package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/fwbuild/fwbuild/contract"
	rf "github.com/fwbuild/fwbuild/contract/redfish"
	"github.com/fwbuild/fwbuild/remote"
)

// `fwbuild remote`'s client package against ctld's real handler, served
// by serveRedfish with the production TLS setup on 127.0.0.1 (Xen behind
// the runner seam, fakeXen): the certificate pinned by the fingerprint
// ctld prints, list, create with a root disk from an image and a NIC,
// start, the console log, stop, delete freeing the VM's directory.
func serveForRemote(t *testing.T, f *rfFixture) (hostport, fingerprint string) {
	t.Helper()
	k, _, err := loadOrCreateKey(filepath.Join(t.TempDir(), "tls.key"))
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddr("127.0.0.1")
	cert, fp, err := selfSigned(k, "qemu-q35-host", "FW-TEST-0001", addr)
	if err != nil {
		t.Fatal(err)
	}
	a, _, err := serveRedfish(t.Context(), addr, 0, cert, f.svc, f.svc.log)
	if err != nil {
		t.Fatal(err)
	}
	return a.String(), fp
}

func TestRemoteClient(t *testing.T) {
	f := newRFFixture(t)
	hostport, fp := serveForRemote(t, f)
	ctx := context.Background()
	newClient := func(pass, pin string) *remote.Client {
		c, err := remote.New(remote.Options{Host: hostport, User: "operator", Password: pass, Fingerprint: pin})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	// Pinning: another fingerprint is refused before any credential is
	// sent; no fingerprint means the system's roots, which do not know it.
	if _, err := newClient(opPass, strings.Repeat("ab", 32)).List(ctx); err == nil || !strings.Contains(err.Error(), "not the pinned") {
		t.Errorf("wrong pin: %v, want a refusal naming the pin", err)
	}
	if _, err := newClient(opPass, "").List(ctx); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("no pin: %v, want a certificate error", err)
	}
	var rerr *remote.Error
	if _, err := newClient("wrong", fp).List(ctx); !errors.As(err, &rerr) || rerr.Status != http.StatusUnauthorized {
		t.Errorf("wrong password: %v, want 401", err)
	}

	c := newClient(opPass, "SHA256:"+strings.ToUpper(fp)) // as a person may paste it
	systems, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, s := range systems {
		got[s.ID] = s.SystemType + " " + s.PowerState
	}
	if len(systems) != 3 || got["host"] != "Physical On" || got["web"] != "Virtual On" || got["db"] != "Virtual Off" {
		t.Errorf("list: %v", got)
	}

	disk, err := remote.ParseDisk("root:64KiB:debian")
	if err != nil {
		t.Fatal(err)
	}
	spec := rf.CreateSystem{Name: "api1", ProcessorSummary: rf.ProcessorSummary{Count: 1}}
	spec.Oem.Fwbuild = rf.CreateFwbuild{Image: "debian", MemoryMiB: 256, Type: "pv", Disks: []rf.CreateDisk{disk}, NICs: []rf.CreateNIC{{}}}
	cs, err := c.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if cs.ID != "api1" || cs.PowerState != rf.PowerOff || cs.Oem == nil || cs.Oem.Fwbuild.ConsoleLog == nil || cs.Oem.Fwbuild.ConsoleLog.ID != rf.ConsoleLog("api1") {
		t.Errorf("created: %+v", cs)
	}
	rootDisk := f.root + contract.DataGuestDisk("api1", "root")
	if b, err := os.ReadFile(rootDisk); err != nil || !bytes.HasPrefix(b, rootImageBytes) || len(b) != 64<<10 {
		t.Errorf("api1's root disk: %d bytes, %v; want 64 KiB starting with the image's root.img", len(b), err)
	}
	if _, err := c.Create(ctx, spec); !errors.As(err, &rerr) || rerr.Status != http.StatusConflict {
		t.Errorf("create again: %v, want 409", err)
	}
	if err := c.Reset(ctx, "api1", rf.ResetOn); err != nil || !f.xen.running("api1") {
		t.Fatalf("start: %v, running %v", err, f.xen.running("api1"))
	}
	if cs, err = c.Get(ctx, "api1"); err != nil || cs.PowerState != rf.PowerOn {
		t.Errorf("after start: %v %+v", err, cs)
	}
	f.vms.a.sys.(*fakeSystem).files[guestConsoleLog("api1")] = "Booting\nfwbuild-guest: dhcp 10.0.2.16\n"
	if b, err := c.ConsoleLog(ctx, "api1"); err != nil || !strings.Contains(string(b), "dhcp 10.0.2.16") {
		t.Errorf("console log: %q, %v", b, err)
	}
	if _, err := c.ConsoleLog(ctx, "db"); !errors.As(err, &rerr) || rerr.Status != http.StatusNotFound {
		t.Errorf("console log of a VM that never ran: %v, want 404", err)
	}
	if err := c.Reset(ctx, "api1", rf.ResetForceOff); err != nil || f.xen.running("api1") {
		t.Errorf("stop: %v, running %v", err, f.xen.running("api1"))
	}
	if err := c.Delete(ctx, "api1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f.root + contract.DataGuestDir("api1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("api1's directory after delete: %v", err)
	}
	// Freed: the 64 KiB root disk (the config went first).
	if m := regexp.MustCompile(contract.GuestDeletedPattern("api1")).FindStringSubmatch(f.consoleText()); m == nil {
		t.Errorf("console lacks api1's deleted line:\n%s", f.consoleText())
	} else if n, _ := strconv.Atoi(m[1]); n != 64<<10 {
		t.Errorf("deleted line says %d bytes freed, want the root disk's 64 KiB", n)
	}
	if _, err := c.Get(ctx, "api1"); !errors.As(err, &rerr) || rerr.Status != http.StatusNotFound {
		t.Errorf("get after delete: %v, want 404", err)
	}
}

// A virtual media URL serving more than the limit is refused, and nothing
// of it stays on the data disk.
func TestRedfishVirtualMediaLimit(t *testing.T) {
	f := newRFFixture(t)
	f.vms.maxMedia = 1000
	media := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(make([]byte, 1001)) }))
	defer media.Close()
	r := f.do(t, "POST", rf.InsertMediaTarget("db"), admin, `{"Image":"`+media.URL+`/big.iso"}`)
	if r.code != 500 || !strings.Contains(string(r.body), "limit of 1000 bytes") {
		t.Errorf("oversized media: %d %s", r.code, r.body)
	}
	entries, _ := os.ReadDir(f.root + contract.DataGuestDir("db"))
	for _, e := range entries {
		if strings.Contains(e.Name(), "cd") {
			t.Errorf("left on the data disk: %s", e.Name())
		}
	}
}
