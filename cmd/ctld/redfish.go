package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fwbuild/fwbuild/contract"
	rf "github.com/fwbuild/fwbuild/contract/redfish"
	"github.com/fwbuild/fwbuild/contract/unit"
)

// The Redfish service (DMTF DSP0266): HTTPS on the management address only,
// so that fleet tools (OpenStack's sushy, DMTF's redfishtool, Ansible's
// redfish modules) manage the host and its VMs unmodified. The resources
// are in redfish_systems.go (Systems, Reset, create/delete, VirtualMedia)
// and here (the service root, sessions, accounts, ctld as the Manager, the
// unit as the Chassis); the key and certificate in redfish_tls.go. Every
// request but the service root, $metadata, the OData service document and
// the login POST needs a session token (X-Auth-Token) or Basic auth,
// checked against the unit's record through accounts, whose lockout the
// SSH console shares. A later UpdateService joins as one more route.

// sessionTimeout is SessionService.SessionTimeout: a session unused this
// long is gone (Redfish's default is 30 minutes).
const sessionTimeout = 30 * time.Minute

// maxSessions bounds the live sessions.
const maxSessions = 64

// maxBody bounds a request body; the largest one is a VM's definition.
const maxBody = 64 << 10

// redfishService is ctld's Redfish handler.
type redfishService struct {
	rec  unit.Record
	acc  *accounts
	vms  *vmManager
	now  func() time.Time
	log  *slog.Logger
	uuid string         // the service's UUID, from the unit's serial
	upd  *updateService // the UpdateService (redfish_update.go); nil: none
	tpm  *tpmService    // the TPM (redfish_integrity.go); nil: the unit has none

	mu       sync.Mutex
	sessions map[string]*rfSession // by token
}

type rfSession struct {
	id, token, user, role string
	last                  time.Time
}

func newRedfishService(rec unit.Record, acc *accounts, vms *vmManager, now func() time.Time, log *slog.Logger) *redfishService {
	return &redfishService{rec: rec, acc: acc, vms: vms, now: now, log: log,
		uuid: serialUUID(rec.Board, rec.Serial), sessions: map[string]*rfSession{}}
}

// principal is who a request acts as.
type principal struct {
	user, role string
	session    *rfSession // nil for Basic auth
}

// canWrite says whether a role may change things: Redfish's Operator
// (ConfigureComponents) and Administrator may, ReadOnly may not.
func (p principal) canWrite() bool {
	return p.role == unit.RoleAdministrator || p.role == unit.RoleOperator
}

// ServeHTTP routes a request after authenticating it.
func (s *redfishService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(rf.HeaderODataVer, "4.0")
	w.Header().Set("Cache-Control", "no-store")
	p := strings.TrimSuffix(r.URL.Path, "/")
	if p == "" {
		p = "/"
	}
	// Unauthenticated: the service root (DSP0266 13.3.1), the version
	// document, $metadata, the OData service document, and the login.
	switch p {
	case rf.Versions:
		s.only(w, r, "GET", func() { writeJSON(w, http.StatusOK, map[string]string{"v1": rf.Root + "/"}) })
		return
	case rf.Root:
		s.only(w, r, "GET", func() { writeJSON(w, http.StatusOK, s.serviceRoot()) })
		return
	case rf.Metadata:
		s.only(w, r, "GET", func() {
			w.Header().Set("Content-Type", "application/xml")
			io.WriteString(w, metadataXML)
		})
		return
	case rf.OData:
		s.only(w, r, "GET", func() { writeJSON(w, http.StatusOK, odataDocument()) })
		return
	case rf.Sessions:
		if r.Method == http.MethodPost {
			s.login(w, r)
			return
		}
	}
	who, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead && !who.canWrite() &&
		!(r.Method == http.MethodDelete && who.session != nil && p == rf.Session(who.session.id)) {
		forbidden(w, r, "an Operator or Administrator account")
		return
	}
	s.route(w, r, p, who)
}

// forbidden answers 403; need says which accounts may.
func forbidden(w http.ResponseWriter, r *http.Request, need string) {
	writeError(w, http.StatusForbidden, rf.NewError(rf.MsgInsufficientPrivilege,
		"There are insufficient privileges for the account or credentials associated with the current session to perform the requested operation.",
		"Log in with "+need+".", r.URL.Path))
}

// only answers one method and says 405 with Allow for the others.
func (s *redfishService) only(w http.ResponseWriter, r *http.Request, method string, h func()) {
	if r.Method == method || (method == "GET" && r.Method == http.MethodHead) {
		h()
		return
	}
	notAllowed(w, r, method)
}

func notAllowed(w http.ResponseWriter, r *http.Request, allow ...string) {
	w.Header().Set("Allow", strings.Join(allow, ", "))
	writeError(w, http.StatusMethodNotAllowed, rf.NewError(rf.MsgOperationNotAllowed,
		fmt.Sprintf("The HTTP method %s is not allowed on %s.", r.Method, r.URL.Path),
		"Use one of: "+strings.Join(allow, ", ")+"."))
}

func notFound(w http.ResponseWriter, kind, id string) {
	writeError(w, http.StatusNotFound, rf.NewError(rf.MsgResourceNotFound,
		fmt.Sprintf("The requested resource of type %s named '%s' was not found.", kind, id),
		"Provide a valid resource identifier and resubmit the request.", kind, id))
}

func badRequest(w http.ResponseWriter, key, msg, resolution string, args ...string) {
	writeError(w, http.StatusBadRequest, rf.NewError(key, msg, resolution, args...))
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, code int, e rf.Error) { writeJSON(w, code, e) }

// decodeBody reads a JSON body into v, answering 400 itself when it cannot.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	if err := dec.Decode(v); err != nil {
		badRequest(w, rf.MsgMalformedJSON, "The request body submitted was malformed JSON and could not be parsed by the receiving service: "+err.Error(),
			"Ensure that the request body is valid JSON and resubmit the request.")
		return false
	}
	return true
}

// authenticate accepts a live session's token or Basic credentials; it
// answers 401 with WWW-Authenticate itself otherwise. A locked account
// gets the same answer as a wrong password.
func (s *redfishService) authenticate(w http.ResponseWriter, r *http.Request) (principal, bool) {
	if tok := r.Header.Get(rf.HeaderToken); tok != "" {
		if sess := s.session(tok); sess != nil {
			return principal{user: sess.user, role: sess.role, session: sess}, true
		}
	} else if user, pass, ok := r.BasicAuth(); ok {
		if acc, err := s.acc.authenticate(user, pass); err == nil {
			return principal{user: acc.User, role: acc.Role}, true
		} else {
			s.log.Info("redfish: refused login", "user", user, "remote", r.RemoteAddr, "why", err)
		}
	}
	unauthorized(w)
	return principal{}, false
}

func unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Basic realm="fwbuild"`)
	writeError(w, http.StatusUnauthorized, rf.NewError(rf.MsgNoValidSession,
		"There is no valid session established with the implementation.",
		"Establish a session (POST "+rf.Sessions+") or send Basic credentials of one of the unit's accounts."))
}

// session returns the live session of a token and marks it used.
func (s *redfishService) session(token string) *rfSession {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked()
	sess := s.sessions[token]
	if sess != nil {
		sess.last = s.now()
	}
	return sess
}

func (s *redfishService) expireLocked() {
	now := s.now()
	for tok, sess := range s.sessions {
		if now.Sub(sess.last) > sessionTimeout {
			delete(s.sessions, tok)
		}
	}
}

// login creates a session: 201, X-Auth-Token and Location, or 401.
func (s *redfishService) login(w http.ResponseWriter, r *http.Request) {
	var c rf.SessionCreate
	if !decodeBody(w, r, &c) {
		return
	}
	if c.UserName == "" {
		badRequest(w, rf.MsgPropertyMissing, "The property UserName is a required property and must be included in the request.",
			"Ensure that the property is in the request body and has a valid value and resubmit the request.", "UserName")
		return
	}
	acc, err := s.acc.authenticate(c.UserName, c.Password)
	if err != nil {
		s.log.Info("redfish: refused login", "user", c.UserName, "remote", r.RemoteAddr, "why", err)
		unauthorized(w)
		return
	}
	tok, id := randomHex(16), randomHex(8)
	sess := &rfSession{id: id, token: tok, user: acc.User, role: acc.Role, last: s.now()}
	s.mu.Lock()
	s.expireLocked()
	if len(s.sessions) >= maxSessions {
		// The least recently used session makes room: a client that
		// logs in again and again (sushy re-logs in on every 401/403)
		// must not grow ctld's memory.
		var lru *rfSession
		for _, old := range s.sessions {
			if lru == nil || old.last.Before(lru.last) {
				lru = old
			}
		}
		delete(s.sessions, lru.token)
	}
	s.sessions[tok] = sess
	s.mu.Unlock()
	w.Header().Set(rf.HeaderToken, tok)
	w.Header().Set("Location", rf.Session(id))
	writeJSON(w, http.StatusCreated, sessionResource(sess))
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand, Go >= 1.24)
	return hex.EncodeToString(b)
}

func sessionResource(sess *rfSession) rf.SessionResource {
	return rf.SessionResource{ODataID: rf.Session(sess.id), ODataType: "#Session.v1_6_0.Session", ID: sess.id, Name: "Session " + sess.id, UserName: sess.user}
}

// route serves an authenticated request.
func (s *redfishService) route(w http.ResponseWriter, r *http.Request, p string, who principal) {
	switch {
	case p == rf.Systems:
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			s.listSystems(w, r)
		case http.MethodPost:
			s.createSystem(w, r)
		default:
			notAllowed(w, r, "GET", "POST")
		}
		return
	case p == rf.HostCertificates || strings.HasPrefix(p, rf.HostCertificates+"/"):
		// DMTF's privilege registry: a system's certificates need
		// ConfigureComponents (Operator, Administrator).
		if !who.canWrite() {
			forbidden(w, r, "an Operator or Administrator account (ConfigureComponents)")
			return
		}
		s.hostCertificates(w, r, strings.TrimPrefix(strings.TrimPrefix(p, rf.HostCertificates), "/"))
		return
	case strings.HasPrefix(p, rf.Systems+"/"):
		s.system(w, r, strings.Split(strings.TrimPrefix(p, rf.Systems+"/"), "/"))
		return
	case p == rf.SessionService:
		s.only(w, r, "GET", func() {
			writeJSON(w, http.StatusOK, rf.SessionServiceResource{ODataID: rf.SessionService, ODataType: "#SessionService.v1_1_9.SessionService",
				ID: "SessionService", Name: "Session Service", ServiceEnabled: true, SessionTimeout: int(sessionTimeout / time.Second),
				Sessions: rf.ODataID{ID: rf.Sessions}})
		})
		return
	case p == rf.Sessions:
		s.only(w, r, "GET", func() { s.listSessions(w, who) })
		return
	case strings.HasPrefix(p, rf.Sessions+"/"):
		s.sessionByID(w, r, strings.TrimPrefix(p, rf.Sessions+"/"), who)
		return
	case p == rf.AccountService:
		s.only(w, r, "GET", func() { writeJSON(w, http.StatusOK, s.accountService()) })
		return
	case p == rf.Accounts:
		s.only(w, r, "GET", func() {
			var ids []string
			for _, a := range s.rec.Accounts {
				ids = append(ids, rf.Account(a.User))
			}
			writeJSON(w, http.StatusOK, collection(rf.Accounts, "#ManagerAccountCollection.ManagerAccountCollection", "Accounts", ids))
		})
		return
	case strings.HasPrefix(p, rf.Accounts+"/"):
		s.only(w, r, "GET", func() { s.account(w, strings.TrimPrefix(p, rf.Accounts+"/")) })
		return
	case p == rf.Roles:
		s.only(w, r, "GET", func() {
			writeJSON(w, http.StatusOK, collection(rf.Roles, "#RoleCollection.RoleCollection", "Roles",
				[]string{rf.Role(unit.RoleAdministrator), rf.Role(unit.RoleOperator), rf.Role(unit.RoleReadOnly)}))
		})
		return
	case strings.HasPrefix(p, rf.Roles+"/"):
		s.only(w, r, "GET", func() { s.role(w, strings.TrimPrefix(p, rf.Roles+"/")) })
		return
	case p == rf.Managers:
		s.only(w, r, "GET", func() {
			writeJSON(w, http.StatusOK, collection(rf.Managers, "#ManagerCollection.ManagerCollection", "Managers", []string{rf.Managers + "/" + rf.ManagerID}))
		})
		return
	case p == rf.Managers+"/"+rf.ManagerID:
		s.only(w, r, "GET", func() { s.manager(w, r) })
		return
	case p == rf.Chassis:
		s.only(w, r, "GET", func() {
			writeJSON(w, http.StatusOK, collection(rf.Chassis, "#ChassisCollection.ChassisCollection", "Chassis", []string{rf.Chassis + "/" + rf.ChassisID}))
		})
		return
	case p == rf.Chassis+"/"+rf.ChassisID:
		s.only(w, r, "GET", func() { s.chassis(w, r) })
		return
	case p == rf.ComponentIntegrity || strings.HasPrefix(p, rf.ComponentIntegrity+"/"):
		s.integrity(w, r, p, who)
		return
	case s.upd != nil && s.routeUpdate(w, r, p, who):
		return
	}
	notFound(w, "Resource", r.URL.Path)
}

func collection(id, typ, name string, members []string) rf.Collection {
	c := rf.Collection{ODataID: id, ODataType: typ, Name: name, Members: []rf.ODataID{}}
	for _, m := range members {
		c.Members = append(c.Members, rf.ODataID{ID: m})
	}
	c.MembersCount = len(c.Members)
	return c
}

func (s *redfishService) serviceRoot() rf.ServiceRoot {
	root := rf.ServiceRoot{ODataID: rf.Root, ODataType: "#ServiceRoot.v1_15_0.ServiceRoot", ID: "RootService", Name: "fwbuild Redfish service",
		RedfishVersion: rf.RedfishVersion, UUID: s.uuid, Product: "fwbuild control domain", Vendor: "fwbuild",
		Systems: rf.ODataID{ID: rf.Systems}, Managers: rf.ODataID{ID: rf.Managers}, Chassis: rf.ODataID{ID: rf.Chassis},
		SessionService: rf.ODataID{ID: rf.SessionService}, AccountService: rf.ODataID{ID: rf.AccountService},
		Links: rf.RootLinks{Sessions: rf.ODataID{ID: rf.Sessions}}}
	if s.upd != nil {
		root.UpdateService, root.Tasks = &rf.ODataID{ID: rf.UpdateService}, &rf.ODataID{ID: rf.TaskService}
	}
	if s.tpm != nil {
		root.ComponentIntegrity = &rf.ODataID{ID: rf.ComponentIntegrity}
	}
	return root
}

func (s *redfishService) listSessions(w http.ResponseWriter, who principal) {
	s.mu.Lock()
	s.expireLocked()
	var ids []string
	for _, sess := range s.sessions {
		// An administrator sees every session, others their own.
		if who.role == unit.RoleAdministrator || sess.user == who.user {
			ids = append(ids, rf.Session(sess.id))
		}
	}
	s.mu.Unlock()
	sort.Strings(ids)
	writeJSON(w, http.StatusOK, collection(rf.Sessions, "#SessionCollection.SessionCollection", "Sessions", ids))
}

func (s *redfishService) sessionByID(w http.ResponseWriter, r *http.Request, id string, who principal) {
	s.mu.Lock()
	var found *rfSession
	for _, sess := range s.sessions {
		if sess.id == id && (who.role == unit.RoleAdministrator || sess.user == who.user) {
			found = sess
		}
	}
	if found != nil && r.Method == http.MethodDelete {
		delete(s.sessions, found.token)
	}
	s.mu.Unlock()
	switch {
	case r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodDelete:
		notAllowed(w, r, "GET", "DELETE")
	case found == nil:
		notFound(w, "Session", id)
	case r.Method == http.MethodDelete:
		w.WriteHeader(http.StatusNoContent)
	default:
		writeJSON(w, http.StatusOK, sessionResource(found))
	}
}

func (s *redfishService) accountService() rf.AccountServiceResource {
	p := s.acc.policy
	return rf.AccountServiceResource{ODataID: rf.AccountService, ODataType: "#AccountService.v1_13_0.AccountService", ID: "AccountService",
		Name: "Account Service", ServiceEnabled: true,
		AccountLockoutThreshold: p.Threshold, AccountLockoutDuration: int(p.Duration / time.Second),
		AccountLockoutCounterResetAfter: int(p.ResetAfter / time.Second), AccountLockoutCounterResetEnabled: true,
		Accounts: rf.ODataID{ID: rf.Accounts}, Roles: rf.ODataID{ID: rf.Roles}, LocalAccountAuth: "Enabled"}
}

func (s *redfishService) account(w http.ResponseWriter, user string) {
	for _, a := range s.rec.Accounts {
		if a.User == user {
			writeJSON(w, http.StatusOK, rf.ManagerAccount{ODataID: rf.Account(user), ODataType: "#ManagerAccount.v1_10_0.ManagerAccount",
				ID: user, Name: "Account " + user, UserName: user, RoleID: a.Role, Enabled: true, Locked: s.acc.locked(user)})
			return
		}
	}
	notFound(w, "ManagerAccount", user)
}

func (s *redfishService) role(w http.ResponseWriter, name string) {
	privs := map[string][]string{
		unit.RoleAdministrator: {"Login", "ConfigureManager", "ConfigureUsers", "ConfigureSelf", "ConfigureComponents"},
		unit.RoleOperator:      {"Login", "ConfigureSelf", "ConfigureComponents"},
		unit.RoleReadOnly:      {"Login", "ConfigureSelf"},
	}
	pr, ok := privs[name]
	if !ok {
		notFound(w, "Role", name)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"@odata.id": rf.Role(name), "@odata.type": "#Role.v1_3_1.Role", "Id": name, "Name": name + " role",
		"RoleId": name, "IsPredefined": true, "AssignedPrivileges": pr})
}

func (s *redfishService) manager(w http.ResponseWriter, r *http.Request) {
	ssh := rf.ConsoleService{ServiceEnabled: true, MaxConcurrentSessions: 4, ConnectTypesSupported: []string{"SSH"},
		SSH: &rf.Proto{ServiceEnabled: true, Port: 22}}
	m := rf.Manager{ODataID: rf.Managers + "/" + rf.ManagerID, ODataType: "#Manager.v1_17_0.Manager", ID: rf.ManagerID,
		Name: "ctld, the fwbuild control-domain agent", ManagerType: "Service", UUID: s.uuid,
		Status: rf.Status{State: "Enabled", Health: "OK"}, PowerState: rf.PowerOn, SerialConsole: ssh, CommandShell: ssh,
		Links: rf.ManagerLinks{ManagerForServers: s.systemLinks(r.Context()), ManagerInChassis: rf.ODataID{ID: rf.Chassis + "/" + rf.ChassisID}}}
	if s.vms != nil {
		m.FirmwareVersion = s.vms.xenVersion(r.Context())
	}
	writeJSON(w, http.StatusOK, m)
}

func (s *redfishService) chassis(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, rf.ChassisResource{ODataID: rf.Chassis + "/" + rf.ChassisID, ODataType: "#Chassis.v1_23_0.Chassis",
		ID: rf.ChassisID, Name: "fwbuild unit " + s.rec.Serial, ChassisType: "RackMount", SerialNumber: s.rec.Serial, Model: s.rec.Board,
		PowerState: rf.PowerOn, Status: rf.Status{State: "Enabled", Health: "OK"},
		Links: rf.ChassisLinks{ComputerSystems: s.systemLinks(r.Context()), ManagedBy: []rf.ODataID{{ID: rf.Managers + "/" + rf.ManagerID}}}})
}

// systemLinks links every system, the host first.
func (s *redfishService) systemLinks(ctx context.Context) []rf.ODataID {
	links := []rf.ODataID{{ID: rf.System(rf.HostID)}}
	if s.vms == nil {
		return links
	}
	gs, _ := s.vms.defined()
	for _, g := range gs {
		links = append(links, rf.ODataID{ID: rf.System(g.Name)})
	}
	return links
}

// serialUUID is a stable RFC 4122 version-5-style UUID for the unit, so the
// service root's UUID survives reboots without storing anything.
func serialUUID(board, serial string) string {
	h := sha256Sum([]byte("fwbuild-unit\x00" + board + "\x00" + serial))
	h[6] = h[6]&0x0f | 0x50
	h[8] = h[8]&0x3f | 0x80
	x := hex.EncodeToString(h[:16])
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

// odataDocument is the OData service document (DSP0266 8.4).
func odataDocument() map[string]any {
	type entry struct {
		Name string `json:"name"`
		Kind string `json:"kind"`
		URL  string `json:"url"`
	}
	return map[string]any{"@odata.context": rf.Metadata, "value": []entry{
		{"Service", "Singleton", rf.Root},
		{"Systems", "Singleton", rf.Systems},
		{"Managers", "Singleton", rf.Managers},
		{"Chassis", "Singleton", rf.Chassis},
		{"SessionService", "Singleton", rf.SessionService},
		{"AccountService", "Singleton", rf.AccountService},
		{"Sessions", "Singleton", rf.Sessions},
		{"UpdateService", "Singleton", rf.UpdateService},
		{"Tasks", "Singleton", rf.TaskService},
		{"ComponentIntegrity", "Singleton", rf.ComponentIntegrity},
	}}
}

// metadataXML is the CSDL document: references to the DMTF schemas of the
// resources served (DSP0266 8.3).
var metadataXML = func() string {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	b.WriteString(`<edmx:Edmx xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx" Version="4.0">` + "\n")
	for _, ns := range []string{"ServiceRoot.v1_15_0", "ComputerSystemCollection", "ComputerSystem.v1_20_0", "ActionInfo.v1_3_0",
		"VirtualMediaCollection", "VirtualMedia.v1_6_0", "SessionService.v1_1_9", "SessionCollection", "Session.v1_6_0",
		"AccountService.v1_13_0", "ManagerAccountCollection", "ManagerAccount.v1_10_0", "RoleCollection", "Role.v1_3_1",
		"ManagerCollection", "Manager.v1_17_0", "ChassisCollection", "Chassis.v1_23_0", "Message.v1_1_2", "Resource.v1_16_0",
		"UpdateService.v1_11_0", "SoftwareInventoryCollection", "SoftwareInventory.v1_10_0", "TaskService.v1_2_0", "TaskCollection", "Task.v1_7_1",
		"ComponentIntegrityCollection", "ComponentIntegrity.v1_2_0", "CertificateCollection", "Certificate.v1_3_0"} {
		file, _, _ := strings.Cut(ns, ".")
		fmt.Fprintf(&b, "  <edmx:Reference Uri=\"http://redfish.dmtf.org/schemas/v1/%s_v1.xml\">\n    <edmx:Include Namespace=\"%s\"/>\n", file, file)
		if ns != file {
			fmt.Fprintf(&b, "    <edmx:Include Namespace=\"%s\"/>\n", ns)
		}
		b.WriteString("  </edmx:Reference>\n")
	}
	b.WriteString(`  <edmx:DataServices>` + "\n" +
		`    <Schema xmlns="http://docs.oasis-open.org/odata/ns/edm" Namespace="Service">` + "\n" +
		`      <EntityContainer Name="Service" Extends="ServiceRoot.v1_15_0.ServiceContainer"/>` + "\n" +
		`    </Schema>` + "\n  </edmx:DataServices>\n</edmx:Edmx>\n")
	return b.String()
}()

// serveRedfish listens on addr:443 (the management address, never the
// wildcard: guests' addresses on the bridge and any other interface get
// nothing) and serves until ctx ends.
func serveRedfish(ctx context.Context, addr netip.Addr, port int, cert tls.Certificate, h http.Handler, log *slog.Logger) (net.Addr, <-chan error, error) {
	if !addr.IsValid() || addr.IsUnspecified() {
		return nil, nil, fmt.Errorf("redfish: no management address to listen on (%v)", addr)
	}
	ln, err := net.Listen("tcp", netip.AddrPortFrom(addr, uint16(port)).String())
	if err != nil {
		return nil, nil, fmt.Errorf("redfish: %w", err)
	}
	srv := &http.Server{
		Handler:           h,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}},
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	done := make(chan error, 1)
	go func() {
		err := srv.ServeTLS(ln, "", "")
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		done <- err
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	return ln.Addr(), done, nil
}

// redfishLine is the console line once the service answers.
func redfishLine(addr net.Addr, keyFrom string) contract.RedfishUp {
	return contract.RedfishUp{URL: "https://" + addr.String() + rf.Root, Key: keyFrom}
}
