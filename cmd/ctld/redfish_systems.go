package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/fwbuild/fwbuild/contract"
	rf "github.com/fwbuild/fwbuild/contract/redfish"
)

// Systems: the host (Systems/host, SystemType Physical) and each guest as a
// ComputerSystem (SystemType Virtual) whose PowerState is Xen's (xl
// list). Guests are the definitions on the data disk (contract.
// DataGuestConfig), where the profile's guests are seeded at boot and the
// API creates new ones; without a data disk, the profile's guests from the
// initramfs, which the API can start and stop but not create or delete.

// vmManager is the Redfish service's view of Xen and the data disk.
type vmManager struct {
	a *agent
	// root prefixes every data-disk path (tests); "" in the control domain.
	root   string
	dataOK bool   // the data disk is mounted
	bridge string // the bridge VMs' NICs join (the guest bridge, else the management bridge); "" for none
	// rebootHost restarts the whole unit (the host's ForceRestart).
	rebootHost func() error
	client     *http.Client // virtual media downloads
	// maxMedia bounds a virtual media download (0: defaultMaxMedia): a
	// URL that serves more is refused before it fills the data disk.
	maxMedia int64
	// base is the service's context: consoles forwarded for the VMs it
	// starts end with it.
	base context.Context

	mu sync.Mutex // one change at a time: xl create/destroy, files
	// consoles are the forwarded consoles of the VMs the service
	// started, as the guest helper forwards the autostart guests'.
	consoles map[string]io.Closer
}

// vmInfo is one guest as Redfish shows it.
type vmInfo struct {
	guest
	MemMiB, VCPUs int
	OnData        bool
	Running       bool
	DomID         int
	CD            string // the inserted media's URL, "" when empty
}

func (m *vmManager) xenVersion(ctx context.Context) string {
	st, err := m.a.status(ctx)
	if err != nil {
		return ""
	}
	return "Xen " + st.Version
}

// readConfig reads a guest's xl config from the data disk or the initramfs.
func (m *vmManager) readConfig(g guest, onData bool) ([]byte, error) {
	if onData {
		return os.ReadFile(g.Config)
	}
	return m.a.sys.readFile(g.Config)
}

// defined lists the VMs' definitions (the data disk's, else the
// profile's), without asking Xen about them.
func (m *vmManager) defined() ([]guest, error) {
	if m.dataOK {
		return m.a.dataGuests(m.root)
	}
	gs, _, err := m.a.findGuests()
	return gs, err
}

// list returns every guest with its power state, by name.
func (m *vmManager) list(ctx context.Context) ([]vmInfo, error) {
	gs, err := m.defined()
	if err != nil {
		return nil, err
	}
	out, err := m.a.xl(ctx, "list")
	if err != nil {
		return nil, err
	}
	doms, err := parseXLList(out)
	if err != nil {
		return nil, fmt.Errorf("xl list: %w", err)
	}
	live := map[string]domain{}
	for _, d := range doms {
		if d.ID != 0 && stoppedState(d.State) == "" {
			live[d.Name] = d
		}
	}
	var vms []vmInfo
	for _, g := range gs {
		v := vmInfo{guest: g, OnData: m.dataOK, VCPUs: 1}
		if b, err := m.readConfig(g, m.dataOK); err == nil {
			v.MemMiB, _ = contract.ParseXLInt(b, "memory")
			if n, ok := contract.ParseXLInt(b, "vcpus"); ok {
				v.VCPUs = n
			}
		}
		if d, ok := live[g.Name]; ok {
			v.Running, v.DomID = true, d.ID
		}
		if m.dataOK {
			if b, err := os.ReadFile(m.mediaState(g.Name)); err == nil {
				var st mediaState
				if json.Unmarshal(b, &st) == nil {
					v.CD = st.Image
				}
			}
		}
		vms = append(vms, v)
	}
	return vms, nil
}

func (m *vmManager) find(ctx context.Context, name string) (vmInfo, bool, error) {
	vms, err := m.list(ctx)
	if err != nil {
		return vmInfo{}, false, err
	}
	for _, v := range vms {
		if v.Name == name {
			return v, true, nil
		}
	}
	return vmInfo{}, false, nil
}

// reset does a ResetType to a guest. On of a running guest and an off of
// a stopped one change nothing (and succeed, as Redfish's services do).
func (m *vmManager) reset(ctx context.Context, v vmInfo, typ string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	create := func() error {
		if err := m.a.xlCreate(ctx, v.Name, v.Config); err != nil {
			return err
		}
		m.started(v)
		return nil
	}
	destroy := func() error {
		_, err := m.a.xl(ctx, "destroy", v.Name)
		m.detach(v.Name)
		return err
	}
	switch typ {
	case rf.ResetOn:
		if v.Running {
			return nil
		}
		return create()
	case rf.ResetForceOff:
		if !v.Running {
			return nil
		}
		return destroy()
	case rf.ResetGracefulShutdown:
		if !v.Running {
			return nil
		}
		_, err := m.a.xl(ctx, "shutdown", v.Name)
		return err
	case rf.ResetForceRestart:
		if v.Running {
			if err := destroy(); err != nil {
				return err
			}
		}
		return create()
	case rf.ResetGracefulRestart:
		if !v.Running {
			return create()
		}
		_, err := m.a.xl(ctx, "reboot", v.Name)
		return err
	}
	return fmt.Errorf("reset type %q", typ)
}

// started forwards a VM's console to ctld's (its lines prefixed with its
// name, as an autostart guest's) and prints its running line, so the
// console shows what the API started.
func (m *vmManager) started(v vmInfo) {
	m.detach(v.Name)
	// The console lives as long as the service, not the request.
	if r, err := m.a.run.stream(m.ctx(), m.a.bin("xl"), "console", v.Name); err != nil {
		m.a.say(contract.GuestConsoleLost{Name: v.Name, Reason: err.Error()})
	} else {
		if m.consoles == nil {
			m.consoles = map[string]io.Closer{}
		}
		m.consoles[v.Name] = r
		go func() {
			defer r.Close()
			m.a.forwardConsole(v.Name, r)
		}()
	}
	if id, err := m.a.guestID(context.Background(), v.Name); err == nil {
		m.a.say(contract.GuestRunning{Name: v.Name, DomID: id, Type: v.Type})
	}
}

// detach stops forwarding a VM's console (xl console may outlive its
// domain).
func (m *vmManager) detach(name string) {
	if c := m.consoles[name]; c != nil {
		c.Close()
		delete(m.consoles, name)
	}
}

func (m *vmManager) ctx() context.Context {
	if m.base != nil {
		return m.base
	}
	return context.Background()
}

// systemJSON is a guest's ComputerSystem.
func systemJSON(v vmInfo, dataOK bool) rf.ComputerSystem {
	cs := rf.ComputerSystem{ODataID: rf.System(v.Name), ODataType: "#ComputerSystem.v1_20_0.ComputerSystem", ID: v.Name, Name: v.Name,
		SystemType: rf.SystemVM, PowerState: rf.PowerOff, Manufacturer: "Xen", Model: "Xen " + strings.ToUpper(orDefault(v.Type, "pv")) + " guest",
		Status:           rf.Status{State: "StandbyOffline", Health: "OK"},
		MemorySummary:    rf.MemorySummary{TotalSystemMemoryGiB: float64(v.MemMiB) / 1024},
		ProcessorSummary: rf.ProcessorSummary{Count: v.VCPUs, LogicalCount: v.VCPUs},
		Boot:             noBootOverride(),
		Actions:          rf.SystemActions{Reset: rf.ResetAction{Target: rf.ResetTarget(v.Name), ActionInfo: rf.ResetInfo(v.Name), Allowable: rf.VMResetTypes}},
		Links:            rf.SystemLinks{ManagedBy: []rf.ODataID{{ID: rf.Managers + "/" + rf.ManagerID}}},
		Oem: &rf.SystemOem{Fwbuild: rf.SystemFwbuild{MemoryMiB: v.MemMiB, Type: v.Type, Autostart: v.Autostart, OnData: v.OnData,
			ConsoleLog: &rf.ODataID{ID: rf.ConsoleLog(v.Name)}}},
	}
	if v.Running {
		cs.PowerState, cs.Status.State = rf.PowerOn, "Enabled"
		id := v.DomID
		cs.Oem.Fwbuild.DomID = &id
	}
	if dataOK {
		cs.VirtualMedia = &rf.ODataID{ID: rf.VirtualMediaPath(v.Name)}
	}
	return cs
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func noBootOverride() rf.Boot {
	return rf.Boot{BootSourceOverrideEnabled: "Disabled", BootSourceOverrideTarget: "None", AllowableTargets: []string{"None"}}
}

// hostSystem is the host's ComputerSystem, from xl info.
func (s *redfishService) hostSystem(ctx context.Context) (rf.ComputerSystem, error) {
	cs := rf.ComputerSystem{ODataID: rf.System(rf.HostID), ODataType: "#ComputerSystem.v1_20_0.ComputerSystem", ID: rf.HostID,
		Name: "fwbuild host " + s.rec.Serial, SystemType: rf.SystemPhysical, PowerState: rf.PowerOn, Manufacturer: "fwbuild",
		Model: s.rec.Board, SerialNumber: s.rec.Serial, UUID: s.uuid, Status: rf.Status{State: "Enabled", Health: "OK"},
		Boot:    noBootOverride(),
		Actions: rf.SystemActions{Reset: rf.ResetAction{Target: rf.ResetTarget(rf.HostID), ActionInfo: rf.ResetInfo(rf.HostID), Allowable: rf.HostResetTypes}},
		Links:   rf.SystemLinks{ManagedBy: []rf.ODataID{{ID: rf.Managers + "/" + rf.ManagerID}}, Chassis: []rf.ODataID{{ID: rf.Chassis + "/" + rf.ChassisID}}},
	}
	if s.tpm != nil {
		cs.TrustedModules = []rf.TrustedModule{{InterfaceType: "TPM2_0", Status: rf.Status{State: "Enabled", Health: "OK"}}}
		cs.Certificates = &rf.ODataID{ID: rf.HostCertificates}
	}
	if s.vms == nil {
		return cs, nil
	}
	out, err := s.vms.a.xl(ctx, "info")
	if err != nil {
		return cs, err
	}
	info := parseXLInfo(out)
	var mem, cpus int
	fmt.Sscan(info["total_memory"], &mem)
	fmt.Sscan(info["nr_cpus"], &cpus)
	cs.MemorySummary.TotalSystemMemoryGiB = float64(mem) / 1024
	cs.ProcessorSummary = rf.ProcessorSummary{Count: cpus, LogicalCount: cpus}
	cs.Oem = &rf.SystemOem{Fwbuild: rf.SystemFwbuild{MemoryMiB: mem}}
	return cs, nil
}

func (s *redfishService) listSystems(w http.ResponseWriter, r *http.Request) {
	// The members are the definitions: no `xl list`, which a collection
	// does not need (no power states in it) and which was most of a
	// GET's time in a TCG dom0 (see the README's benchmark).
	ids := []string{rf.System(rf.HostID)}
	if s.vms != nil {
		gs, err := s.vms.defined()
		if err != nil {
			s.internal(w, err)
			return
		}
		for _, g := range gs {
			ids = append(ids, rf.System(g.Name))
		}
	}
	writeJSON(w, http.StatusOK, collection(rf.Systems, "#ComputerSystemCollection.ComputerSystemCollection", "Computer Systems", ids))
}

func (s *redfishService) internal(w http.ResponseWriter, err error) {
	s.log.Warn("redfish: internal error", "err", err)
	writeError(w, http.StatusInternalServerError, rf.NewError(rf.MsgGeneralError,
		"A general error has occurred: "+err.Error(), "See ctld's console for details."))
}

// system serves Systems/<id>[/...].
func (s *redfishService) system(w http.ResponseWriter, r *http.Request, parts []string) {
	id := parts[0]
	if id == rf.HostID {
		s.hostResource(w, r, parts[1:])
		return
	}
	if s.vms == nil {
		notFound(w, "ComputerSystem", id)
		return
	}
	v, ok, err := s.vms.find(r.Context(), id)
	if err != nil {
		s.internal(w, err)
		return
	}
	if !ok {
		notFound(w, "ComputerSystem", id)
		return
	}
	rest := strings.Join(parts[1:], "/")
	switch rest {
	case "":
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			writeJSON(w, http.StatusOK, systemJSON(v, s.vms.dataOK))
		case http.MethodDelete:
			s.deleteSystem(w, r, v)
		default:
			notAllowed(w, r, "GET", "DELETE")
		}
	case "Actions/ComputerSystem.Reset":
		s.resetAction(w, r, id, rf.VMResetTypes, func(typ string) error { return s.vms.reset(r.Context(), v, typ) })
	case "ResetActionInfo":
		s.only(w, r, "GET", func() { writeJSON(w, http.StatusOK, resetInfo(id, rf.VMResetTypes)) })
	case "Oem/Fwbuild/ConsoleLog":
		s.only(w, r, "GET", func() { s.consoleLog(w, v) })
	case "VirtualMedia", "VirtualMedia/" + rf.MediaID,
		"VirtualMedia/" + rf.MediaID + "/Actions/VirtualMedia.InsertMedia",
		"VirtualMedia/" + rf.MediaID + "/Actions/VirtualMedia.EjectMedia":
		if !s.vms.dataOK {
			notFound(w, "VirtualMedia", id)
			return
		}
		s.virtualMedia(w, r, v, rest)
	default:
		notFound(w, "Resource", r.URL.Path)
	}
}

func (s *redfishService) hostResource(w http.ResponseWriter, r *http.Request, rest []string) {
	switch strings.Join(rest, "/") {
	case "":
		s.only(w, r, "GET", func() {
			cs, err := s.hostSystem(r.Context())
			if err != nil {
				s.internal(w, err)
				return
			}
			writeJSON(w, http.StatusOK, cs)
		})
	case "Actions/ComputerSystem.Reset":
		s.resetAction(w, r, rf.HostID, rf.HostResetTypes, func(string) error {
			if s.vms == nil || s.vms.rebootHost == nil {
				return errors.New("this control domain cannot restart the unit")
			}
			// Answer first: the reboot ends every connection.
			go s.vms.rebootHost()
			return nil
		})
	case "ResetActionInfo":
		s.only(w, r, "GET", func() { writeJSON(w, http.StatusOK, resetInfo(rf.HostID, rf.HostResetTypes)) })
	default:
		notFound(w, "Resource", r.URL.Path)
	}
}

func resetInfo(id string, allowed []string) rf.ActionInfo {
	return rf.ActionInfo{ODataID: rf.ResetInfo(id), ODataType: "#ActionInfo.v1_3_0.ActionInfo", ID: "ResetActionInfo", Name: "Reset Action Info",
		Parameters: []rf.ActionParameter{{Name: "ResetType", Required: true, DataType: "String", AllowableValues: allowed}}}
}

// resetAction checks a Reset POST's body and runs it: 204, or 400 naming
// the allowed values.
func (s *redfishService) resetAction(w http.ResponseWriter, r *http.Request, id string, allowed []string, do func(string) error) {
	if r.Method != http.MethodPost {
		notAllowed(w, r, "POST")
		return
	}
	var body rf.Reset
	if !decodeBody(w, r, &body) {
		return
	}
	if body.ResetType == "" {
		badRequest(w, rf.MsgPropertyMissing, "The property ResetType is a required property and must be included in the request.",
			"Give ResetType, one of: "+strings.Join(allowed, ", ")+".", "ResetType")
		return
	}
	ok := false
	for _, a := range allowed {
		ok = ok || a == body.ResetType
	}
	if !ok {
		badRequest(w, rf.MsgPropertyValueNotInList, fmt.Sprintf("The value '%s' for the property ResetType is not in the list of acceptable values.", body.ResetType),
			"Choose one of: "+strings.Join(allowed, ", ")+".", body.ResetType, "ResetType")
		return
	}
	if err := do(body.ResetType); err != nil {
		s.internal(w, fmt.Errorf("reset %s %s: %w", id, body.ResetType, err))
		return
	}
	s.log.Info("redfish: reset", "system", id, "type", body.ResetType)
	w.WriteHeader(http.StatusNoContent)
}

// createSystem defines a new VM on the data disk (POST Systems): its disks
// first, its xl config last, as the profile's guests are seeded, so a
// definition that is there is complete. The VM is not started (Reset On
// starts it), unless Autostart is set, which only says what boot does.
func (s *redfishService) createSystem(w http.ResponseWriter, r *http.Request) {
	var c rf.CreateSystem
	if !decodeBody(w, r, &c) {
		return
	}
	if s.vms == nil || !s.vms.dataOK {
		writeError(w, http.StatusServiceUnavailable, rf.NewError(rf.MsgServiceTemporarilyUnavailable,
			"VMs are created on the data disk, which this unit does not have mounted.", "Attach the data disk the profile names and reboot."))
		return
	}
	spec, key, field, err := s.vms.validate(r.Context(), c)
	if err != nil {
		code := http.StatusBadRequest
		if key == rf.MsgResourceAlreadyExists {
			code = http.StatusConflict
		}
		writeError(w, code, rf.NewError(key, err.Error(), "Correct "+field+" and resubmit the request.", field))
		return
	}
	if err := s.vms.create(spec); err != nil {
		s.internal(w, fmt.Errorf("create %s: %w", c.Name, err))
		return
	}
	v, ok, err := s.vms.find(r.Context(), c.Name)
	if err != nil || !ok {
		s.internal(w, fmt.Errorf("create %s: not listed after creation: %v", c.Name, err))
		return
	}
	s.log.Info("redfish: created VM", "name", c.Name)
	w.Header().Set("Location", rf.System(c.Name))
	writeJSON(w, http.StatusCreated, systemJSON(v, true))
}

// vmSpec is a validated CreateSystem.
type vmSpec struct {
	xl    contract.GuestXL
	disks []contract.GuestDisk
}

// validate checks a new VM's definition; key is the Base message id and
// field the property at fault.
func (m *vmManager) validate(ctx context.Context, c rf.CreateSystem) (vmSpec, string, string, error) {
	o := c.Oem.Fwbuild
	if c.Name == "" {
		return vmSpec{}, rf.MsgPropertyMissing, "Name", errors.New("the property Name is required: the VM's name")
	}
	if !contract.ValidGuestName(c.Name) || c.Name == rf.HostID || strings.EqualFold(c.Name, "Domain-0") || len(c.Name) > 64 {
		return vmSpec{}, rf.MsgPropertyValueFormatError, "Name", fmt.Errorf("Name %q: want 1-64 letters, digits, '-', '_' or '.', and not %q", c.Name, rf.HostID)
	}
	if _, exists, err := m.find(ctx, c.Name); err != nil {
		return vmSpec{}, rf.MsgGeneralError, "Name", err
	} else if exists {
		return vmSpec{}, rf.MsgResourceAlreadyExists, "Name", fmt.Errorf("a system named %s already exists", c.Name)
	}
	mem := o.MemoryMiB
	if mem == 0 {
		mem = int(c.MemorySummary.TotalSystemMemoryGiB * 1024)
	}
	if mem < 32 || mem > 1<<20 {
		return vmSpec{}, rf.MsgPropertyValueFormatError, "MemorySummary/TotalSystemMemoryGiB", fmt.Errorf("memory %d MiB: want 32 MiB to 1 TiB (MemorySummary.TotalSystemMemoryGiB or Oem.Fwbuild.MemoryMiB)", mem)
	}
	vcpus := c.ProcessorSummary.Count
	if vcpus == 0 {
		vcpus = 1
	}
	if vcpus < 1 || vcpus > 128 {
		return vmSpec{}, rf.MsgPropertyValueFormatError, "ProcessorSummary/Count", fmt.Errorf("ProcessorSummary.Count %d: want 1 to 128 vCPUs", vcpus)
	}
	typ := orDefault(o.Type, "pvh")
	if typ != "pv" && typ != "pvh" {
		return vmSpec{}, rf.MsgPropertyValueNotInList, "Oem/Fwbuild/Type", fmt.Errorf("Oem.Fwbuild.Type %q: want pv or pvh", o.Type)
	}
	if o.Image == "" || !contract.ValidGuestName(o.Image) {
		return vmSpec{}, rf.MsgPropertyMissing, "Oem/Fwbuild/Image", fmt.Errorf("Oem.Fwbuild.Image %q: name a guest image on the data disk (its kernel and initrd boot the VM)", o.Image)
	}
	kernel := contract.DataImageFile(o.Image, contract.GuestImageKernel)
	initrd := contract.DataImageFile(o.Image, contract.GuestImageInitrd)
	for _, f := range []string{kernel, initrd} {
		if _, err := os.Stat(m.root + f); err != nil {
			return vmSpec{}, rf.MsgPropertyValueNotInList, "Oem/Fwbuild/Image", fmt.Errorf("guest image %s: %s is not on the data disk", o.Image, filepath.Base(f))
		}
	}
	spec := vmSpec{xl: contract.GuestXL{Name: c.Name, Type: typ, MemoryMiB: mem, VCPUs: vcpus, Kernel: kernel, Ramdisk: initrd,
		Autostart: o.Autostart, Bridge: m.bridge}}
	extra := "console=hvc0 " + contract.GuestParams{Name: c.Name, After: contract.AfterRun}.String()
	seen := map[string]bool{}
	for i, d := range o.Disks {
		field := fmt.Sprintf("Oem/Fwbuild/Disks/%d", i)
		switch {
		case !contract.ValidGuestName(d.Name) || seen[d.Name] || d.Name == mediaFileBase:
			return vmSpec{}, rf.MsgPropertyValueFormatError, field + "/Name", fmt.Errorf("disk %d: name %q bad or repeated", i, d.Name)
		case d.SizeBytes <= 0 || d.SizeBytes > 16<<40:
			return vmSpec{}, rf.MsgPropertyValueFormatError, field + "/SizeBytes", fmt.Errorf("disk %s: SizeBytes %d: want 1 byte to 16 TiB", d.Name, d.SizeBytes)
		case d.From != "":
			st, err := os.Stat(m.root + contract.DataImageFile(d.From, contract.GuestRootFile))
			if !contract.ValidGuestName(d.From) || err != nil {
				return vmSpec{}, rf.MsgPropertyValueNotInList, field + "/From", fmt.Errorf("disk %s: guest image %q has no %s on the data disk", d.Name, d.From, contract.GuestRootFile)
			}
			if st.Size() > d.SizeBytes {
				return vmSpec{}, rf.MsgPropertyValueFormatError, field + "/SizeBytes", fmt.Errorf("disk %s: %d bytes is less than image %s's %d", d.Name, d.SizeBytes, d.From, st.Size())
			}
			if i == 0 {
				// blkfront names the first disk xvda, PV or PVH.
				extra += " root=/dev/xvda"
			}
		}
		seen[d.Name] = true
		spec.disks = append(spec.disks, contract.GuestDisk{Name: d.Name, Size: d.SizeBytes, From: d.From})
		spec.xl.Disks = append(spec.xl.Disks, contract.DataGuestDisk(c.Name, d.Name))
	}
	if len(o.NICs) > 0 && m.bridge == "" {
		return vmSpec{}, rf.MsgPropertyValueNotInList, "Oem/Fwbuild/NICs", errors.New("NICs: this unit has no network (guest or management bridge) for them to join")
	}
	for i, n := range o.NICs {
		if n.MAC != "" && !contract.ValidMAC(n.MAC) {
			return vmSpec{}, rf.MsgPropertyValueFormatError, fmt.Sprintf("Oem/Fwbuild/NICs/%d/MAC", i), fmt.Errorf("NIC %d: MAC %q is not six hex pairs", i, n.MAC)
		}
		spec.xl.MACs = append(spec.xl.MACs, n.MAC)
	}
	if strings.ContainsAny(o.Cmdline, "\"\n\r") {
		return vmSpec{}, rf.MsgPropertyValueFormatError, "Oem/Fwbuild/Cmdline", errors.New("Cmdline may not hold quotes or line breaks")
	}
	spec.xl.Extra = extra + " " + o.Cmdline
	return spec, "", "", nil
}

func (m *vmManager) create(spec vmSpec) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	name := spec.xl.Name
	dir := m.root + contract.DataGuestDir(name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, d := range spec.disks {
		if err := m.a.createGuestDisk(m.root, name, d); err != nil {
			os.RemoveAll(dir)
			return fmt.Errorf("disk %s: %w", d.Name, err)
		}
	}
	if err := writeFileAtomic(m.root+contract.DataGuestConfig(name), spec.xl.Encode(), 0o644); err != nil {
		os.RemoveAll(dir)
		return err
	}
	return nil
}

// deleteSystem destroys a VM (if running) and frees its disks.
func (s *redfishService) deleteSystem(w http.ResponseWriter, r *http.Request, v vmInfo) {
	if !v.OnData {
		writeError(w, http.StatusMethodNotAllowed, rf.NewError(rf.MsgOperationNotAllowed,
			"This guest comes from the payload (no data disk): it cannot be deleted.", "Delete it from the board profile."))
		return
	}
	if err := s.vms.remove(r.Context(), v); err != nil {
		s.internal(w, fmt.Errorf("delete %s: %w", v.Name, err))
		return
	}
	s.log.Info("redfish: deleted VM", "name", v.Name)
	w.WriteHeader(http.StatusNoContent)
}

func (m *vmManager) remove(ctx context.Context, v vmInfo) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v.Running {
		if _, err := m.a.xl(ctx, "destroy", v.Name); err != nil {
			return err
		}
	}
	m.detach(v.Name)
	// The config goes first: a guest without one is no guest, whatever
	// is left of its directory if the removal is cut short.
	if err := os.Remove(m.root + contract.DataGuestConfig(v.Name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	dir := m.root + contract.DataGuestDir(v.Name)
	freed := dirBytes(dir)
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s is still there after its removal (%v)", dir, err)
	}
	m.a.say(contract.GuestDeleted{Name: v.Name, Freed: freed})
	return nil
}

// dirBytes is the size of the regular files under dir (what deleting it
// gives back to the data disk, sparse files counted whole).
func dirBytes(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// consoleLog answers a VM's console log (the end of xenconsoled's log of
// it, logTailBytes at most) as text: Redfish has no resource for a
// serial log that is not a list of events, so it is fwbuild's own.
func (s *redfishService) consoleLog(w http.ResponseWriter, v vmInfo) {
	b, err := s.vms.a.guestLog(v.Name)
	if err != nil {
		notFound(w, "ConsoleLog", v.Name)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set(rf.HeaderODataVer, "4.0")
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

// Virtual media: one CD slot per VM. InsertMedia downloads the image URL
// to the VM's directory on the data disk (to a temporary name, renamed when
// complete), adds it to the VM's config as a read-only CD and, if the VM
// runs, attaches it at once (xl block-attach); EjectMedia undoes that.

// defaultMaxMedia bounds a virtual media download: a DVD image with room
// to spare, not a whole data disk.
const defaultMaxMedia = 8 << 30

// mediaFileBase is the CD's file name in the VM's directory.
const mediaFileBase = "cd"

func (m *vmManager) mediaFile(name string) string {
	return m.root + contract.DataGuestDisk(name, mediaFileBase)
}
func (m *vmManager) mediaState(name string) string {
	return m.root + filepath.Join(contract.DataGuestDir(name), "cd.json")
}

type mediaState struct {
	Image string `json:"image"`
}

func (s *redfishService) virtualMedia(w http.ResponseWriter, r *http.Request, v vmInfo, rest string) {
	switch rest {
	case "VirtualMedia":
		s.only(w, r, "GET", func() {
			writeJSON(w, http.StatusOK, collection(rf.VirtualMediaPath(v.Name), "#VirtualMediaCollection.VirtualMediaCollection", "Virtual Media", []string{rf.VirtualMediaSlot(v.Name)}))
		})
	case "VirtualMedia/" + rf.MediaID:
		s.only(w, r, "GET", func() {
			vm := rf.VirtualMedia{ODataID: rf.VirtualMediaSlot(v.Name), ODataType: "#VirtualMedia.v1_6_0.VirtualMedia", ID: rf.MediaID, Name: "Virtual CD",
				MediaTypes: []string{"CD", "DVD"}, WriteProtected: true, ConnectedVia: "NotConnected",
				Actions: rf.VirtualMediaAction{Insert: rf.TargetOnly{Target: rf.InsertMediaTarget(v.Name)}, Eject: rf.TargetOnly{Target: rf.EjectMediaTarget(v.Name)}}}
			if v.CD != "" {
				vm.Image, vm.Inserted, vm.ConnectedVia, vm.TransferMethod = v.CD, true, "URI", "Upload"
				if u, err := url.Parse(v.CD); err == nil {
					vm.ImageName = filepath.Base(u.Path)
				}
			}
			writeJSON(w, http.StatusOK, vm)
		})
	case "VirtualMedia/" + rf.MediaID + "/Actions/VirtualMedia.InsertMedia":
		if r.Method != http.MethodPost {
			notAllowed(w, r, "POST")
			return
		}
		var body rf.InsertMedia
		if !decodeBody(w, r, &body) {
			return
		}
		u, err := url.Parse(body.Image)
		if body.Image == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			badRequest(w, rf.MsgPropertyValueFormatError, fmt.Sprintf("The value '%s' for the property Image is not an http or https URL.", body.Image),
				"Give Image as the URL of a CD or disk image ctld can download.", body.Image, "Image")
			return
		}
		if body.WriteProtected != nil && !*body.WriteProtected {
			badRequest(w, rf.MsgPropertyValueNotInList, "WriteProtected false is not supported: virtual media is attached read-only.",
				"Leave WriteProtected out or set it true.", "false", "WriteProtected")
			return
		}
		if v.CD != "" {
			writeError(w, http.StatusConflict, rf.NewError(rf.MsgResourceInUse, "Media is already inserted: eject it first.",
				"POST "+rf.EjectMediaTarget(v.Name)+" first."))
			return
		}
		if err := s.vms.insertMedia(r.Context(), v, body.Image); err != nil {
			s.internal(w, fmt.Errorf("insert media into %s: %w", v.Name, err))
			return
		}
		s.log.Info("redfish: media inserted", "system", v.Name, "image", body.Image)
		w.WriteHeader(http.StatusNoContent)
	case "VirtualMedia/" + rf.MediaID + "/Actions/VirtualMedia.EjectMedia":
		if r.Method != http.MethodPost {
			notAllowed(w, r, "POST")
			return
		}
		if err := s.vms.ejectMedia(r.Context(), v); err != nil {
			s.internal(w, fmt.Errorf("eject media from %s: %w", v.Name, err))
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

func (m *vmManager) insertMedia(ctx context.Context, v vmInfo, image string) error {
	client := m.client
	if client == nil {
		client = imageClient()
	}
	// The download runs without the lock (it may take minutes); the
	// config changes under it, after checking the slot is still empty.
	dst := m.mediaFile(v.Name)
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".cd.*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	body, err := httpGet(ctx, client, image)
	if err != nil {
		tmp.Close()
		return err
	}
	limit := m.maxMedia
	if limit <= 0 {
		limit = defaultMaxMedia
	}
	n, err := io.Copy(tmp, io.LimitReader(body, limit+1))
	body.Close()
	if err == nil && n > limit {
		err = fmt.Errorf("more than the limit of %d bytes for virtual media", limit)
	}
	if err != nil {
		tmp.Close()
		return fmt.Errorf("download %s: %w", image, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := os.Stat(m.mediaState(v.Name)); err == nil {
		return errors.New("media was inserted meanwhile")
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return err
	}
	cfg, err := os.ReadFile(v.Config)
	if err != nil {
		return err
	}
	newCfg, idx := setCD(cfg, contract.DataGuestDisk(v.Name, mediaFileBase))
	if v.Running {
		if _, err := m.a.xl(ctx, "block-attach", v.Name, contract.XLDiskSpec(idx, contract.DataGuestDisk(v.Name, mediaFileBase), true)); err != nil {
			os.Remove(dst)
			return err
		}
	}
	st, _ := json.Marshal(mediaState{Image: image})
	if err := writeFileAtomic(m.mediaState(v.Name), st, 0o644); err != nil {
		return err
	}
	return writeFileAtomic(v.Config, newCfg, 0o644)
}

func (m *vmManager) ejectMedia(ctx context.Context, v vmInfo) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v.CD == "" {
		return nil
	}
	cfg, err := os.ReadFile(v.Config)
	if err != nil {
		return err
	}
	newCfg, idx := setCD(cfg, "")
	if v.Running {
		if _, err := m.a.xl(ctx, "block-detach", v.Name, fmt.Sprintf("xvd%c", 'a'+idx)); err != nil {
			return err
		}
	}
	if err := writeFileAtomic(v.Config, newCfg, 0o644); err != nil {
		return err
	}
	os.Remove(m.mediaState(v.Name))
	return os.Remove(m.mediaFile(v.Name))
}

// setCD rewrites an xl config's disk line without its CD and, for a
// target, with the CD after the other disks; idx is the CD's disk index
// (its vdev xvd<'a'+idx>).
func setCD(cfg []byte, target string) ([]byte, int) {
	lines := strings.Split(string(cfg), "\n")
	var specs []string
	at := -1
	for i, line := range lines {
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(k) != "disk" {
			continue
		}
		at = i
		v = strings.TrimSpace(v)
		v = strings.TrimSuffix(strings.TrimPrefix(v, "["), "]")
		for _, f := range strings.Split(v, "\",") {
			f = strings.Trim(strings.TrimSpace(f), `"`)
			if f != "" && !strings.Contains(f, "devtype=cdrom") {
				specs = append(specs, f)
			}
		}
	}
	idx := len(specs)
	if target != "" {
		specs = append(specs, contract.XLDiskSpec(idx, target, true))
	}
	var quoted []string
	for _, s := range specs {
		quoted = append(quoted, fmt.Sprintf("%q", s))
	}
	line := ""
	if len(quoted) > 0 {
		line = "disk = [ " + strings.Join(quoted, ", ") + " ]"
	}
	switch {
	case at >= 0 && line != "":
		lines[at] = line
	case at >= 0:
		lines = append(lines[:at], lines[at+1:]...)
	case line != "":
		if n := len(lines); n > 0 && lines[n-1] == "" {
			lines = append(lines[:n-1], line, "")
		} else {
			lines = append(lines, line)
		}
	}
	return []byte(strings.Join(lines, "\n")), idx
}
