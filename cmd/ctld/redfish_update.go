package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fwbuild/fwbuild/contract"
	rf "github.com/fwbuild/fwbuild/contract/redfish"
)

// Redfish's UpdateService over the ESP's A/B slots (slots.go): an update
// artefact pushed as multipart/form-data (MultipartHttpPushUri, as fwupd's
// redfish plugin and DSP0266 13.7 send it) or fetched by SimpleUpdate from
// an http(s) ImageURI is streamed to a temporary file (never held in
// memory: it is tens of MB), then slotManager.install checks the owner's
// signature, the board, the version and the minimum before it writes the
// inactive slot and sets BootNext. Each update is a task a client polls;
// a refused one ends in Exception with the reason and leaves both slots as
// they were (install writes nothing before the checks, and the slot file
// through a temporary file and a rename).

// maxTasks bounds the tasks kept; the oldest finished one makes room.
const maxTasks = 16

// uploadTimeout bounds one upload's body: the server's ReadTimeout is for
// small requests, an artefact over a slow management link takes minutes.
const uploadTimeout = 15 * time.Minute

// updateService is the UpdateService's state.
type updateService struct {
	// slots is the ESP's slot manager (waiting for the boot's record of
	// itself) and the slot this boot runs; nil without an error when this
	// boot did not come from the ESP.
	slots func(ctx context.Context) (*slotManager, string, error)
	// owner is the certificate artefacts must be signed by (nil: an
	// unsigned build, whose install refuses every artefact).
	owner *x509.Certificate
	// tmpDir holds uploads while they are checked (the data disk, or the
	// control domain's RAM).
	tmpDir string
	// limit overrides the size limit (the ESP partition's size) in tests.
	limit int64
	// fetch is SimpleUpdate's HTTP client.
	fetch *http.Client
	// reboot restarts the unit (ApplyTime Immediate), delay after the task ended.
	reboot func() error
	delay  time.Duration
	base   context.Context
	now    func() time.Time
	log    *slog.Logger

	mu      sync.Mutex
	tasks   []*rfTask
	next    int
	running string // the task id of the update in progress
}

type rfTask struct {
	id, name     string
	state        string
	status       string
	start, end   time.Time
	percent      int
	msgs         []rf.Message
	applyOnReset bool
}

func (u *updateService) newTask(name string) (*rfTask, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.running != "" {
		return nil, fmt.Errorf("update task %s is still running: wait for it to end (%s)", u.running, rf.Task(u.running))
	}
	if len(u.tasks) >= maxTasks {
		u.tasks = u.tasks[1:]
	}
	u.next++
	t := &rfTask{id: strconv.Itoa(u.next), name: name, state: rf.TaskNew, status: "OK", start: u.now()}
	u.tasks = append(u.tasks, t)
	u.running = t.id
	return t, nil
}

// set changes a task's state under the lock.
func (u *updateService) set(t *rfTask, state string, percent int, msgs ...rf.Message) {
	u.mu.Lock()
	defer u.mu.Unlock()
	t.state, t.percent = state, percent
	t.msgs = append(t.msgs, msgs...)
	switch state {
	case rf.TaskCompleted, rf.TaskException:
		t.end = u.now()
		if state == rf.TaskException {
			t.status = "Critical"
		}
		if u.running == t.id {
			u.running = ""
		}
	}
}

// fail ends a task in Exception with the reason.
func (u *updateService) fail(t *rfTask, key string, err error) {
	u.log.Info("redfish: update refused", "task", t.id, "why", err)
	u.set(t, rf.TaskException, 100, rf.UpdateMessage(key, "Critical", err.Error()))
}

func (u *updateService) task(id string) (rf.TaskResource, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, t := range u.tasks {
		if t.id == id {
			return u.resourceLocked(t), true
		}
	}
	return rf.TaskResource{}, false
}

func (u *updateService) resourceLocked(t *rfTask) rf.TaskResource {
	r := rf.TaskResource{ODataID: rf.Task(t.id), ODataType: "#Task.v1_7_1.Task", ID: t.id, Name: t.name,
		TaskState: t.state, TaskStatus: t.status, StartTime: t.start.UTC().Format(time.RFC3339),
		PercentComplete: t.percent, TaskMonitor: rf.TaskMonitor(t.id), Messages: slices.Clone(t.msgs)}
	if r.Messages == nil {
		r.Messages = []rf.Message{}
	}
	if !t.end.IsZero() {
		r.EndTime = t.end.UTC().Format(time.RFC3339)
	}
	return r
}

// limitFor is the largest artefact accepted: the ESP partition's size
// (nothing larger can fit a slot).
func (u *updateService) limitFor(m *slotManager) int64 {
	if u.limit > 0 {
		return u.limit
	}
	return int64(m.geo.Size) * 512
}

// routeUpdate serves UpdateService and TaskService paths; false when p is
// neither.
func (s *redfishService) routeUpdate(w http.ResponseWriter, r *http.Request, p string, who principal) bool {
	u := s.upd
	switch {
	case p == rf.UpdateService:
		s.only(w, r, "GET", func() { s.updateServiceResource(w, r) })
	case p == rf.FirmwareInventory:
		s.only(w, r, "GET", func() {
			var ids []string
			if m, _, err := u.manager(r.Context()); err == nil && m != nil {
				ids = []string{rf.Firmware(rf.SlotID(contract.SlotA)), rf.Firmware(rf.SlotID(contract.SlotB))}
			}
			writeJSON(w, http.StatusOK, collection(rf.FirmwareInventory, "#SoftwareInventoryCollection.SoftwareInventoryCollection", "Firmware Inventory", ids))
		})
	case strings.HasPrefix(p, rf.FirmwareInventory+"/"):
		s.only(w, r, "GET", func() { s.inventoryMember(w, r, strings.TrimPrefix(p, rf.FirmwareInventory+"/")) })
	case p == rf.UpdatePush:
		if r.Method != http.MethodPost {
			notAllowed(w, r, "POST")
			return true
		}
		s.push(w, r, who)
	case p == rf.SimpleUpdateTarget:
		if r.Method != http.MethodPost {
			notAllowed(w, r, "POST")
			return true
		}
		s.simpleUpdate(w, r, who)
	case p == rf.TaskService:
		s.only(w, r, "GET", func() {
			writeJSON(w, http.StatusOK, rf.TaskServiceResource{ODataID: rf.TaskService, ODataType: "#TaskService.v1_2_0.TaskService",
				ID: "TaskService", Name: "Task Service", ServiceEnabled: true, CompletedTaskOverWritePolicy: "Oldest",
				Tasks: rf.ODataID{ID: rf.Tasks}})
		})
	case p == rf.Tasks:
		s.only(w, r, "GET", func() {
			var ids []string
			if u != nil {
				u.mu.Lock()
				for _, t := range u.tasks {
					ids = append(ids, rf.Task(t.id))
				}
				u.mu.Unlock()
			}
			writeJSON(w, http.StatusOK, collection(rf.Tasks, "#TaskCollection.TaskCollection", "Tasks", ids))
		})
	case strings.HasPrefix(p, rf.Tasks+"/"):
		s.only(w, r, "GET", func() { s.taskOrMonitor(w, strings.TrimPrefix(p, rf.Tasks+"/")) })
	default:
		return false
	}
	return true
}

// manager is the slot manager, or nil on a boot that did not come from
// the ESP (or a service without updates).
func (u *updateService) manager(ctx context.Context) (*slotManager, string, error) {
	if u == nil || u.slots == nil {
		return nil, "", nil
	}
	return u.slots(ctx)
}

func (s *redfishService) updateServiceResource(w http.ResponseWriter, r *http.Request) {
	res := rf.UpdateServiceResource{ODataID: rf.UpdateService, ODataType: "#UpdateService.v1_11_0.UpdateService", ID: "UpdateService",
		Name: "Update Service", FirmwareInventory: rf.ODataID{ID: rf.FirmwareInventory},
		Actions: rf.UpdateActions{SimpleUpdate: rf.SimpleUpdateAction{Target: rf.SimpleUpdateTarget, Protocols: []string{rf.ProtocolHTTP, rf.ProtocolHTTPS}}},
		Status:  rf.Status{State: "Disabled", Health: "OK"}}
	m, _, err := s.upd.manager(r.Context())
	switch {
	case err != nil:
		res.Status.Health, res.Description = "Critical", err.Error()
	case m == nil:
		res.Description = "This boot did not come from the ESP (fwbuild.boot=esp): its flash payload is updated with flashrom."
	default:
		res.ServiceEnabled, res.Status.State = true, "Enabled"
		res.MultipartHttpPushUri, res.MaxImageSizeBytes = rf.UpdatePush, s.upd.limitFor(m)
		res.Description = "Signed update artefacts (update.fwu) go into the ESP slot this boot does not run; the next boot tries it once."
		if s.upd.owner == nil {
			res.Status.Health = "Warning"
			res.Description = "This payload carries no owner certificate (an unsigned build): every update is refused."
		}
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *redfishService) inventoryMember(w http.ResponseWriter, r *http.Request, id string) {
	m, running, err := s.upd.manager(r.Context())
	var slot string
	for _, sl := range []string{contract.SlotA, contract.SlotB} {
		if id == rf.SlotID(sl) {
			slot = sl
		}
	}
	if err != nil || m == nil || slot == "" {
		notFound(w, "SoftwareInventory", id)
		return
	}
	st, err := m.state()
	if err != nil {
		writeError(w, http.StatusInternalServerError, rf.NewError(rf.MsgGeneralError, err.Error(), "See the control domain's console."))
		return
	}
	guid := m.guid
	if guid == "" {
		guid = contract.DefaultUpdateGUID(m.board)
	}
	writeJSON(w, http.StatusOK, slotInventory(st, slot, running, m.minVersion, guid))
}

// slotInventory is one slot's FirmwareInventory member. The slot BootOrder
// starts with is Enabled; the other is StandbySpare when it holds a
// confirmed payload, Updating while it waits for its one try, Starting
// while it is being tried, UnavailableOffline (Critical) once it failed,
// and Absent when empty.
//
// The slot this boot runs stands for the payload: it is the Updateable one
// (an update goes to the other slot, so it is also WriteProtected) and
// carries the board's device GUID as SoftwareId, the GUID its fwupd
// cabinet provides. fwupd's redfish plugin matches a cabinet to members by
// SoftwareId and compares versions with the member's: it must see the
// running version, and only once (it stops at the first matching member
// that is not updateable). The other slot's SoftwareId is not a GUID.
func slotInventory(st contract.Slots, slot, running, floor, guid string) rf.SoftwareInventory {
	info := st.Slots[slot]
	inv := rf.SoftwareInventory{ODataID: rf.Firmware(rf.SlotID(slot)), ODataType: "#SoftwareInventory.v1_10_0.SoftwareInventory",
		ID: rf.SlotID(slot), Name: "Control-domain payload, ESP slot " + slot, Version: triplet(info.Version), SoftwareID: "fwbuild-standby-slot",
		Manufacturer: "fwbuild", Updateable: slot == running, WriteProtected: slot == running, LowestSupportedVersion: floor,
		Oem: &rf.InventoryOem{Fwbuild: rf.SlotView{Slot: slot, Version: info.Version, State: info.State, Active: st.Active == slot, Running: running == slot,
			SHA256: info.SHA256, Size: info.Size, Note: info.Note}}}
	if slot == running {
		inv.SoftwareID = guid
	}
	inv.Status = rf.Status{State: "Enabled", Health: "OK"}
	switch {
	case st.Active == slot:
	case info.State == contract.SlotConfirmed:
		inv.Status.State = "StandbySpare"
	case info.State == contract.SlotPending:
		inv.Status.State = "Updating"
	case info.State == contract.SlotTrying:
		inv.Status.State = "Starting"
	case info.State == contract.SlotFailed:
		inv.Status = rf.Status{State: "UnavailableOffline", Health: "Critical"}
	default:
		inv.Status.State = "Absent"
	}
	return inv
}

// triplet is a version's MAJOR.MINOR.PATCH ("" stays "").
func triplet(v string) string {
	core, _, _ := strings.Cut(v, "+")
	return core
}

// taskOrMonitor serves Tasks/<id> and Tasks/<id>/Monitor (DSP0266's task
// monitor, the 202's Location) alike: 202 with the task while it runs,
// then 200. The task itself answers 202 too (as iDRAC's do) because sushy
// polls the task's @odata.id from the 202's body rather than Location, and
// stops at the first answer that is not 202.
func (s *redfishService) taskOrMonitor(w http.ResponseWriter, rest string) {
	id, _ := strings.CutSuffix(rest, "/Monitor")
	if s.upd == nil || strings.Contains(id, "/") {
		notFound(w, "Task", rest)
		return
	}
	t, ok := s.upd.task(id)
	if !ok {
		notFound(w, "Task", id)
		return
	}
	code := http.StatusOK
	if t.TaskState == rf.TaskNew || t.TaskState == rf.TaskRunning {
		w.Header().Set("Location", rf.TaskMonitor(id))
		w.Header().Set("Retry-After", "1")
		code = http.StatusAccepted
	}
	writeJSON(w, code, t)
}

// accepted answers 202 with the task and its monitor in Location.
func (u *updateService) accepted(w http.ResponseWriter, t *rfTask) {
	u.mu.Lock()
	res := u.resourceLocked(t)
	u.mu.Unlock()
	w.Header().Set("Location", rf.TaskMonitor(t.id))
	writeJSON(w, http.StatusAccepted, res)
}

// refuse ends a task and answers with an error that names it.
func (u *updateService) refuse(w http.ResponseWriter, t *rfTask, code int, key string, err error) {
	u.fail(t, key, err)
	w.Header().Set("Location", rf.TaskMonitor(t.id))
	writeError(w, code, rf.NewError(rf.MsgGeneralError, err.Error(), "See "+rf.Task(t.id)+"; correct the request and resubmit it."))
}

// unavailable answers the requests an update cannot be started for: no
// slots on this boot, or one running.
func (s *redfishService) updateTarget(w http.ResponseWriter, r *http.Request) (*slotManager, bool) {
	m, _, err := s.upd.manager(r.Context())
	switch {
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, rf.NewError(rf.MsgServiceTemporarilyUnavailable, "The ESP slots cannot be read: "+err.Error(),
			"See the control domain's console (the FAILED slots line)."))
		return nil, false
	case m == nil:
		writeError(w, http.StatusBadRequest, rf.NewError(rf.MsgActionNotSupported,
			"This boot did not come from the ESP (fwbuild.boot=esp): there is no inactive ESP slot to write; the flash payload is updated with flashrom.",
			"Boot the unit from its ESP to update it through Redfish.", "UpdateService"))
		return nil, false
	}
	return m, true
}

// push is MultipartHttpPushUri.
func (s *redfishService) push(w http.ResponseWriter, r *http.Request, who principal) {
	u := s.upd
	m, ok := s.updateTarget(w, r)
	if !ok {
		return
	}
	mr, err := r.MultipartReader()
	if err != nil {
		badRequest(w, rf.MsgPropertyValueFormatError, "The request is not multipart/form-data ("+err.Error()+").",
			"Send multipart/form-data with an UpdateParameters part (JSON) and an UpdateFile part (the artefact).", "Content-Type")
		return
	}
	t, err := u.newTask("Update pushed by " + who.user)
	if err != nil {
		writeError(w, http.StatusConflict, rf.NewError(rf.MsgResourceInUse, err.Error(), "Wait for the running update's task to end."))
		return
	}
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Now().Add(uploadTimeout))
	limit := u.limitFor(m)
	var params rf.UpdateParameters
	var file *os.File
	var size int64
	cleanup := func() {
		if file != nil {
			file.Close()
			os.Remove(file.Name())
		}
	}
	u.set(t, rf.TaskRunning, 0, rf.UpdateMessage(rf.MsgUpdateInProgress, "OK", "Receiving the update artefact."))
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			cleanup()
			u.refuse(w, t, http.StatusBadRequest, rf.MsgTransferFailed, fmt.Errorf("update: upload ended after %d bytes of the artefact: truncated (%v)", size, err))
			return
		}
		switch part.FormName() {
		case rf.PartUpdateParameters:
			dec := json.NewDecoder(io.LimitReader(part, maxBody))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&params); err != nil {
				cleanup()
				u.refuse(w, t, http.StatusBadRequest, rf.MsgTransferFailed, fmt.Errorf("update: the %s part is not valid JSON: %v", rf.PartUpdateParameters, err))
				return
			}
		case rf.PartUpdateFile:
			if file != nil {
				cleanup()
				u.refuse(w, t, http.StatusBadRequest, rf.MsgTransferFailed, fmt.Errorf("update: more than one %s part: send one artefact", rf.PartUpdateFile))
				return
			}
			file, size, err = u.spool(part, limit)
			if err != nil {
				code := http.StatusBadRequest
				if errors.Is(err, errTooBig) {
					code = http.StatusRequestEntityTooLarge
				}
				u.refuse(w, t, code, rf.MsgTransferFailed, err)
				return
			}
		default:
			// OEM parts (DSP0266 allows them) are read past.
			io.Copy(io.Discard, part)
		}
		part.Close()
	}
	if file == nil {
		u.refuse(w, t, http.StatusBadRequest, rf.MsgTransferFailed, fmt.Errorf("update: no %s part in the upload", rf.PartUpdateFile))
		return
	}
	apply, err := applyTime(params.ApplyTime)
	if err != nil {
		cleanup()
		u.refuse(w, t, http.StatusBadRequest, rf.MsgTransferFailed, err)
		return
	}
	downgrade := params.Oem != nil && params.Oem.Fwbuild != nil && params.Oem.Fwbuild.AllowDowngrade
	u.log.Info("redfish: update pushed", "task", t.id, "user", who.user, "bytes", size, "apply", apply)
	// The install runs after the answer: writing a slot on FAT over USB
	// takes longer than a client waits for a response.
	go u.install(t, m, file, size, downgrade, apply)
	u.accepted(w, t)
}

// simpleUpdate is the SimpleUpdate action: ctld fetches ImageURI itself.
func (s *redfishService) simpleUpdate(w http.ResponseWriter, r *http.Request, who principal) {
	u := s.upd
	m, ok := s.updateTarget(w, r)
	if !ok {
		return
	}
	var req rf.SimpleUpdate
	if !decodeBody(w, r, &req) {
		return
	}
	src, err := imageURL(req.ImageURI, req.TransferProtocol)
	if err != nil {
		badRequest(w, rf.MsgPropertyValueFormatError, err.Error(),
			"Give ImageURI as an http:// or https:// URL of the update artefact (TransferProtocol HTTP or HTTPS).", req.ImageURI, "ImageURI")
		return
	}
	apply, err := applyTime(req.ApplyTime)
	if err != nil {
		badRequest(w, rf.MsgPropertyValueNotInList, err.Error(), "Use Immediate or OnReset.", req.ApplyTime, "@Redfish.OperationApplyTime")
		return
	}
	t, err := u.newTask("SimpleUpdate from " + src.Redacted() + " by " + who.user)
	if err != nil {
		writeError(w, http.StatusConflict, rf.NewError(rf.MsgResourceInUse, err.Error(), "Wait for the running update's task to end."))
		return
	}
	downgrade := req.Oem != nil && req.Oem.Fwbuild != nil && req.Oem.Fwbuild.AllowDowngrade
	u.log.Info("redfish: SimpleUpdate", "task", t.id, "user", who.user, "uri", src.Redacted(), "apply", apply)
	go func() {
		u.set(t, rf.TaskRunning, 0, rf.UpdateMessage(rf.MsgUpdateInProgress, "OK", "Downloading "+src.Redacted()+"."))
		file, size, err := u.download(src, req.Username, req.Password, u.limitFor(m))
		if err != nil {
			u.fail(t, rf.MsgTransferFailed, err)
			return
		}
		u.install(t, m, file, size, downgrade, apply)
	}()
	u.accepted(w, t)
}

// imageURL checks SimpleUpdate's ImageURI: an http(s) URL, or a bare
// host/path that TransferProtocol gives the scheme of (DSP0266 allows both).
func imageURL(uri, proto string) (*url.URL, error) {
	if uri == "" {
		return nil, errors.New("ImageURI is missing")
	}
	proto = strings.ToUpper(proto)
	if proto != "" && proto != rf.ProtocolHTTP && proto != rf.ProtocolHTTPS {
		return nil, fmt.Errorf("TransferProtocol %q is not supported: use HTTP or HTTPS", proto)
	}
	if !strings.Contains(uri, "://") && proto != "" {
		uri = strings.ToLower(proto) + "://" + uri
	}
	src, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("ImageURI %q: %v", uri, err)
	}
	if src.Scheme != "http" && src.Scheme != "https" || src.Host == "" {
		return nil, fmt.Errorf("ImageURI %q is not an http:// or https:// URL", uri)
	}
	if proto != "" && !strings.EqualFold(src.Scheme, proto) {
		return nil, fmt.Errorf("ImageURI %q does not match TransferProtocol %s", uri, proto)
	}
	return src, nil
}

func applyTime(v string) (string, error) {
	switch v {
	case "", rf.ApplyOnReset:
		return rf.ApplyOnReset, nil
	case rf.ApplyImmediate:
		return rf.ApplyImmediate, nil
	}
	return "", fmt.Errorf("update: @Redfish.OperationApplyTime %q: ctld applies an update Immediate (it reboots the unit) or OnReset", v)
}

var errTooBig = errors.New("too big")

// spool copies an artefact to a temporary file, up to limit bytes.
func (u *updateService) spool(r io.Reader, limit int64) (*os.File, int64, error) {
	f, err := os.CreateTemp(u.tmpDir, "update-*.fwu")
	if err != nil {
		return nil, 0, fmt.Errorf("update: temporary file: %w", err)
	}
	n, err := io.Copy(f, io.LimitReader(r, limit+1))
	if err == nil && n > limit {
		err = fmt.Errorf("update: the artefact is over %d bytes, the size of the ESP its slot is on: refused (%w)", limit, errTooBig)
	} else if err != nil {
		err = fmt.Errorf("update: upload ended after %d bytes of the artefact: truncated (%v)", n, err)
	}
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, 0, err
	}
	return f, n, nil
}

// download fetches SimpleUpdate's image into a temporary file.
func (u *updateService) download(src *url.URL, user, pass string, limit int64) (*os.File, int64, error) {
	ctx, cancel := context.WithTimeout(u.base, uploadTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src.String(), nil)
	if err != nil {
		return nil, 0, fmt.Errorf("update: %w", err)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := u.fetch.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("update: GET %s: %w", src.Redacted(), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("update: GET %s: %s", src.Redacted(), resp.Status)
	}
	if resp.ContentLength > limit {
		return nil, 0, fmt.Errorf("update: %s is %d bytes, over %d, the size of the ESP its slot is on: refused (%w)", src.Redacted(), resp.ContentLength, limit, errTooBig)
	}
	if ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); strings.HasPrefix(ct, "text/html") {
		return nil, 0, fmt.Errorf("update: %s answered an HTML page, not an update artefact", src.Redacted())
	}
	return u.spool(resp.Body, limit)
}

// install writes a spooled artefact into the inactive slot and ends the
// task; Immediate then reboots the unit.
func (u *updateService) install(t *rfTask, m *slotManager, f *os.File, size int64, downgrade bool, apply string) {
	defer func() {
		f.Close()
		os.Remove(f.Name())
	}()
	u.set(t, rf.TaskRunning, 50, rf.UpdateMessage(rf.MsgUpdateInProgress, "OK", fmt.Sprintf("Checking and writing the %d-byte artefact.", size)))
	slot, err := m.install(f, size, u.owner, downgrade)
	if err != nil {
		u.fail(t, rf.MsgVerificationFailed, err)
		return
	}
	st, _ := m.state()
	ver := st.Slots[slot].Version
	// Base's ResetRequired names the reset that activates the slot: fwupd's
	// redfish plugin takes it as "needs reboot" and then does not expect
	// the inventory's version to have changed already (it fails the
	// install otherwise; Update's AwaitToActivate it takes as an error).
	reset := rf.Message{ODataType: "#Message.v1_1_2.Message", MessageID: rf.MessageID(rf.MsgResetRequired),
		Message:     fmt.Sprintf("In order to complete the operation, a component reset is required with the Reset action URI '%s' and ResetType '%s'.", rf.ResetTarget(rf.HostID), rf.ResetForceRestart),
		MessageArgs: []string{rf.ResetTarget(rf.HostID), rf.ResetForceRestart}, MessageSeverity: "OK", Severity: "OK"}
	if apply == rf.ApplyImmediate {
		u.set(t, rf.TaskCompleted, 100, rf.UpdateMessage(rf.MsgUpdateSuccessful, "OK",
			fmt.Sprintf("Slot %s holds version %s; the unit reboots in %s and tries it once.", slot, ver, u.delay), rf.SlotID(slot), ver), reset)
		if u.reboot != nil {
			go func() {
				time.Sleep(u.delay)
				if err := u.reboot(); err != nil {
					u.log.Warn("redfish: reboot after update", "err", err)
				}
			}()
		}
		return
	}
	u.set(t, rf.TaskCompleted, 100, rf.UpdateMessage(rf.MsgUpdateSuccessful, "OK",
		fmt.Sprintf("Slot %s holds version %s; the next boot tries it once (reset the unit to apply it).", slot, ver), rf.SlotID(slot), ver), reset)
}

// rebootDelay is how long Immediate waits before it reboots the unit: a
// client polling the task once a second (sushy, fwupd) reads it completed.
const rebootDelay = 5 * time.Second

// updateService is the running control domain's UpdateService: the slots
// slotsAtBoot opened (waiting for them), the owner's certificate, uploads
// spooled on the data disk when there is one (the control domain's RAM
// otherwise).
func (a *agent) updateService(ctx context.Context, dataOK bool, reboot func() error, log *slog.Logger) *updateService {
	u := &updateService{tmpDir: os.TempDir(), reboot: reboot, delay: rebootDelay, base: ctx, now: time.Now, log: log,
		// No proxy: the control domain has no environment to take one from.
		fetch: &http.Client{Transport: &http.Transport{TLSHandshakeTimeout: 30 * time.Second, ResponseHeaderTimeout: time.Minute}}}
	if dataOK {
		dir := contract.DataMount + "/tmp"
		if err := os.MkdirAll(dir, 0o700); err == nil {
			u.tmpDir = dir
			// An upload a reset cut short is not resumed: its file goes.
			old, _ := filepath.Glob(filepath.Join(dir, "update-*.fwu"))
			for _, p := range old {
				os.Remove(p)
			}
		}
	}
	if a.sys.exists(contract.OwnerCertificate) {
		cert, err := a.ownerCert()
		if err != nil {
			a.say(contract.Failed{Step: "update", Reason: err.Error()})
		}
		u.owner = cert
	}
	u.slots = func(ctx context.Context) (*slotManager, string, error) {
		if a.slotsReady == nil {
			return nil, "", nil
		}
		select {
		case <-a.slotsReady:
		case <-ctx.Done():
			return nil, "", ctx.Err()
		}
		if a.slots == nil && a.bootPath() == contract.BootESP {
			return nil, "", errors.New("the ESP's slots could not be opened at boot (see the FAILED slots line)")
		}
		return a.slots, a.booted, nil
	}
	return u
}
