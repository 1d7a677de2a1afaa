// Package redfish is the part of DMTF Redfish (DSP0266, schema bundle
// 2023.1) that ctld serves and `fwbuild remote` speaks: the resource paths,
// the JSON types of the resources both sides read, and the error format.
// Third-party clients (sushy, redfishtool) read the same JSON, so field
// names are Redfish's. Standard library only, like the contract package.
package redfish

import (
	"fmt"
	"strings"
)

// Paths of the resources. A guest's ComputerSystem is Systems/<guest name>;
// the host's is Systems/HostID.
const (
	Root           = "/redfish/v1"
	Versions       = "/redfish"
	Metadata       = Root + "/$metadata"
	OData          = Root + "/odata"
	Systems        = Root + "/Systems"
	Managers       = Root + "/Managers"
	Chassis        = Root + "/Chassis"
	SessionService = Root + "/SessionService"
	Sessions       = SessionService + "/Sessions"
	AccountService = Root + "/AccountService"
	Accounts       = AccountService + "/Accounts"
	Roles          = AccountService + "/Roles"

	// HostID is the host's system, ManagerID ctld, ChassisID the unit.
	HostID    = "host"
	ManagerID = "ctld"
	ChassisID = "unit"
	// MediaID is each VM's one virtual media slot (a CD).
	MediaID = "cd"
)

// System is the path of a ComputerSystem.
func System(id string) string { return Systems + "/" + id }

// ResetTarget is a system's ComputerSystem.Reset action.
func ResetTarget(id string) string { return System(id) + "/Actions/ComputerSystem.Reset" }

// ResetInfo is a system's ActionInfo for Reset.
func ResetInfo(id string) string { return System(id) + "/ResetActionInfo" }

// VirtualMediaPath is a VM's virtual media collection, VirtualMediaSlot its slot.
func VirtualMediaPath(id string) string { return System(id) + "/VirtualMedia" }
func VirtualMediaSlot(id string) string { return VirtualMediaPath(id) + "/" + MediaID }

// InsertMediaTarget and EjectMediaTarget are the slot's actions.
func InsertMediaTarget(id string) string {
	return VirtualMediaSlot(id) + "/Actions/VirtualMedia.InsertMedia"
}
func EjectMediaTarget(id string) string {
	return VirtualMediaSlot(id) + "/Actions/VirtualMedia.EjectMedia"
}

// ConsoleLog is a VM's console log: GET answers its end as text/plain
// (fwbuild's own resource; Redfish's LogService is a list of events).
func ConsoleLog(id string) string { return System(id) + "/Oem/Fwbuild/ConsoleLog" }

// Session is the path of a session; Account of an account.
func Session(id string) string   { return Sessions + "/" + id }
func Account(user string) string { return Accounts + "/" + user }
func Role(name string) string    { return Roles + "/" + name }

// Header names.
const (
	HeaderToken    = "X-Auth-Token"
	HeaderODataVer = "OData-Version"
)

// ResetType values ctld accepts for a VM (Resource.ResetType). The host
// accepts only ForceRestart.
const (
	ResetOn               = "On"
	ResetForceOff         = "ForceOff"
	ResetGracefulShutdown = "GracefulShutdown"
	ResetForceRestart     = "ForceRestart"
	ResetGracefulRestart  = "GracefulRestart"
)

// VMResetTypes are the values a VM's Reset allows, in the order advertised.
var VMResetTypes = []string{ResetOn, ResetForceOff, ResetGracefulShutdown, ResetForceRestart, ResetGracefulRestart}

// HostResetTypes are the host's.
var HostResetTypes = []string{ResetForceRestart}

// PowerState values (Resource.PowerState).
const (
	PowerOn  = "On"
	PowerOff = "Off"
)

// SystemType values (ComputerSystem.SystemType). A VM is "Virtual", the
// schema's value for "a virtual machine instance running on this system":
// there is no "VirtualMachine" in the enumeration, and sushy maps a value
// outside it to None.
const (
	SystemPhysical = "Physical"
	SystemVM       = "Virtual"
)

// ODataID is a link: {"@odata.id": "/redfish/v1/..."}.
type ODataID struct {
	ID string `json:"@odata.id"`
}

// Collection is a resource collection.
type Collection struct {
	ODataID      string    `json:"@odata.id"`
	ODataType    string    `json:"@odata.type"`
	Name         string    `json:"Name"`
	Members      []ODataID `json:"Members"`
	MembersCount int       `json:"Members@odata.count"`
}

// Status is Resource.Status.
type Status struct {
	State  string `json:"State,omitempty"`  // Enabled, Disabled, Absent, StandbyOffline
	Health string `json:"Health,omitempty"` // OK, Warning, Critical
}

// ComputerSystem is a system (ComputerSystem.v1_20_0): the host or a VM.
type ComputerSystem struct {
	ODataID          string           `json:"@odata.id"`
	ODataType        string           `json:"@odata.type"`
	ID               string           `json:"Id"`
	Name             string           `json:"Name"`
	SystemType       string           `json:"SystemType"`
	PowerState       string           `json:"PowerState"`
	Manufacturer     string           `json:"Manufacturer,omitempty"`
	Model            string           `json:"Model,omitempty"`
	SerialNumber     string           `json:"SerialNumber,omitempty"`
	UUID             string           `json:"UUID,omitempty"`
	HostName         string           `json:"HostName,omitempty"`
	Status           Status           `json:"Status"`
	MemorySummary    MemorySummary    `json:"MemorySummary"`
	ProcessorSummary ProcessorSummary `json:"ProcessorSummary"`
	Boot             Boot             `json:"Boot"`
	Actions          SystemActions    `json:"Actions"`
	VirtualMedia     *ODataID         `json:"VirtualMedia,omitempty"`
	// TrustedModules and Certificates: the host's TPM and its attestation
	// key's certificate (integrity.go), when the unit has a TPM.
	TrustedModules []TrustedModule `json:"TrustedModules,omitempty"`
	Certificates   *ODataID        `json:"Certificates,omitempty"`
	Links          SystemLinks     `json:"Links"`
	Oem            *SystemOem      `json:"Oem,omitempty"`
}

// MemorySummary's TotalSystemMemoryGiB is the system's memory (Redfish
// counts GiB; a VM's MiB are kept exactly in Oem).
type MemorySummary struct {
	TotalSystemMemoryGiB float64 `json:"TotalSystemMemoryGiB"`
}

// ProcessorSummary's Count is the logical processors: the host's CPUs, a
// VM's vCPUs.
type ProcessorSummary struct {
	Count        int `json:"Count"`
	LogicalCount int `json:"LogicalProcessorCount"`
}

// Boot is a system's boot settings. A VM boots its kernel directly (Xen
// PV/PVH): there is no override to choose, and Redfish says so with
// Disabled and the one target None.
type Boot struct {
	BootSourceOverrideEnabled string   `json:"BootSourceOverrideEnabled"`
	BootSourceOverrideTarget  string   `json:"BootSourceOverrideTarget"`
	AllowableTargets          []string `json:"BootSourceOverrideTarget@Redfish.AllowableValues"`
}

// SystemActions holds the Reset action.
type SystemActions struct {
	Reset ResetAction `json:"#ComputerSystem.Reset"`
}

// ResetAction advertises the Reset target, its ActionInfo and the allowed
// values (both: sushy reads AllowableValues, redfishtool either).
type ResetAction struct {
	Target     string   `json:"target"`
	ActionInfo string   `json:"@Redfish.ActionInfo"`
	Allowable  []string `json:"ResetType@Redfish.AllowableValues"`
}

// SystemLinks are a system's links.
type SystemLinks struct {
	ManagedBy []ODataID `json:"ManagedBy"`
	Chassis   []ODataID `json:"Chassis,omitempty"`
}

// SystemOem is fwbuild's own part of a system.
type SystemOem struct {
	Fwbuild SystemFwbuild `json:"Fwbuild"`
}

// SystemFwbuild is what Redfish has no field for: a VM's exact memory, its
// Xen domain id, its virtualization mode and whether it autostarts.
type SystemFwbuild struct {
	MemoryMiB int    `json:"MemoryMiB"`
	DomID     *int   `json:"DomID,omitempty"`
	Type      string `json:"Type,omitempty"` // pv, pvh
	Autostart bool   `json:"Autostart"`
	OnData    bool   `json:"OnDataDisk"` // the definition lives on the data disk (the API can delete it)
	// ConsoleLog links the VM's console log (ConsoleLog(id)).
	ConsoleLog *ODataID `json:"ConsoleLog,omitempty"`
}

// Reset is the body of a Reset POST.
type Reset struct {
	ResetType string `json:"ResetType"`
}

// ActionInfo lists an action's parameters (ActionInfo.v1_3_0).
type ActionInfo struct {
	ODataID    string            `json:"@odata.id"`
	ODataType  string            `json:"@odata.type"`
	ID         string            `json:"Id"`
	Name       string            `json:"Name"`
	Parameters []ActionParameter `json:"Parameters"`
}

// ActionParameter is one parameter of an action.
type ActionParameter struct {
	Name            string   `json:"Name"`
	Required        bool     `json:"Required"`
	DataType        string   `json:"DataType"`
	AllowableValues []string `json:"AllowableValues,omitempty"`
	ObjectDataType  string   `json:"ObjectDataType,omitempty"`
}

// CreateSystem is the body of a POST to Systems: a new VM on the data disk.
// Name, memory and vCPUs are Redfish's own fields; the disks and NICs go
// in Oem.Fwbuild, as Redfish has no composition-free way to say them.
type CreateSystem struct {
	Name             string           `json:"Name"`
	MemorySummary    MemorySummary    `json:"MemorySummary"`
	ProcessorSummary ProcessorSummary `json:"ProcessorSummary"`
	Oem              struct {
		Fwbuild CreateFwbuild `json:"Fwbuild"`
	} `json:"Oem"`
}

// CreateFwbuild is a new VM's boot image, disks and NICs. Image names a
// guest image on the data disk (its kernel and initrd boot the VM); a disk
// with From starts as a copy of an image's root file system, else it is
// empty (sparse). MemoryMiB, if set, wins over MemorySummary's GiB.
type CreateFwbuild struct {
	Image     string       `json:"Image"`
	MemoryMiB int          `json:"MemoryMiB,omitempty"`
	Type      string       `json:"Type,omitempty"` // pv or pvh; default pvh
	Autostart bool         `json:"Autostart,omitempty"`
	Cmdline   string       `json:"Cmdline,omitempty"`
	Disks     []CreateDisk `json:"Disks"`
	NICs      []CreateNIC  `json:"NICs"`
}

// CreateDisk is one virtual disk of a new VM.
type CreateDisk struct {
	Name      string `json:"Name"`
	SizeBytes int64  `json:"SizeBytes"`
	From      string `json:"From,omitempty"`
}

// CreateNIC is one NIC of a new VM, on the management bridge.
type CreateNIC struct {
	MAC string `json:"MAC,omitempty"`
}

// VirtualMedia is a VM's CD slot (VirtualMedia.v1_6_0).
type VirtualMedia struct {
	ODataID        string             `json:"@odata.id"`
	ODataType      string             `json:"@odata.type"`
	ID             string             `json:"Id"`
	Name           string             `json:"Name"`
	MediaTypes     []string           `json:"MediaTypes"`
	Image          string             `json:"Image,omitempty"`
	ImageName      string             `json:"ImageName,omitempty"`
	Inserted       bool               `json:"Inserted"`
	WriteProtected bool               `json:"WriteProtected"`
	ConnectedVia   string             `json:"ConnectedVia"`
	TransferMethod string             `json:"TransferMethod,omitempty"`
	Actions        VirtualMediaAction `json:"Actions"`
}

// VirtualMediaAction holds InsertMedia and EjectMedia.
type VirtualMediaAction struct {
	Insert TargetOnly `json:"#VirtualMedia.InsertMedia"`
	Eject  TargetOnly `json:"#VirtualMedia.EjectMedia"`
}

// TargetOnly is an action with just its target.
type TargetOnly struct {
	Target string `json:"target"`
}

// InsertMedia is the body of InsertMedia: Image is an http(s) URL ctld
// downloads to the data disk; the file is attached read-only.
type InsertMedia struct {
	Image          string `json:"Image"`
	Inserted       *bool  `json:"Inserted,omitempty"`
	WriteProtected *bool  `json:"WriteProtected,omitempty"`
	TransferMethod string `json:"TransferMethod,omitempty"`
}

// SessionCreate is the body of a POST to Sessions.
type SessionCreate struct {
	UserName string `json:"UserName"`
	Password string `json:"Password"`
}

// SessionResource is a session (Session.v1_6_0); the token is only in the
// X-Auth-Token header of the POST's answer.
type SessionResource struct {
	ODataID   string `json:"@odata.id"`
	ODataType string `json:"@odata.type"`
	ID        string `json:"Id"`
	Name      string `json:"Name"`
	UserName  string `json:"UserName"`
}

// SessionServiceResource is the SessionService.
type SessionServiceResource struct {
	ODataID        string  `json:"@odata.id"`
	ODataType      string  `json:"@odata.type"`
	ID             string  `json:"Id"`
	Name           string  `json:"Name"`
	ServiceEnabled bool    `json:"ServiceEnabled"`
	SessionTimeout int     `json:"SessionTimeout"` // seconds of inactivity
	Sessions       ODataID `json:"Sessions"`
}

// AccountServiceResource is the AccountService, with the lockout policy.
type AccountServiceResource struct {
	ODataID                           string  `json:"@odata.id"`
	ODataType                         string  `json:"@odata.type"`
	ID                                string  `json:"Id"`
	Name                              string  `json:"Name"`
	ServiceEnabled                    bool    `json:"ServiceEnabled"`
	AccountLockoutThreshold           int     `json:"AccountLockoutThreshold"`
	AccountLockoutDuration            int     `json:"AccountLockoutDuration"`            // seconds
	AccountLockoutCounterResetAfter   int     `json:"AccountLockoutCounterResetAfter"`   // seconds
	AccountLockoutCounterResetEnabled bool    `json:"AccountLockoutCounterResetEnabled"` //
	Accounts                          ODataID `json:"Accounts"`
	Roles                             ODataID `json:"Roles"`
	LocalAccountAuth                  string  `json:"LocalAccountAuth"`
	MinPasswordLength                 int     `json:"MinPasswordLength,omitempty"`
}

// ManagerAccount is one of the unit's accounts (read-only: they come from
// the unit's record).
type ManagerAccount struct {
	ODataID   string `json:"@odata.id"`
	ODataType string `json:"@odata.type"`
	ID        string `json:"Id"`
	Name      string `json:"Name"`
	UserName  string `json:"UserName"`
	RoleID    string `json:"RoleId"`
	Enabled   bool   `json:"Enabled"`
	Locked    bool   `json:"Locked"`
	// Password is always null on a GET, as Redfish requires.
	Password *string `json:"Password"`
}

// Manager is ctld (Manager.v1_17_0); its consoles are SSH on port 22.
type Manager struct {
	ODataID         string         `json:"@odata.id"`
	ODataType       string         `json:"@odata.type"`
	ID              string         `json:"Id"`
	Name            string         `json:"Name"`
	ManagerType     string         `json:"ManagerType"`
	FirmwareVersion string         `json:"FirmwareVersion,omitempty"`
	UUID            string         `json:"UUID,omitempty"`
	Status          Status         `json:"Status"`
	PowerState      string         `json:"PowerState"`
	SerialConsole   ConsoleService `json:"SerialConsole"`
	CommandShell    ConsoleService `json:"CommandShell"`
	Links           ManagerLinks   `json:"Links"`
}

// ConsoleService advertises a console (Manager.SerialConsole/CommandShell).
type ConsoleService struct {
	ServiceEnabled        bool     `json:"ServiceEnabled"`
	MaxConcurrentSessions int      `json:"MaxConcurrentSessions"`
	ConnectTypesSupported []string `json:"ConnectTypesSupported"`
	SSH                   *Proto   `json:"SSH,omitempty"`
}

// Proto is a console protocol's settings.
type Proto struct {
	ServiceEnabled bool `json:"ServiceEnabled"`
	Port           int  `json:"Port"`
}

// ManagerLinks are ctld's links.
type ManagerLinks struct {
	ManagerForServers []ODataID `json:"ManagerForServers"`
	ManagerInChassis  ODataID   `json:"ManagerInChassis"`
}

// ChassisResource is the unit (Chassis.v1_23_0).
type ChassisResource struct {
	ODataID      string       `json:"@odata.id"`
	ODataType    string       `json:"@odata.type"`
	ID           string       `json:"Id"`
	Name         string       `json:"Name"`
	ChassisType  string       `json:"ChassisType"`
	SerialNumber string       `json:"SerialNumber,omitempty"`
	Model        string       `json:"Model,omitempty"`
	PowerState   string       `json:"PowerState"`
	Status       Status       `json:"Status"`
	Links        ChassisLinks `json:"Links"`
}

// ChassisLinks are the unit's links.
type ChassisLinks struct {
	ComputerSystems []ODataID `json:"ComputerSystems"`
	ManagedBy       []ODataID `json:"ManagedBy"`
}

// ServiceRoot is /redfish/v1 (ServiceRoot.v1_15_0).
type ServiceRoot struct {
	ODataID        string   `json:"@odata.id"`
	ODataType      string   `json:"@odata.type"`
	ID             string   `json:"Id"`
	Name           string   `json:"Name"`
	RedfishVersion string   `json:"RedfishVersion"`
	UUID           string   `json:"UUID"`
	Product        string   `json:"Product"`
	Vendor         string   `json:"Vendor"`
	Systems        ODataID  `json:"Systems"`
	Managers       ODataID  `json:"Managers"`
	Chassis        ODataID  `json:"Chassis"`
	SessionService ODataID  `json:"SessionService"`
	AccountService ODataID  `json:"AccountService"`
	UpdateService  *ODataID `json:"UpdateService,omitempty"`
	Tasks          *ODataID `json:"Tasks,omitempty"`
	// ComponentIntegrity is there when the unit has a TPM.
	ComponentIntegrity *ODataID  `json:"ComponentIntegrity,omitempty"`
	Links              RootLinks `json:"Links"`
}

// RootLinks holds the Sessions link clients log in through.
type RootLinks struct {
	Sessions ODataID `json:"Sessions"`
}

// RedfishVersion is the protocol version ctld implements.
const RedfishVersion = "1.17.0"

// BaseRegistry is the Base message registry version of MessageIds.
const BaseRegistry = "Base.1.16"

// Message ids of the Base registry that ctld answers with.
const (
	MsgSuccess                       = "Success"
	MsgGeneralError                  = "GeneralError"
	MsgResourceNotFound              = "ResourceNotFound"
	MsgNoValidSession                = "NoValidSession"
	MsgInsufficientPrivilege         = "InsufficientPrivilege"
	MsgOperationNotAllowed           = "OperationNotAllowed"
	MsgMalformedJSON                 = "MalformedJSON"
	MsgPropertyMissing               = "PropertyMissing"
	MsgPropertyValueNotInList        = "PropertyValueNotInList"
	MsgPropertyValueFormatError      = "PropertyValueFormatError"
	MsgPropertyUnknown               = "PropertyUnknown"
	MsgResourceAlreadyExists         = "ResourceAlreadyExists"
	MsgResourceInUse                 = "ResourceInUse"
	MsgActionNotSupported            = "ActionNotSupported"
	MsgServiceTemporarilyUnavailable = "ServiceTemporarilyUnavailable"
	MsgCreated                       = "Created"
	MsgResetRequired                 = "ResetRequired"
	MsgActionParameterMissing        = "ActionParameterMissing"
	MsgActionParameterValueFormat    = "ActionParameterValueFormatError"
	MsgActionParameterValueError     = "ActionParameterValueError"
)

// MessageID prefixes a Base message key with the registry's version.
func MessageID(key string) string { return BaseRegistry + "." + key }

// Error is a Redfish error answer: {"error": {...}}.
type Error struct {
	Error ErrorBody `json:"error"`
}

// ErrorBody carries the first message as code/message and every message
// in @Message.ExtendedInfo.
type ErrorBody struct {
	Code         string    `json:"code"`
	Message      string    `json:"message"`
	ExtendedInfo []Message `json:"@Message.ExtendedInfo"`
}

// Message is one Message.v1_1_2 entry.
type Message struct {
	ODataType       string   `json:"@odata.type"`
	MessageID       string   `json:"MessageId"`
	Message         string   `json:"Message"`
	MessageArgs     []string `json:"MessageArgs,omitempty"`
	MessageSeverity string   `json:"MessageSeverity"`
	Severity        string   `json:"Severity"`
	Resolution      string   `json:"Resolution,omitempty"`
}

// NewError builds an error answer with one message.
func NewError(key, message, resolution string, args ...string) Error {
	sev := "Critical"
	if key == MsgPropertyUnknown {
		sev = "Warning"
	}
	m := Message{ODataType: "#Message.v1_1_2.Message", MessageID: MessageID(key), Message: message,
		MessageArgs: args, MessageSeverity: sev, Severity: sev, Resolution: resolution}
	return Error{Error: ErrorBody{Code: MessageID(key), Message: message, ExtendedInfo: []Message{m}}}
}

// String is the error's text, for a client to print.
func (e Error) String() string {
	var b strings.Builder
	b.WriteString(e.Error.Message)
	for _, m := range e.Error.ExtendedInfo {
		if m.Message != e.Error.Message {
			fmt.Fprintf(&b, "; %s", m.Message)
		}
		if m.Resolution != "" {
			fmt.Fprintf(&b, " (%s)", m.Resolution)
		}
	}
	return b.String()
}

// The UpdateService (UpdateService.v1_11_0) and the tasks an update runs
// as (TaskService.v1_2_0, Task.v1_7_1): ctld writes a signed update
// artefact (contract/update) into the ESP's inactive slot.
const (
	UpdateService     = Root + "/UpdateService"
	FirmwareInventory = UpdateService + "/FirmwareInventory"
	// UpdatePush is MultipartHttpPushUri: a multipart/form-data POST with
	// the UpdateParameters JSON part and the UpdateFile part (DSP0266 13.7).
	UpdatePush         = UpdateService + "/upload"
	SimpleUpdateTarget = UpdateService + "/Actions/UpdateService.SimpleUpdate"
	TaskService        = Root + "/TaskService"
	Tasks              = TaskService + "/Tasks"
)

// Firmware is a FirmwareInventory member: one per ESP slot, SlotID(slot).
func Firmware(id string) string { return FirmwareInventory + "/" + id }

// SlotID is a slot's FirmwareInventory Id.
func SlotID(slot string) string { return "slot-" + slot }

// Task is a task's path; TaskMonitor the URI a client polls (the 202's
// Location). Both answer 202 with the task while it runs, then 200.
func Task(id string) string        { return Tasks + "/" + id }
func TaskMonitor(id string) string { return Task(id) + "/Monitor" }

// Multipart part names of an UpdatePush request.
const (
	PartUpdateParameters = "UpdateParameters"
	PartUpdateFile       = "UpdateFile"
)

// Transfer protocols SimpleUpdate accepts.
const (
	ProtocolHTTP  = "HTTP"
	ProtocolHTTPS = "HTTPS"
)

// ApplyTime values (@Redfish.OperationApplyTime): OnReset writes the slot
// and leaves the reboot to the operator (the default); Immediate reboots
// the unit once the slot is written, as a BMC does.
const (
	ApplyOnReset   = "OnReset"
	ApplyImmediate = "Immediate"
)

// Task states and statuses ctld reports.
const (
	TaskNew       = "New"
	TaskRunning   = "Running"
	TaskCompleted = "Completed"
	TaskException = "Exception"
)

// UpdateServiceResource is /redfish/v1/UpdateService.
type UpdateServiceResource struct {
	ODataID              string         `json:"@odata.id"`
	ODataType            string         `json:"@odata.type"`
	ID                   string         `json:"Id"`
	Name                 string         `json:"Name"`
	Description          string         `json:"Description,omitempty"`
	ServiceEnabled       bool           `json:"ServiceEnabled"`
	Status               Status         `json:"Status"`
	MaxImageSizeBytes    int64          `json:"MaxImageSizeBytes,omitempty"`
	MultipartHttpPushUri string         `json:"MultipartHttpPushUri,omitempty"`
	FirmwareInventory    ODataID        `json:"FirmwareInventory"`
	Actions              UpdateActions  `json:"Actions"`
	ApplyTimes           []string       `json:"MultipartHttpPushUri@Redfish.AllowableValues,omitempty"`
	Oem                  map[string]any `json:"Oem,omitempty"`
}

// UpdateActions holds SimpleUpdate.
type UpdateActions struct {
	SimpleUpdate SimpleUpdateAction `json:"#UpdateService.SimpleUpdate"`
}

// SimpleUpdateAction advertises the action's target and protocols.
type SimpleUpdateAction struct {
	Target    string   `json:"target"`
	Protocols []string `json:"TransferProtocol@Redfish.AllowableValues"`
}

// UpdateOem is the fwbuild Oem block of an update request: a downgrade
// (an artefact older than the running payload) must be asked for.
type UpdateOem struct {
	Fwbuild *UpdateFwbuild `json:"fwbuild,omitempty"`
}

// UpdateFwbuild is what UpdateOem carries.
type UpdateFwbuild struct {
	AllowDowngrade bool `json:"AllowDowngrade,omitempty"`
}

// SimpleUpdate is the SimpleUpdate action's body.
type SimpleUpdate struct {
	ImageURI         string     `json:"ImageURI"`
	TransferProtocol string     `json:"TransferProtocol,omitempty"`
	Targets          []string   `json:"Targets,omitempty"`
	Username         string     `json:"Username,omitempty"`
	Password         string     `json:"Password,omitempty"`
	ApplyTime        string     `json:"@Redfish.OperationApplyTime,omitempty"`
	Oem              *UpdateOem `json:"Oem,omitempty"`
}

// UpdateParameters is the UpdateParameters part of a multipart push.
type UpdateParameters struct {
	Targets   []string   `json:"Targets,omitempty"`
	ApplyTime string     `json:"@Redfish.OperationApplyTime,omitempty"`
	Oem       *UpdateOem `json:"Oem,omitempty"`
}

// SoftwareInventory is a FirmwareInventory member (SoftwareInventory.v1_10_0):
// one ESP slot.
type SoftwareInventory struct {
	ODataID        string `json:"@odata.id"`
	ODataType      string `json:"@odata.type"`
	ID             string `json:"Id"`
	Name           string `json:"Name"`
	Description    string `json:"Description,omitempty"`
	Version        string `json:"Version"`
	SoftwareID     string `json:"SoftwareId"`
	Manufacturer   string `json:"Manufacturer,omitempty"`
	Updateable     bool   `json:"Updateable"`
	WriteProtected bool   `json:"WriteProtected"`
	// LowestSupportedVersion is the profile's update.min_version.
	LowestSupportedVersion string        `json:"LowestSupportedVersion,omitempty"`
	Status                 Status        `json:"Status"`
	Oem                    *InventoryOem `json:"Oem,omitempty"`
}

// InventoryOem is a slot's fwbuild Oem block.
type InventoryOem struct {
	Fwbuild SlotView `json:"fwbuild"`
}

// SlotView is one slot's state as the inventory shows it.
type SlotView struct {
	Slot string `json:"Slot"`
	// Version is the payload's full version, with the build's content hash
	// (SoftwareInventory's Version is MAJOR.MINOR.PATCH alone: fwupd
	// compares it with a cabinet's triplet and refuses another format).
	Version string `json:"Version,omitempty"`
	// State is contract's slot state: empty, confirmed, pending, trying, failed.
	State string `json:"State"`
	// Active: BootOrder starts with it. Running: this boot runs it.
	Active  bool   `json:"Active"`
	Running bool   `json:"Running"`
	SHA256  string `json:"SHA256,omitempty"`
	Size    int64  `json:"Size,omitempty"`
	Note    string `json:"Note,omitempty"`
}

// TaskResource is a task (Task.v1_7_1).
type TaskResource struct {
	ODataID         string    `json:"@odata.id"`
	ODataType       string    `json:"@odata.type"`
	ID              string    `json:"Id"`
	Name            string    `json:"Name"`
	TaskState       string    `json:"TaskState"`
	TaskStatus      string    `json:"TaskStatus"`
	StartTime       string    `json:"StartTime"`
	EndTime         string    `json:"EndTime,omitempty"`
	PercentComplete int       `json:"PercentComplete"`
	TaskMonitor     string    `json:"TaskMonitor"`
	Messages        []Message `json:"Messages"`
}

// TaskServiceResource is /redfish/v1/TaskService.
type TaskServiceResource struct {
	ODataID                         string  `json:"@odata.id"`
	ODataType                       string  `json:"@odata.type"`
	ID                              string  `json:"Id"`
	Name                            string  `json:"Name"`
	ServiceEnabled                  bool    `json:"ServiceEnabled"`
	CompletedTaskOverWritePolicy    string  `json:"CompletedTaskOverWritePolicy"`
	LifeCycleEventOnTaskStateChange bool    `json:"LifeCycleEventOnTaskStateChange"`
	Tasks                           ODataID `json:"Tasks"`
}

// UpdateRegistry is the Update message registry of a task's messages.
const UpdateRegistry = "Update.1.0"

// Update registry message keys ctld uses.
const (
	MsgUpdateInProgress   = "UpdateInProgress"
	MsgUpdateSuccessful   = "UpdateSuccessful"
	MsgTransferFailed     = "TransferFailed"
	MsgVerificationFailed = "VerificationFailed"
	MsgApplyFailed        = "ApplyFailed"
)

// UpdateMessage is a task message from the Update registry.
func UpdateMessage(key, severity, message string, args ...string) Message {
	return Message{ODataType: "#Message.v1_1_2.Message", MessageID: UpdateRegistry + "." + key, Message: message,
		MessageArgs: args, MessageSeverity: severity, Severity: severity}
}
