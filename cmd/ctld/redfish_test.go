package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/contract"
	rf "github.com/fwbuild/fwbuild/contract/redfish"
)

// The service root, the version document, $metadata and the OData service
// document answer without credentials; everything else answers 401 with
// WWW-Authenticate and a Redfish error, for no credentials, a wrong
// password, an unknown user and a made-up token alike.
func TestRedfishUnauthenticated(t *testing.T) {
	f := newRFFixture(t)
	r := f.do(t, "GET", "/redfish/v1/", "", "")
	if r.code != 200 || r.hdr.Get("OData-Version") != "4.0" {
		t.Fatalf("service root: %d %v", r.code, r.hdr)
	}
	root := r.json(t)
	if links, _ := root["Links"].(map[string]any); links["Sessions"].(map[string]any)["@odata.id"] != rf.Sessions {
		t.Errorf("service root Links.Sessions: %v", root["Links"])
	}
	for _, k := range []string{"Systems", "Managers", "Chassis", "SessionService", "AccountService"} {
		if root[k].(map[string]any)["@odata.id"] != "/redfish/v1/"+k {
			t.Errorf("service root %s: %v", k, root[k])
		}
	}
	if root["UUID"] != serialUUID("qemu-q35-host", "FW-TEST-0001") || root["RedfishVersion"] != rf.RedfishVersion {
		t.Errorf("service root UUID/version: %v %v", root["UUID"], root["RedfishVersion"])
	}
	if r := f.do(t, "GET", "/redfish", "", ""); r.code != 200 || r.json(t)["v1"] != "/redfish/v1/" {
		t.Errorf("/redfish: %d %s", r.code, r.body)
	}
	if r := f.do(t, "GET", "/redfish/v1/$metadata", "", ""); r.code != 200 || !bytes.Contains(r.body, []byte(`Namespace="ComputerSystem.v1_20_0"`)) ||
		r.hdr.Get("Content-Type") != "application/xml" {
		t.Errorf("$metadata: %d %s", r.code, r.body)
	}
	if r := f.do(t, "GET", "/redfish/v1/odata", "", ""); r.code != 200 || !bytes.Contains(r.body, []byte(`"url": "/redfish/v1/Systems"`)) {
		t.Errorf("odata: %d %s", r.code, r.body)
	}
	// (viewer's wrong passwords lock viewer: the same answer.)
	for _, auth := range []string{"", "viewer:wrong", "nobody:" + adminPass, "0123456789abcdef"} {
		for _, p := range []string{rf.Systems, rf.System("web"), rf.System(rf.HostID), rf.AccountService, rf.Managers, rf.Sessions, "/redfish/v1/NoSuch"} {
			r := f.do(t, "GET", p, auth, "")
			if r.code != 401 || r.hdr.Get("WWW-Authenticate") != `Basic realm="fwbuild"` || r.messageID(t) != "Base.1.16.NoValidSession" {
				t.Errorf("GET %s with %q: %d %q %s", p, auth, r.code, r.hdr.Get("WWW-Authenticate"), r.body)
			}
		}
	}
	// A POST without credentials changes nothing.
	if r := f.do(t, "POST", rf.ResetTarget("web"), "", `{"ResetType":"ForceOff"}`); r.code != 401 || !f.xen.running("web") {
		t.Errorf("unauthenticated reset: %d, web running %v", r.code, f.xen.running("web"))
	}
	if r := f.do(t, "GET", rf.Systems, admin, ""); r.code != 200 {
		t.Errorf("Basic auth: %d %s", r.code, r.body)
	}
}

// Sessions: POST Sessions gives X-Auth-Token and Location; the token
// works until DELETE of the Location or SessionTimeout without use.
func TestRedfishSessions(t *testing.T) {
	f := newRFFixture(t)
	r := f.do(t, "POST", rf.Sessions, "", `{"UserName":"operator","Password":"`+opPass+`"}`)
	tok, loc := r.hdr.Get("X-Auth-Token"), r.hdr.Get("Location")
	if r.code != 201 || len(tok) != 32 || !strings.HasPrefix(loc, rf.Sessions+"/") {
		t.Fatalf("login: %d token %q location %q %s", r.code, tok, loc, r.body)
	}
	if m := r.json(t); m["UserName"] != "operator" || rf.Session(m["Id"].(string)) != loc || m["@odata.id"] != loc {
		t.Errorf("session body: %s", r.body)
	}
	if r := f.do(t, "GET", rf.Systems, tok, ""); r.code != 200 {
		t.Errorf("GET with token: %d", r.code)
	}
	if r := f.do(t, "GET", rf.Sessions, tok, ""); r.code != 200 || !bytes.Contains(r.body, []byte(loc)) {
		t.Errorf("sessions: %d %s", r.code, r.body)
	}
	if r := f.do(t, "GET", rf.SessionService, tok, ""); r.code != 200 || r.json(t)["SessionTimeout"] != float64(1800) {
		t.Errorf("session service: %s", r.body)
	}
	// Another user's session is not there for an operator.
	r2 := f.do(t, "POST", rf.Sessions, "", `{"UserName":"admin","Password":"`+adminPass+`"}`)
	if r := f.do(t, "GET", r2.hdr.Get("Location"), tok, ""); r.code != 404 {
		t.Errorf("operator reading admin's session: %d", r.code)
	}
	if r := f.do(t, "GET", loc, r2.hdr.Get("X-Auth-Token"), ""); r.code != 200 {
		t.Errorf("admin reading operator's session: %d", r.code)
	}
	if r := f.do(t, "DELETE", loc, tok, ""); r.code != 204 {
		t.Fatalf("logout: %d %s", r.code, r.body)
	}
	if r := f.do(t, "GET", rf.Systems, tok, ""); r.code != 401 {
		t.Errorf("token after logout: %d", r.code)
	}
	// Timeout: a session unused for longer than SessionTimeout is gone,
	// one used within it lives on.
	tok2 := r2.hdr.Get("X-Auth-Token")
	f.advance(29 * time.Minute)
	if r := f.do(t, "GET", rf.Systems, tok2, ""); r.code != 200 {
		t.Errorf("token after 29 minutes: %d", r.code)
	}
	f.advance(31 * time.Minute)
	if r := f.do(t, "GET", rf.Systems, tok2, ""); r.code != 401 {
		t.Errorf("token after 31 idle minutes: %d", r.code)
	}
	for _, body := range []string{`{"UserName":"admin","Password":"nope"}`, `{"UserName":"ghost","Password":"x"}`} {
		if r := f.do(t, "POST", rf.Sessions, "", body); r.code != 401 || r.hdr.Get("X-Auth-Token") != "" {
			t.Errorf("login %s: %d %v", body, r.code, r.hdr)
		}
	}
	if r := f.do(t, "POST", rf.Sessions, "", `{"UserName":`); r.code != 400 || r.messageID(t) != "Base.1.16.MalformedJSON" {
		t.Errorf("malformed login: %d %s", r.code, r.body)
	}
	if r := f.do(t, "POST", rf.Sessions, "", `{"Password":"x"}`); r.code != 400 || r.messageID(t) != "Base.1.16.PropertyMissing" {
		t.Errorf("login without UserName: %d %s", r.code, r.body)
	}
	// A ReadOnly account may log itself out, and nobody else.
	v := f.do(t, "POST", rf.Sessions, "", `{"UserName":"viewer","Password":"`+viewerPass+`"}`)
	vtok, vloc := v.hdr.Get("X-Auth-Token"), v.hdr.Get("Location")
	if r := f.do(t, "DELETE", r2.hdr.Get("Location"), vtok, ""); r.code != 403 {
		t.Errorf("viewer deleting admin's session: %d", r.code)
	}
	if r := f.do(t, "DELETE", vloc, vtok, ""); r.code != 204 {
		t.Errorf("viewer logging out: %d %s", r.code, r.body)
	}
	// Logins past maxSessions evict the least recently used session.
	first := f.do(t, "POST", rf.Sessions, "", `{"UserName":"admin","Password":"`+adminPass+`"}`).hdr.Get("X-Auth-Token")
	f.advance(time.Second)
	var last string
	for i := 0; i < maxSessions; i++ {
		last = f.do(t, "POST", rf.Sessions, "", `{"UserName":"admin","Password":"`+adminPass+`"}`).hdr.Get("X-Auth-Token")
	}
	if r := f.do(t, "GET", rf.Sessions, last, ""); r.json(t)["Members@odata.count"] != float64(maxSessions) {
		t.Errorf("sessions after %d logins: %s", maxSessions+1, r.body)
	}
	if r := f.do(t, "GET", rf.Systems, first, ""); r.code != 401 {
		t.Errorf("least recently used session after %d more logins: %d", maxSessions, r.code)
	}
}

// Five wrong passwords lock the account for AccountLockoutDuration: the
// right password then gets the very answer a wrong one gets, whether by
// Basic auth or a session login, and AccountService shows Locked.
func TestRedfishLockout(t *testing.T) {
	f := newRFFixture(t)
	as := f.do(t, "GET", rf.AccountService, admin, "").json(t)
	if as["AccountLockoutThreshold"] != float64(5) || as["AccountLockoutDuration"] != float64(300) || as["AccountLockoutCounterResetAfter"] != float64(300) {
		t.Fatalf("AccountService: %v", as)
	}
	wrong := f.do(t, "GET", rf.Systems, "operator:wrong", "")
	for i := 0; i < 4; i++ {
		f.do(t, "GET", rf.Systems, "operator:wrong", "")
	}
	locked := f.do(t, "GET", rf.Systems, "operator:"+opPass, "")
	if locked.code != 401 || !bytes.Equal(locked.body, wrong.body) || locked.hdr.Get("WWW-Authenticate") != wrong.hdr.Get("WWW-Authenticate") {
		t.Fatalf("locked account with its right password: %d %s (a wrong password: %d %s)", locked.code, locked.body, wrong.code, wrong.body)
	}
	if r := f.do(t, "POST", rf.Sessions, "", `{"UserName":"operator","Password":"`+opPass+`"}`); r.code != 401 {
		t.Errorf("session login of a locked account: %d", r.code)
	}
	acc := f.do(t, "GET", rf.Account("operator"), admin, "").json(t)
	if acc["Locked"] != true || acc["RoleId"] != "Operator" || acc["Password"] != nil {
		t.Errorf("locked account: %v", acc)
	}
	// Other accounts are not affected.
	if r := f.do(t, "GET", rf.Systems, "viewer:"+viewerPass, ""); r.code != 200 {
		t.Errorf("viewer while operator is locked: %d", r.code)
	}
	f.advance(5*time.Minute + time.Second)
	if r := f.do(t, "GET", rf.Systems, "operator:"+opPass, ""); r.code != 200 {
		t.Errorf("after the lockout: %d", r.code)
	}
	if acc := f.do(t, "GET", rf.Account("operator"), admin, "").json(t); acc["Locked"] != false {
		t.Errorf("after the lockout: %v", acc)
	}
	if r := f.do(t, "GET", rf.Accounts, admin, ""); r.code != 200 || r.json(t)["Members@odata.count"] != float64(3) {
		t.Errorf("accounts: %s", r.body)
	}
	if r := f.do(t, "GET", rf.Role("ReadOnly"), admin, ""); r.code != 200 || !bytes.Contains(r.body, []byte(`"Login"`)) {
		t.Errorf("role: %s", r.body)
	}
}

// Systems lists the host and every VM; the host is Physical with xl
// info's memory and CPUs, a VM is Virtual with xl list's power
// state and its config's memory and vCPUs.
func TestRedfishSystems(t *testing.T) {
	f := newRFFixture(t)
	r := f.do(t, "GET", rf.Systems, admin, "")
	var c rf.Collection
	json.Unmarshal(r.body, &c)
	var ids []string
	for _, m := range c.Members {
		ids = append(ids, m.ID)
	}
	if want := []string{rf.System("host"), rf.System("db"), rf.System("web")}; !slices.Equal(ids, want) || c.MembersCount != 3 {
		t.Fatalf("Systems: %v, want %v", ids, want)
	}
	var host rf.ComputerSystem
	json.Unmarshal(f.do(t, "GET", rf.System("host"), admin, "").body, &host)
	if host.SystemType != "Physical" || host.PowerState != "On" || host.ProcessorSummary.Count != 2 || host.Oem.Fwbuild.MemoryMiB != 2041 ||
		host.SerialNumber != "FW-TEST-0001" || !slices.Equal(host.Actions.Reset.Allowable, []string{"ForceRestart"}) {
		t.Errorf("host: %+v", host)
	}
	var web, db rf.ComputerSystem
	json.Unmarshal(f.do(t, "GET", rf.System("web"), admin, "").body, &web)
	json.Unmarshal(f.do(t, "GET", rf.System("db"), admin, "").body, &db)
	if web.SystemType != "Virtual" || web.PowerState != "On" || web.MemorySummary.TotalSystemMemoryGiB != 1 || web.ProcessorSummary.Count != 2 ||
		web.Oem.Fwbuild.DomID == nil || *web.Oem.Fwbuild.DomID != 7 || web.Oem.Fwbuild.Type != "pvh" || !web.Oem.Fwbuild.Autostart {
		t.Errorf("web: %+v", web)
	}
	if db.PowerState != "Off" || db.Oem.Fwbuild.DomID != nil || db.Oem.Fwbuild.MemoryMiB != 256 || db.Status.State != "StandbyOffline" {
		t.Errorf("db: %+v", db)
	}
	if web.Actions.Reset.Target != rf.ResetTarget("web") || web.Actions.Reset.ActionInfo != rf.ResetInfo("web") ||
		!slices.Equal(web.Actions.Reset.Allowable, rf.VMResetTypes) || web.Boot.BootSourceOverrideEnabled != "Disabled" ||
		web.VirtualMedia == nil || web.VirtualMedia.ID != rf.VirtualMediaPath("web") {
		t.Errorf("web actions/boot/media: %+v", web)
	}
	ai := f.do(t, "GET", rf.ResetInfo("web"), admin, "")
	if ai.code != 200 || !bytes.Contains(ai.body, []byte(`"GracefulShutdown"`)) {
		t.Errorf("ResetActionInfo: %s", ai.body)
	}
	if r := f.do(t, "GET", rf.System("nosuch"), admin, ""); r.code != 404 || r.messageID(t) != "Base.1.16.ResourceNotFound" {
		t.Errorf("unknown system: %d %s", r.code, r.body)
	}
	if r := f.do(t, "GET", rf.System("web")+"/Bios", admin, ""); r.code != 404 {
		t.Errorf("unknown sub-resource: %d", r.code)
	}
	m := f.do(t, "GET", rf.Managers+"/ctld", admin, "").json(t)
	sc := m["SerialConsole"].(map[string]any)
	if sc["SSH"].(map[string]any)["Port"] != float64(22) || m["FirmwareVersion"] != "Xen 4.17.7" || len(m["Links"].(map[string]any)["ManagerForServers"].([]any)) != 3 {
		t.Errorf("manager: %v", m)
	}
	ch := f.do(t, "GET", rf.Chassis+"/unit", admin, "").json(t)
	if ch["SerialNumber"] != "FW-TEST-0001" || len(ch["Links"].(map[string]any)["ComputerSystems"].([]any)) != 3 {
		t.Errorf("chassis: %v", ch)
	}
	for _, p := range []string{rf.Managers, rf.Chassis} {
		if r := f.do(t, "GET", p, admin, ""); r.code != 200 || r.json(t)["Members@odata.count"] != float64(1) {
			t.Errorf("%s: %s", p, r.body)
		}
	}
	// The collection is the definitions: it asks Xen nothing (a VM's
	// power state is in its own resource).
	before := len(f.xen.callList())
	if r := f.do(t, "GET", rf.Systems, admin, ""); r.code != 200 || r.json(t)["Members@odata.count"] != float64(3) {
		t.Errorf("Systems: %d %s", r.code, r.body)
	}
	if calls := f.xen.callList()[before:]; len(calls) != 0 {
		t.Errorf("GET Systems ran %v, want nothing", calls)
	}
	// A toolstack that does not answer is a 500 with xl's error, not a
	// VM reported off.
	f.xen.failCmd = "list"
	if r := f.do(t, "GET", rf.System("web"), admin, ""); r.code != 500 || r.messageID(t) != "Base.1.16.GeneralError" || !bytes.Contains(r.body, []byte("libxl: error")) {
		t.Errorf("a VM with xl list failing: %d %s", r.code, r.body)
	}
	f.xen.failCmd = ""
}

// Reset drives xl: On creates from the config on the data disk, ForceOff
// destroys, GracefulShutdown shuts down, ForceRestart destroys and creates;
// bad bodies are 400 with the Base message, the wrong method 405 with Allow,
// a ReadOnly account 403, and none of those runs xl.
func TestRedfishReset(t *testing.T) {
	f := newRFFixture(t)
	reset := func(auth, sys, typ string) rfReq {
		return f.do(t, "POST", rf.ResetTarget(sys), auth, `{"ResetType":"`+typ+`"}`)
	}
	power := func(sys string) string {
		var cs rf.ComputerSystem
		json.Unmarshal(f.do(t, "GET", rf.System(sys), admin, "").body, &cs)
		return cs.PowerState
	}
	dbCfg := f.root + contract.DataGuestConfig("db")
	steps := []struct {
		typ, want string
		xl        []string
	}{
		{"On", "On", []string{"xl create " + dbCfg}},
		{"On", "On", nil}, // already on: nothing to do
		{"ForceRestart", "On", []string{"xl destroy db", "xl create " + dbCfg}},
		{"GracefulRestart", "On", []string{"xl reboot db"}},
		{"GracefulShutdown", "Off", []string{"xl shutdown db"}},
		{"ForceOff", "Off", nil},
		{"On", "On", []string{"xl create " + dbCfg}},
		{"ForceOff", "Off", []string{"xl destroy db"}},
	}
	for _, s := range steps {
		before := len(f.xen.callList())
		if r := reset("operator:"+opPass, "db", s.typ); r.code != 204 {
			t.Fatalf("%s: %d %s", s.typ, r.code, r.body)
		}
		var changes []string
		for _, c := range f.xen.callList()[before:] {
			if !strings.HasPrefix(c, "xl list") && !strings.HasPrefix(c, "xl info") && !strings.HasPrefix(c, "stream ") {
				changes = append(changes, c)
			}
		}
		if !slices.Equal(changes, s.xl) {
			t.Errorf("%s: xl %q, want %q", s.typ, changes, s.xl)
		}
		if got := power("db"); got != s.want {
			t.Errorf("after %s: PowerState %s, want %s", s.typ, got, s.want)
		}
	}
	// A VM the service starts is on the console like an autostart guest:
	// its running line and its console's lines.
	waitFor := func(want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(f.consoleText(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("console lacks %q:\n%s", want, f.consoleText())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor(contract.GuestRunning{Name: "db", DomID: 2, Type: "pv"}.String() + "\n")
	waitFor(contract.GuestConsole{Name: "db", Line: "console of db"}.String() + "\n")
	quiet := len(f.xen.callList())
	bad := []struct {
		method, path, auth, body string
		code                     int
		msg                      string
	}{
		{"POST", rf.ResetTarget("db"), admin, `{"ResetType":"Nmi"}`, 400, "PropertyValueNotInList"},
		{"POST", rf.ResetTarget("db"), admin, `{}`, 400, "PropertyMissing"},
		{"POST", rf.ResetTarget("db"), admin, `{"ResetType":`, 400, "MalformedJSON"},
		{"POST", rf.ResetTarget("host"), admin, `{"ResetType":"ForceOff"}`, 400, "PropertyValueNotInList"},
		{"POST", rf.ResetTarget("db"), "viewer:" + viewerPass, `{"ResetType":"On"}`, 403, "InsufficientPrivilege"},
		{"POST", rf.ResetTarget("nosuch"), admin, `{"ResetType":"On"}`, 404, "ResourceNotFound"},
		{"GET", rf.ResetTarget("db"), admin, "", 405, "OperationNotAllowed"},
		{"DELETE", rf.Root, admin, "", 405, "OperationNotAllowed"},
		{"PUT", rf.Systems, admin, "{}", 405, "OperationNotAllowed"},
		{"PATCH", rf.System("db"), admin, "{}", 405, "OperationNotAllowed"},
		{"POST", rf.Systems, "viewer:" + viewerPass, "{}", 403, "InsufficientPrivilege"},
		{"DELETE", rf.System("db"), "viewer:" + viewerPass, "", 403, "InsufficientPrivilege"},
	}
	for _, b := range bad {
		r := f.do(t, b.method, b.path, b.auth, b.body)
		if r.code != b.code || r.messageID(t) != "Base.1.16."+b.msg {
			t.Errorf("%s %s %s: %d %s, want %d %s", b.method, b.path, b.body, r.code, r.body, b.code, b.msg)
		}
		if b.code == 405 && r.hdr.Get("Allow") == "" {
			t.Errorf("%s %s: 405 without Allow", b.method, b.path)
		}
	}
	if r := f.do(t, "GET", rf.ResetTarget("db"), admin, ""); r.hdr.Get("Allow") != "POST" {
		t.Errorf("Allow on the action: %q", r.hdr.Get("Allow"))
	}
	if r := f.do(t, "PUT", rf.Systems, admin, "{}"); r.hdr.Get("Allow") != "GET, POST" {
		t.Errorf("Allow on Systems: %q", r.hdr.Get("Allow"))
	}
	for _, c := range f.xen.callList()[quiet:] {
		if !strings.HasPrefix(c, "xl list") && !strings.HasPrefix(c, "xl info") {
			t.Errorf("a refused request ran %q", c)
		}
	}
	// A failing xl is a 500 with its error, and the state stays.
	f.xen.failCmd = "create"
	if r := reset(admin, "db", "On"); r.code != 500 || !bytes.Contains(r.body, []byte("libxl: error")) || power("db") != "Off" {
		t.Errorf("failing xl create: %d %s", r.code, r.body)
	}
	f.xen.failCmd = ""
	// The host's ForceRestart restarts the unit, after answering.
	rebooted := make(chan struct{}, 2)
	f.vms.rebootHost = func() error { rebooted <- struct{}{}; return nil }
	if r := reset(admin, "host", "ForceRestart"); r.code != 204 {
		t.Fatalf("host restart: %d %s", r.code, r.body)
	}
	select {
	case <-rebooted:
	case <-time.After(5 * time.Second):
		t.Fatal("host ForceRestart did not restart the unit")
	}
	if r := reset("operator:"+opPass, "host", "ForceRestart"); r.code != 204 {
		t.Errorf("operator host restart: %d", r.code)
	}
}

// POST Systems creates a VM on the data disk: disks (a copy of the debian
// image's root file system grown to its size, and an empty one), then its
// xl config with the bridge; the VM is off until Reset On. DELETE destroys
// a running VM and frees its directory. Bad definitions are 400 naming the
// property, a taken name 409; nothing is left behind by either.
func TestRedfishCreateDelete(t *testing.T) {
	f := newRFFixture(t)
	body := `{"Name":"api1","MemorySummary":{"TotalSystemMemoryGiB":0.25},"ProcessorSummary":{"Count":2},
	  "Oem":{"Fwbuild":{"Image":"debian","Disks":[{"Name":"root","SizeBytes":67108864,"From":"debian"},{"Name":"scratch","SizeBytes":1048576}],
	  "NICs":[{"MAC":"00:16:3E:00:00:09"}]}}}`
	r := f.do(t, "POST", rf.Systems, "operator:"+opPass, body)
	if r.code != 201 || r.hdr.Get("Location") != rf.System("api1") {
		t.Fatalf("create: %d %s %v", r.code, r.body, r.hdr)
	}
	var cs rf.ComputerSystem
	json.Unmarshal(r.body, &cs)
	if cs.SystemType != "Virtual" || cs.PowerState != "Off" || cs.Oem.Fwbuild.MemoryMiB != 256 || cs.ProcessorSummary.Count != 2 || cs.Oem.Fwbuild.Type != "pvh" {
		t.Errorf("created: %+v", cs)
	}
	cfg, err := os.ReadFile(f.root + contract.DataGuestConfig("api1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		contract.AutostartLine(false), `name = "api1"`, `type = "pvh"`, "memory = 256", "vcpus = 2",
		`kernel = "/var/lib/fwbuild/data/images/debian/vmlinuz"`, `ramdisk = "/var/lib/fwbuild/data/images/debian/initrd"`,
		`extra = "console=hvc0 fwbuild.guest=api1 fwbuild.after=run root=/dev/xvda"`,
		`"format=raw, vdev=xvda, access=rw, backendtype=phy, script=/bbin/ctld, target=/var/lib/fwbuild/data/guests/api1/root.img"`,
		`"format=raw, vdev=xvdb, access=rw, backendtype=phy, script=/bbin/ctld, target=/var/lib/fwbuild/data/guests/api1/scratch.img"`,
		// The guest bridge, not the management bridge the service is on.
		`vif = [ "bridge=xenbr1, mac=00:16:3e:00:00:09, script=/bbin/ctld" ]`,
	} {
		if !bytes.Contains(cfg, []byte(want)) {
			t.Errorf("config lacks %q:\n%s", want, cfg)
		}
	}
	rootDisk, _ := os.ReadFile(f.root + contract.DataGuestDisk("api1", "root"))
	if len(rootDisk) != 64<<20 || !bytes.Equal(rootDisk[:len(rootImageBytes)], rootImageBytes) {
		t.Errorf("root disk: %d bytes, starts with the image: %v", len(rootDisk), bytes.HasPrefix(rootDisk, rootImageBytes))
	}
	if st, err := os.Stat(f.root + contract.DataGuestDisk("api1", "scratch")); err != nil || st.Size() != 1<<20 {
		t.Errorf("scratch disk: %v %v", st, err)
	}
	if r := f.do(t, "GET", rf.Systems, admin, ""); !bytes.Contains(r.body, []byte(rf.System("api1"))) {
		t.Errorf("Systems after create: %s", r.body)
	}
	if r := f.do(t, "POST", rf.ResetTarget("api1"), admin, `{"ResetType":"On"}`); r.code != 204 || !f.xen.running("api1") {
		t.Fatalf("start the new VM: %d %s", r.code, r.body)
	}
	if r := f.do(t, "POST", rf.Systems, admin, body); r.code != 409 || r.messageID(t) != "Base.1.16.ResourceAlreadyExists" {
		t.Errorf("same name again: %d %s", r.code, r.body)
	}
	bad := []struct{ body, msg, field string }{
		{`{"MemorySummary":{"TotalSystemMemoryGiB":1},"Oem":{"Fwbuild":{"Image":"debian"}}}`, "PropertyMissing", "Name"},
		{`{"Name":"host","Oem":{"Fwbuild":{"Image":"debian","MemoryMiB":64}}}`, "PropertyValueFormatError", "Name"},
		{`{"Name":"domain-0","Oem":{"Fwbuild":{"Image":"debian","MemoryMiB":64}}}`, "PropertyValueFormatError", "Name"},
		{`{"Name":"../x","Oem":{"Fwbuild":{"Image":"debian","MemoryMiB":64}}}`, "PropertyValueFormatError", "Name"},
		{`{"Name":"b1","Oem":{"Fwbuild":{"Image":"debian"}}}`, "PropertyValueFormatError", "MemorySummary/TotalSystemMemoryGiB"},
		{`{"Name":"b2","Oem":{"Fwbuild":{"MemoryMiB":64}}}`, "PropertyMissing", "Oem/Fwbuild/Image"},
		{`{"Name":"b3","Oem":{"Fwbuild":{"Image":"nosuch","MemoryMiB":64}}}`, "PropertyValueNotInList", "Oem/Fwbuild/Image"},
		{`{"Name":"b4","ProcessorSummary":{"Count":500},"Oem":{"Fwbuild":{"Image":"debian","MemoryMiB":64}}}`, "PropertyValueFormatError", "ProcessorSummary/Count"},
		{`{"Name":"b5","Oem":{"Fwbuild":{"Image":"debian","MemoryMiB":64,"Type":"hvm"}}}`, "PropertyValueNotInList", "Oem/Fwbuild/Type"},
		{`{"Name":"b6","Oem":{"Fwbuild":{"Image":"debian","MemoryMiB":64,"Disks":[{"Name":"root","SizeBytes":100,"From":"debian"}]}}}`, "PropertyValueFormatError", "Oem/Fwbuild/Disks/0/SizeBytes"},
		{`{"Name":"b7","Oem":{"Fwbuild":{"Image":"debian","MemoryMiB":64,"Disks":[{"Name":"a","SizeBytes":100},{"Name":"a","SizeBytes":100}]}}}`, "PropertyValueFormatError", "Oem/Fwbuild/Disks/1/Name"},
		{`{"Name":"b8","Oem":{"Fwbuild":{"Image":"debian","MemoryMiB":64,"Disks":[{"Name":"a","SizeBytes":100,"From":"nosuch"}]}}}`, "PropertyValueNotInList", "Oem/Fwbuild/Disks/0/From"},
		{`{"Name":"b9","Oem":{"Fwbuild":{"Image":"debian","MemoryMiB":64,"NICs":[{"MAC":"zz"}]}}}`, "PropertyValueFormatError", "Oem/Fwbuild/NICs/0/MAC"},
		{`{"Name":"b10","Oem":{"Fwbuild":{"Image":"debian","MemoryMiB":64,"Cmdline":"a\"b"}}}`, "PropertyValueFormatError", "Oem/Fwbuild/Cmdline"},
		{`{"Name":`, "MalformedJSON", ""},
	}
	for _, b := range bad {
		r := f.do(t, "POST", rf.Systems, admin, b.body)
		if r.code != 400 || r.messageID(t) != "Base.1.16."+b.msg || (b.field != "" && !bytes.Contains(r.body, []byte(`"`+b.field+`"`))) {
			t.Errorf("create %s: %d %s, want 400 %s naming %s", b.body, r.code, r.body, b.msg, b.field)
		}
	}
	dirs, _ := filepath.Glob(f.root + contract.DataGuestDir("*"))
	if len(dirs) != 3 {
		t.Errorf("guest directories after refused creates: %v", dirs)
	}
	// Delete a running VM: destroyed, and its disks are gone.
	if r := f.do(t, "DELETE", rf.System("api1"), "operator:"+opPass, ""); r.code != 204 {
		t.Fatalf("delete: %d %s", r.code, r.body)
	}
	if f.xen.running("api1") {
		t.Error("deleted VM still running")
	}
	if _, err := os.Stat(f.root + contract.DataGuestDir("api1")); !os.IsNotExist(err) {
		t.Errorf("deleted VM's directory: %v", err)
	}
	if r := f.do(t, "GET", rf.System("api1"), admin, ""); r.code != 404 {
		t.Errorf("GET after delete: %d", r.code)
	}
	if r := f.do(t, "DELETE", rf.System("api1"), admin, ""); r.code != 404 {
		t.Errorf("delete again: %d", r.code)
	}
	// Without a data disk there is nowhere to create a VM.
	f.vms.dataOK = false
	if r := f.do(t, "POST", rf.Systems, admin, body); r.code != 503 {
		t.Errorf("create without a data disk: %d %s", r.code, r.body)
	}
}

// InsertMedia downloads the URL to the VM's directory, puts a read-only
// CD into its config after its disks and, for a running VM, attaches it
// with xl block-attach; EjectMedia takes it out again and frees the file.
func TestRedfishVirtualMedia(t *testing.T) {
	f := newRFFixture(t)
	iso := bytes.Repeat([]byte("CD001"), 4000)
	media := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/netinst.iso" {
			http.NotFound(w, r)
			return
		}
		w.Write(iso)
	}))
	defer media.Close()
	slot := f.do(t, "GET", rf.VirtualMediaSlot("web"), admin, "").json(t)
	if slot["Inserted"] != false || slot["Actions"].(map[string]any)["#VirtualMedia.InsertMedia"].(map[string]any)["target"] != rf.InsertMediaTarget("web") {
		t.Fatalf("empty slot: %v", slot)
	}
	if r := f.do(t, "GET", rf.VirtualMediaPath("web"), admin, ""); r.json(t)["Members@odata.count"] != float64(1) {
		t.Errorf("media collection: %s", r.body)
	}
	before := len(f.xen.callList())
	if r := f.do(t, "POST", rf.InsertMediaTarget("web"), admin, `{"Image":"`+media.URL+`/netinst.iso","Inserted":true,"WriteProtected":true}`); r.code != 204 {
		t.Fatalf("insert: %d %s", r.code, r.body)
	}
	cdPath := contract.DataGuestDisk("web", "cd")
	if b, _ := os.ReadFile(f.root + cdPath); !bytes.Equal(b, iso) {
		t.Errorf("downloaded media: %d bytes, want %d", len(b), len(iso))
	}
	wantSpec := contract.XLDiskSpec(1, cdPath, true)
	if !slices.Contains(f.xen.callList()[before:], "xl block-attach web "+wantSpec) {
		t.Errorf("no block-attach of the CD to running web: %q", f.xen.callList()[before:])
	}
	cfg, _ := os.ReadFile(f.root + contract.DataGuestConfig("web"))
	if !bytes.Contains(cfg, []byte(`vdev=xvda, access=rw`)) || !bytes.Contains(cfg, []byte(fmt.Sprintf("%q", wantSpec))) {
		t.Errorf("config after insert:\n%s", cfg)
	}
	slot = f.do(t, "GET", rf.VirtualMediaSlot("web"), admin, "").json(t)
	if slot["Inserted"] != true || slot["Image"] != media.URL+"/netinst.iso" || slot["ImageName"] != "netinst.iso" {
		t.Errorf("slot after insert: %v", slot)
	}
	if r := f.do(t, "POST", rf.InsertMediaTarget("web"), admin, `{"Image":"`+media.URL+`/netinst.iso"}`); r.code != 409 {
		t.Errorf("insert into a full slot: %d", r.code)
	}
	before = len(f.xen.callList())
	if r := f.do(t, "POST", rf.EjectMediaTarget("web"), admin, `{}`); r.code != 204 {
		t.Fatalf("eject: %d %s", r.code, r.body)
	}
	if !slices.Contains(f.xen.callList()[before:], "xl block-detach web xvdb") {
		t.Errorf("no block-detach: %q", f.xen.callList()[before:])
	}
	if _, err := os.Stat(f.root + cdPath); !os.IsNotExist(err) {
		t.Errorf("media file after eject: %v", err)
	}
	cfg2, _ := os.ReadFile(f.root + contract.DataGuestConfig("web"))
	if bytes.Contains(cfg2, []byte("cdrom")) || !bytes.Contains(cfg2, []byte("vdev=xvda")) {
		t.Errorf("config after eject:\n%s", cfg2)
	}
	// A stopped VM without disks: the CD is its xvda, and no xl runs.
	before = len(f.xen.callList())
	if r := f.do(t, "POST", rf.InsertMediaTarget("db"), admin, `{"Image":"`+media.URL+`/netinst.iso"}`); r.code != 204 {
		t.Fatalf("insert into db: %d %s", r.code, r.body)
	}
	cfg3, _ := os.ReadFile(f.root + contract.DataGuestConfig("db"))
	if !bytes.Contains(cfg3, []byte(fmt.Sprintf("disk = [ %q ]", contract.XLDiskSpec(0, contract.DataGuestDisk("db", "cd"), true)))) {
		t.Errorf("db config:\n%s", cfg3)
	}
	for _, c := range f.xen.callList()[before:] {
		if strings.HasPrefix(c, "xl block") {
			t.Errorf("stopped VM: %s", c)
		}
	}
	for _, b := range []struct {
		body string
		code int
	}{
		{`{"Image":"ftp://x/y.iso"}`, 400},
		{`{"Image":""}`, 400},
		{`{"Image":"` + media.URL + `/a.iso","WriteProtected":false}`, 400},
		{`{"Image":"` + media.URL + `/missing.iso"}`, 500},
	} {
		if r := f.do(t, "POST", rf.InsertMediaTarget("web"), admin, b.body); r.code != b.code {
			t.Errorf("insert %s: %d %s, want %d", b.body, r.code, r.body, b.code)
		}
	}
	if _, err := os.Stat(f.root + cdPath); !os.IsNotExist(err) {
		t.Errorf("a failed download left %s: %v", cdPath, err)
	}
}

// The TLS key: created at first use with mode 0600, the same key on the
// next boot, a damaged key file refused rather than replaced; the
// certificate names the serial and the management address.
func TestRedfishTLSKey(t *testing.T) {
	p := filepath.Join(t.TempDir(), "redfish", "tls.key")
	k1, created, err := loadOrCreateKey(p)
	if err != nil || !created {
		t.Fatalf("first: %v %v", created, err)
	}
	st, err := os.Stat(p)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st, err)
	}
	k2, created, err := loadOrCreateKey(p)
	if err != nil || created || !k1.Equal(k2) {
		t.Fatalf("second boot: created %v, same key %v, %v", created, k1.Equal(k2), err)
	}
	b, _ := os.ReadFile(p)
	if blk, _ := pem.Decode(b); blk == nil || blk.Type != "EC PRIVATE KEY" {
		t.Errorf("key file is not a PEM EC key: %q", b)
	}
	os.WriteFile(p, []byte("garbage"), 0o600)
	if _, _, err := loadOrCreateKey(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("damaged key: %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "garbage" {
		t.Error("damaged key file was replaced")
	}
	addr := netip.MustParseAddr("10.0.2.15")
	cert, fp, err := selfSigned(k1, "qemu-q35-host", "FW-TEST-0001", addr)
	if err != nil {
		t.Fatal(err)
	}
	leaf := cert.Leaf
	if leaf.Subject.CommonName != "FW-TEST-0001" || len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(addr.AsSlice()) || len(fp) != 64 {
		t.Errorf("certificate: %v %v %s", leaf.Subject, leaf.IPAddresses, fp)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "10.0.2.15", CurrentTime: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}); err != nil {
		t.Errorf("certificate does not verify for its address: %v", err)
	}
}

// serveRedfish listens on the address it is given and nowhere else,
// refuses the wildcard, and speaks TLS 1.2 and up only.
func TestServeRedfish(t *testing.T) {
	f := newRFFixture(t)
	k, _, _ := loadOrCreateKey(filepath.Join(t.TempDir(), "k"))
	cert, fp, _ := selfSigned(k, "b", "s", netip.MustParseAddr("127.0.0.1"))
	log := f.svc.log
	for _, bad := range []netip.Addr{{}, netip.MustParseAddr("0.0.0.0"), netip.MustParseAddr("::")} {
		if _, _, err := serveRedfish(t.Context(), bad, 0, cert, f.svc, log); err == nil {
			t.Errorf("serveRedfish on %v: no error", bad)
		}
	}
	addr, done, err := serveRedfish(t.Context(), netip.MustParseAddr("127.0.0.1"), 0, cert, f.svc, log)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(addr.String(), "127.0.0.1:") {
		t.Errorf("listening on %s", addr)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	get := func(max uint16) (*http.Response, error) {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MaxVersion: max}}}
		return c.Get("https://" + addr.String() + "/redfish/v1/")
	}
	resp, err := get(tls.VersionTLS12)
	if err != nil {
		t.Fatalf("TLS 1.2: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS.Version != tls.VersionTLS12 {
		t.Errorf("TLS 1.2: %d %x", resp.StatusCode, resp.TLS.Version)
	}
	if _, err := get(tls.VersionTLS11); err == nil {
		t.Error("TLS 1.1 accepted")
	}
	line := redfishLine(addr, "data")
	line.Fingerprint = fp
	if got, err := contract.ParseRedfishUp(line.String()); err != nil || got != line {
		t.Errorf("redfish line %q: %+v %v", line, got, err)
	}
	select {
	case err := <-done:
		t.Fatalf("server stopped: %v", err)
	default:
	}
}

// startRedfish without a management address, or without a unit record,
// starts nothing and says why on the console (there is no default
// credential to fall back to).
func TestStartRedfishRefuses(t *testing.T) {
	var out bytes.Buffer
	a := dataAgent(&fakeSystem{files: map[string]string{}}, &out)
	if err := a.startRedfish(t.Context(), nil, false, nil); err == nil || a.redfishDone != nil {
		t.Fatalf("no address: %v", err)
	}
	if !strings.Contains(out.String(), contract.CtldPrefix+"FAILED redfish: no management address") {
		t.Errorf("printed %q", out.String())
	}
	out.Reset()
	a.mgmt = netip.MustParseAddr("127.0.0.1")
	a.cfg.RedfishPort = 0
	if err := a.startRedfish(t.Context(), nil, false, nil); err == nil || a.redfishDone != nil {
		t.Fatalf("no unit record: %v", err)
	}
	// (loadUnitRecord prints its own line about the record.)
	if !strings.Contains(out.String(), contract.CtldPrefix+"unit: ") && !strings.Contains(out.String(), contract.CtldPrefix+"FAILED unit: ") ||
		strings.Contains(out.String(), "redfish https") {
		t.Errorf("printed %q", out.String())
	}
}
