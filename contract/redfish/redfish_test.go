package redfish

import (
	"encoding/json"
	"strings"
	"testing"
)

// An error answer has Redfish's shape: error.code is the first message's
// id, every message is in @Message.ExtendedInfo with the registry's
// version in its id.
func TestErrorShape(t *testing.T) {
	e := NewError(MsgResourceNotFound, "not found", "fix it", "ComputerSystem", "x")
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	body := m["error"]
	info := body["@Message.ExtendedInfo"].([]any)[0].(map[string]any)
	if body["code"] != "Base.1.16.ResourceNotFound" || info["MessageId"] != body["code"] || info["MessageSeverity"] != "Critical" ||
		len(info["MessageArgs"].([]any)) != 2 || info["@odata.type"] != "#Message.v1_1_2.Message" {
		t.Errorf("error JSON: %s", b)
	}
	if s := e.String(); !strings.Contains(s, "not found") || !strings.Contains(s, "fix it") {
		t.Errorf("String: %q", s)
	}
}

func TestPaths(t *testing.T) {
	for got, want := range map[string]string{
		ResetTarget("vm1"):       "/redfish/v1/Systems/vm1/Actions/ComputerSystem.Reset",
		InsertMediaTarget("vm1"): "/redfish/v1/Systems/vm1/VirtualMedia/cd/Actions/VirtualMedia.InsertMedia",
		Session("ab"):            "/redfish/v1/SessionService/Sessions/ab",
		Account("admin"):         "/redfish/v1/AccountService/Accounts/admin",
	} {
		if got != want {
			t.Errorf("%s, want %s", got, want)
		}
	}
}
