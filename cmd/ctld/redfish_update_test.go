package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/contract"
	rf "github.com/fwbuild/fwbuild/contract/redfish"
)

// updFixture is the Redfish handler of rfFixture with an UpdateService
// over slotWorld's in-memory ESP and variable store; the running payload
// is slot a, version 1.2.0.
type updFixture struct {
	*rfFixture
	w        *slotWorld
	mu       sync.Mutex
	version  string
	rebooted chan struct{}
}

func newUpdFixture(t testing.TB) *updFixture {
	t.Helper()
	f := &updFixture{rfFixture: newRFFixture(t), w: newSlotWorld(t), version: "1.2.0+aaaaaaaa", rebooted: make(chan struct{}, 1)}
	if _, err := f.manager().atBoot(); err != nil {
		t.Fatal(err)
	}
	f.svc.upd = &updateService{owner: f.w.cert, tmpDir: t.TempDir(), fetch: &http.Client{}, base: context.Background(), now: f.clock,
		log:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		reboot: func() error { f.rebooted <- struct{}{}; return nil }, delay: 50 * time.Millisecond,
		slots: func(context.Context) (*slotManager, string, error) {
			m := f.manager()
			st, err := m.state()
			if err != nil {
				return nil, "", err
			}
			entries, err := m.entries()
			if err != nil {
				return nil, "", err
			}
			return m, m.booted(entries, st), nil
		}}
	return f
}

func (f *updFixture) manager() *slotManager {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.w.manager(f.version)
	m.minVersion = "1.1.0"
	return m
}

// snapshot is every byte of the ESP and the variable store.
func (f *updFixture) snapshot() (map[string]string, map[string]string) {
	esp, vars := map[string]string{}, map[string]string{}
	for k, v := range f.w.esp {
		esp[k] = string(v)
	}
	for k, v := range f.w.vars {
		vars[k] = string(v)
	}
	return esp, vars
}

// multipartBody is a push as fwupd and DSP0266's example send it.
func multipartBody(t testing.TB, params string, file []byte) (string, []byte) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	if params != "" {
		pw, _ := mw.CreatePart(map[string][]string{"Content-Disposition": {`form-data; name="UpdateParameters"`}, "Content-Type": {"application/json"}})
		io.WriteString(pw, params)
	}
	if file != nil {
		fw, _ := mw.CreateFormFile("UpdateFile", "update.fwu")
		fw.Write(file)
	}
	mw.Close()
	return mw.FormDataContentType(), b.Bytes()
}

func (f *updFixture) send(t testing.TB, method, path, auth, ctype string, body []byte) rfReq {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ctype)
	if u, p, ok := strings.Cut(auth, ":"); ok {
		req.SetBasicAuth(u, p)
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return rfReq{code: resp.StatusCode, hdr: resp.Header, body: b}
}

func (f *updFixture) push(t *testing.T, auth, params string, art []byte) rfReq {
	t.Helper()
	ct, body := multipartBody(t, params, art)
	return f.send(t, "POST", rf.UpdatePush, auth, ct, body)
}

// wait polls a task monitor until it stops answering 202 and returns the task.
func (f *updFixture) wait(t testing.TB, monitor string) rf.TaskResource {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := f.do(t, "GET", monitor, admin, "")
		var task rf.TaskResource
		if err := json.Unmarshal(r.body, &task); err != nil {
			t.Fatalf("GET %s: %d %s", monitor, r.code, r.body)
		}
		if r.code == 200 {
			return task
		}
		if r.code != 202 || (task.TaskState != rf.TaskNew && task.TaskState != rf.TaskRunning) || time.Now().After(deadline) {
			t.Fatalf("GET %s: %d %s", monitor, r.code, r.body)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func taskText(task rf.TaskResource) string {
	var s []string
	for _, m := range task.Messages {
		s = append(s, m.MessageID+": "+m.Message)
	}
	return strings.Join(s, "\n")
}

func (f *updFixture) inventory(t *testing.T, slot string) rf.SoftwareInventory {
	t.Helper()
	r := f.do(t, "GET", rf.Firmware(rf.SlotID(slot)), "viewer:"+viewerPass, "")
	var inv rf.SoftwareInventory
	if r.code != 200 || json.Unmarshal(r.body, &inv) != nil {
		t.Fatalf("inventory %s: %d %s", slot, r.code, r.body)
	}
	return inv
}

// A pushed artefact is written to the inactive slot, the task completes
// and the inventory shows it pending; after the trial boot confirms it,
// the inventory shows it active and the old slot standing by.
func TestRedfishUpdatePush(t *testing.T) {
	f := newUpdFixture(t)
	root := f.do(t, "GET", rf.Root, "", "").json(t)
	if root["UpdateService"].(map[string]any)["@odata.id"] != rf.UpdateService || root["Tasks"].(map[string]any)["@odata.id"] != rf.TaskService {
		t.Errorf("service root links: %v %v", root["UpdateService"], root["Tasks"])
	}
	us := f.do(t, "GET", rf.UpdateService, "viewer:"+viewerPass, "").json(t)
	if us["MultipartHttpPushUri"] != rf.UpdatePush || us["ServiceEnabled"] != true || us["MaxImageSizeBytes"] != float64(300000*512) ||
		us["Actions"].(map[string]any)["#UpdateService.SimpleUpdate"].(map[string]any)["target"] != rf.SimpleUpdateTarget {
		t.Errorf("UpdateService: %v", us)
	}
	coll := f.do(t, "GET", rf.FirmwareInventory, "viewer:"+viewerPass, "").json(t)
	if coll["Members@odata.count"] != float64(2) {
		t.Errorf("FirmwareInventory: %v", coll)
	}
	if a, b := f.inventory(t, contract.SlotA), f.inventory(t, contract.SlotB); a.Version != "1.0.0" || a.Oem.Fwbuild.Version != "1.0.0+aaaaaaaa" || a.Status.State != "Enabled" ||
		!a.WriteProtected || !a.Updateable || !a.Oem.Fwbuild.Active || !a.Oem.Fwbuild.Running || a.LowestSupportedVersion != "1.1.0" ||
		a.SoftwareID != contract.DefaultUpdateGUID("qemu-q35") || b.Status.State != "Absent" || b.Updateable || b.WriteProtected ||
		b.SoftwareID == a.SoftwareID {
		t.Errorf("inventory before: %+v %+v", a, b)
	}

	art := f.w.artefact(t, "qemu-q35", "1.3.0+bbbbbbbb", []byte("payload 1.3.0"))
	r := f.push(t, "operator:"+opPass, `{"Targets":["/redfish/v1/UpdateService/FirmwareInventory/slot-b"],"@Redfish.OperationApplyTime":"OnReset"}`, art)
	loc := r.hdr.Get("Location")
	if r.code != 202 || !strings.HasPrefix(loc, rf.Tasks+"/") || !strings.HasSuffix(loc, "/Monitor") {
		t.Fatalf("push: %d %q %s", r.code, loc, r.body)
	}
	task := f.wait(t, loc)
	if task.TaskState != rf.TaskCompleted || task.TaskStatus != "OK" || task.PercentComplete != 100 || task.EndTime == "" ||
		!strings.Contains(taskText(task), "Slot b holds version 1.3.0+bbbbbbbb; the next boot tries it once") {
		t.Fatalf("task: %+v", task)
	}
	if g := f.do(t, "GET", task.ODataID, admin, ""); g.code != 200 {
		t.Errorf("GET %s: %d", task.ODataID, g.code)
	}
	if got := string(f.w.esp[contract.SlotFile(contract.SlotB)]); got != "payload 1.3.0" || fmt.Sprint(u16s(f.w.vars["BootNext"])) != "[3841]" {
		t.Fatalf("slot b %q, BootNext %v", got, f.w.vars["BootNext"])
	}
	if b := f.inventory(t, contract.SlotB); b.Version != "1.3.0" || b.Oem.Fwbuild.Version != "1.3.0+bbbbbbbb" || b.Status.State != "Updating" || b.Oem.Fwbuild.State != contract.SlotPending {
		t.Errorf("inventory after push: %+v", b)
	}
	select {
	case <-f.rebooted:
		t.Error("OnReset rebooted the unit")
	default:
	}

	// The trial boot, confirmed.
	f.w.vars.reboot()
	f.mu.Lock()
	f.version = "1.3.0+bbbbbbbb"
	f.mu.Unlock()
	m := f.manager()
	booted, err := m.atBoot()
	if err != nil || m.confirm(booted) != nil {
		t.Fatal(booted, err)
	}
	if a, b := f.inventory(t, contract.SlotA), f.inventory(t, contract.SlotB); b.Status.State != "Enabled" || !b.Oem.Fwbuild.Active ||
		!b.Oem.Fwbuild.Running || !b.Updateable || b.SoftwareID != contract.DefaultUpdateGUID("qemu-q35") || a.Status.State != "StandbySpare" || a.Updateable {
		t.Errorf("inventory after confirmation: a %+v b %+v", a, b)
	}
	var tasks rf.Collection
	json.Unmarshal(f.do(t, "GET", rf.Tasks, admin, "").body, &tasks)
	if tasks.MembersCount != 1 || tasks.Members[0].ID != task.ODataID {
		t.Errorf("Tasks: %+v", tasks)
	}
}

// Every refusal ends its task in Exception with the reason, and leaves the
// ESP and the variable store byte for byte as they were.
func TestRedfishUpdateRefusals(t *testing.T) {
	f := newUpdFixture(t)
	good := f.w.artefact(t, "qemu-q35", "1.3.0+cccccccc", []byte("payload 1.3.0"))
	other := newSlotWorld(t)
	espBefore, varsBefore := f.snapshot()
	f.svc.upd.limit = 4096
	big := f.w.artefact(t, "qemu-q35", "1.3.0+cccccccc", bytes.Repeat([]byte("x"), 5000))
	f.svc.upd.limit = 0
	for _, c := range []struct {
		name   string
		params string
		art    []byte
		limit  int64
		code   int
		want   string
	}{
		{"wrong board", "", f.w.artefact(t, "qemu-q35-host", "1.3.0+cccccccc", []byte("x")), 0, 202, `artefact is for board "qemu-q35-host", this is "qemu-q35"`},
		{"bad signature", "", other.artefact(t, "qemu-q35", "1.3.0+cccccccc", []byte("x")), 0, 202, "signature does not verify with the owner's certificate"},
		{"truncated upload", "", good[:len(good)-5], 0, 202, "truncated"},
		{"too big", "", big, 4096, 413, "the artefact is over 4096 bytes, the size of the ESP its slot is on"},
		{"downgrade", "", f.w.artefact(t, "qemu-q35", "1.1.5+dddddddd", []byte("old")), 0, 202, "older than the running 1.2.0"},
		{"below min_version", `{"Oem":{"fwbuild":{"AllowDowngrade":true}}}`, f.w.artefact(t, "qemu-q35", "1.0.9+dddddddd", []byte("old")), 0, 202,
			"below this board's minimum version 1.1.0 (update.min_version): refused, downgrade or not"},
		{"not an artefact", "", []byte("<html>hello</html>"), 0, 202, "not an fwbuild update artefact"},
		{"no file", `{}`, nil, 0, 400, "no UpdateFile part"},
		{"bad parameters", `{"Targets": 3}`, good, 0, 400, "UpdateParameters part is not valid JSON"},
		{"bad apply time", `{"@Redfish.OperationApplyTime":"AtMaintenanceWindowStart"}`, good, 0, 400, `"AtMaintenanceWindowStart"`},
	} {
		f.svc.upd.limit = c.limit
		r := f.push(t, admin, c.params, c.art)
		loc := r.hdr.Get("Location")
		if r.code != c.code || loc == "" {
			t.Errorf("%s: %d %q %s", c.name, r.code, loc, r.body)
			continue
		}
		task := f.wait(t, loc)
		if task.TaskState != rf.TaskException || task.TaskStatus != "Critical" || !strings.Contains(taskText(task), c.want) {
			t.Errorf("%s: task %s %s:\n%s", c.name, task.TaskState, task.TaskStatus, taskText(task))
		}
		if esp, vars := f.snapshot(); !maps.Equal(esp, espBefore) || !maps.Equal(vars, varsBefore) {
			t.Errorf("%s: the ESP or the variables changed", c.name)
		}
	}
	f.svc.upd.limit = 0

	// A connection cut in the middle of the artefact.
	var seen rf.Collection
	json.Unmarshal(f.do(t, "GET", rf.Tasks, admin, "").body, &seen)
	ct, body := multipartBody(t, "", good)
	conn, err := tls.Dial("tcp", f.srv.Listener.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Basic %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n",
		rf.UpdatePush, basicAuth("admin", adminPass), ct, len(body))
	conn.Write(body[:len(body)/2])
	conn.Close()
	var task rf.TaskResource
	for deadline := time.Now().Add(10 * time.Second); ; {
		var tasks rf.Collection
		json.Unmarshal(f.do(t, "GET", rf.Tasks, admin, "").body, &tasks)
		last := tasks.Members[len(tasks.Members)-1].ID
		if last != seen.Members[len(seen.Members)-1].ID {
			json.Unmarshal(f.do(t, "GET", last, admin, "").body, &task)
		}
		if task.TaskState == rf.TaskException || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if task.TaskState != rf.TaskException || !strings.Contains(taskText(task), "truncated") {
		t.Errorf("cut upload: %s\n%s", task.TaskState, taskText(task))
	}
	if esp, vars := f.snapshot(); !maps.Equal(esp, espBefore) || !maps.Equal(vars, varsBefore) {
		t.Error("cut upload: the ESP or the variables changed")
	}
	// After all that, a good artefact still installs (nothing was left busy).
	if task := f.wait(t, f.push(t, admin, "", good).hdr.Get("Location")); task.TaskState != rf.TaskCompleted {
		t.Errorf("good artefact after the refusals: %s", taskText(task))
	}
}

func basicAuth(user, pass string) string {
	req, _ := http.NewRequest("GET", "/", nil)
	req.SetBasicAuth(user, pass)
	return strings.TrimPrefix(req.Header.Get("Authorization"), "Basic ")
}

// SimpleUpdate fetches ImageURI itself; a 404, an HTML page and a refused
// artefact end the task in Exception; a malformed request gets 400 and no task.
// Immediate reboots the unit once the slot is written.
func TestRedfishSimpleUpdate(t *testing.T) {
	f := newUpdFixture(t)
	art := f.w.artefact(t, "qemu-q35", "1.3.0+cccccccc", []byte("payload 1.3.0"))
	wrong := f.w.artefact(t, "qemu-q35-host", "1.3.0+cccccccc", []byte("x"))
	var gotAuth string
	files := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth = r.Header.Get("Authorization")
		switch r.URL.Path {
		case "/update.fwu":
			w.Write(art)
		case "/wrong.fwu":
			w.Write(wrong)
		case "/page":
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, "<html></html>")
		default:
			http.NotFound(w, r)
		}
	}))
	defer files.Close()
	espBefore, varsBefore := f.snapshot()
	for _, c := range []struct{ uri, want string }{
		{files.URL + "/missing.fwu", "404 Not Found"},
		{files.URL + "/page", "answered an HTML page"},
		{files.URL + "/wrong.fwu", `artefact is for board "qemu-q35-host"`},
	} {
		r := f.do(t, "POST", rf.SimpleUpdateTarget, "operator:"+opPass, `{"ImageURI":"`+c.uri+`","TransferProtocol":"HTTP"}`)
		if r.code != 202 {
			t.Fatalf("%s: %d %s", c.uri, r.code, r.body)
		}
		if task := f.wait(t, r.hdr.Get("Location")); task.TaskState != rf.TaskException || !strings.Contains(taskText(task), c.want) {
			t.Errorf("%s: %s\n%s", c.uri, task.TaskState, taskText(task))
		}
	}
	if esp, vars := f.snapshot(); !maps.Equal(esp, espBefore) || !maps.Equal(vars, varsBefore) {
		t.Error("a refused SimpleUpdate changed the ESP or the variables")
	}
	for _, body := range []string{`{"ImageURI":"ftp://x/y"}`, `{"ImageURI":"` + files.URL + `/u","TransferProtocol":"TFTP"}`, `{}`,
		`{"ImageURI":"` + files.URL + `/u","TransferProtocol":"HTTPS"}`} {
		if r := f.do(t, "POST", rf.SimpleUpdateTarget, admin, body); r.code != 400 || r.hdr.Get("Location") != "" {
			t.Errorf("%s: %d %s", body, r.code, r.body)
		}
	}
	// A bare host/path takes TransferProtocol's scheme.
	bare := strings.TrimPrefix(files.URL, "http://") + "/update.fwu"
	r := f.do(t, "POST", rf.SimpleUpdateTarget, admin, `{"ImageURI":"`+bare+`","TransferProtocol":"HTTP","Username":"u","Password":"p","@Redfish.OperationApplyTime":"Immediate"}`)
	if r.code != 202 {
		t.Fatalf("SimpleUpdate: %d %s", r.code, r.body)
	}
	task := f.wait(t, r.hdr.Get("Location"))
	if task.TaskState != rf.TaskCompleted || !strings.Contains(taskText(task), "the unit reboots in 50ms and tries it once") || string(f.w.esp[contract.SlotFile(contract.SlotB)]) != "payload 1.3.0" {
		t.Fatalf("SimpleUpdate: %+v", task)
	}
	if gotAuth != "Basic "+basicAuth("u", "p") {
		t.Errorf("ImageURI fetched with Authorization %q", gotAuth)
	}
	select {
	case <-f.rebooted:
	case <-time.After(10 * time.Second):
		t.Error("Immediate did not reboot the unit")
	}
}

// Updates need credentials and a role that may change things; reading the
// inventory and tasks needs a login.
func TestRedfishUpdateAccess(t *testing.T) {
	f := newUpdFixture(t)
	art := f.w.artefact(t, "qemu-q35", "1.3.0+cccccccc", []byte("payload 1.3.0"))
	espBefore, _ := f.snapshot()
	for _, p := range []string{rf.UpdateService, rf.FirmwareInventory, rf.Firmware("slot-a"), rf.TaskService, rf.Tasks} {
		if r := f.do(t, "GET", p, "", ""); r.code != 401 {
			t.Errorf("GET %s unauthenticated: %d", p, r.code)
		}
		if r := f.do(t, "GET", p, "viewer:"+viewerPass, ""); r.code != 200 {
			t.Errorf("GET %s as ReadOnly: %d", p, r.code)
		}
	}
	for _, auth := range []string{"", "viewer:" + viewerPass} {
		want := map[string]int{"": 401, "viewer:" + viewerPass: 403}[auth]
		if r := f.push(t, auth, "", art); r.code != want {
			t.Errorf("push as %q: %d, want %d", auth, r.code, want)
		}
		if r := f.do(t, "POST", rf.SimpleUpdateTarget, auth, `{"ImageURI":"http://127.0.0.1:9/x"}`); r.code != want {
			t.Errorf("SimpleUpdate as %q: %d, want %d", auth, r.code, want)
		}
	}
	if esp, _ := f.snapshot(); !maps.Equal(esp, espBefore) {
		t.Error("a refused request changed the ESP")
	}
	if r := f.do(t, "GET", rf.UpdatePush, admin, ""); r.code != 405 {
		t.Errorf("GET the push URI: %d", r.code)
	}
	if r := f.do(t, "GET", rf.Task("99"), admin, ""); r.code != 404 {
		t.Errorf("GET an unknown task: %d", r.code)
	}
	// Without ESP slots (a flash boot) the service says so and takes nothing.
	f.svc.upd.slots = func(context.Context) (*slotManager, string, error) { return nil, "", nil }
	if us := f.do(t, "GET", rf.UpdateService, admin, "").json(t); us["ServiceEnabled"] != false || us["MultipartHttpPushUri"] != nil {
		t.Errorf("UpdateService of a flash boot: %v", us)
	}
	if r := f.push(t, admin, "", art); r.code != 400 || !strings.Contains(string(r.body), "did not come from the ESP") {
		t.Errorf("push on a flash boot: %d %s", r.code, r.body)
	}
}

// discardESP is an ESP whose writes are read to the end and dropped, so
// that a benchmark measures the service, not the fake's memory.
type discardESP struct{ memESP }

func (d discardESP) write(name string, r io.Reader) error {
	if name == contract.SlotsFile {
		return d.memESP.write(name, r)
	}
	_, err := io.Copy(io.Discard, r)
	return err
}

// BenchmarkRedfishUpdatePush pushes a 24 MiB artefact (about a qemu-q35
// release's size) over TLS on 127.0.0.1 and waits for its task: the
// upload is streamed to a temporary file, so the bytes allocated per push
// stay far below the artefact's size.
func BenchmarkRedfishUpdatePush(b *testing.B) {
	f := newUpdFixture(b)
	esp := discardESP{f.w.esp}
	f.svc.upd.slots = func(context.Context) (*slotManager, string, error) {
		m := f.manager()
		m.esp = esp
		return m, contract.SlotA, nil
	}
	art := f.w.artefact(b, "qemu-q35", "1.3.0+cccccccc", bytes.Repeat([]byte("payload!"), 3<<20))
	ct, body := multipartBody(b, "", art)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		r := f.send(b, "POST", rf.UpdatePush, admin, ct, body)
		if r.code != 202 {
			b.Fatalf("push: %d %s", r.code, r.body)
		}
		if task := f.wait(b, r.hdr.Get("Location")); task.TaskState != rf.TaskCompleted {
			b.Fatal(taskText(task))
		}
	}
}
