package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fwbuild/fwbuild/contract"
)

const sushyUpdateScript = `
import sys, sushy
url, user, password, ca, image = sys.argv[1:6]
s = sushy.Sushy(url, username=user, password=password, verify=ca)
us = s.get_update_service()
tm = us.simple_update(image, transfer_protocol="HTTP")
tm.wait(60)
task = tm.get_task()
print("TASK", task.task_state.value, task.percent_complete, task.task_status.value)
for m in task.messages:
    print("MESSAGE", m.message_id, m.message)
for fw in us.firmware_inventory.get_members():
    print("FIRMWARE", fw.identity, fw.version, fw.updateable, fw.status.state.value, fw.lowest_supported_version)
s._auth.close()
`

// sushy (OpenStack Ironic's library) reads the UpdateService, starts a
// SimpleUpdate from an HTTP server, waits on its task monitor until the
// task ends and reads the FirmwareInventory; curl pushes an artefact as
// multipart/form-data the way DSP0266's example does; redfishtool reads a
// slot raw. (sushy 4.3.3 does not read TransferProtocol@Redfish.AllowableValues:
// it allows every protocol of the schema and leaves the refusal to ctld.)
func TestUpdateClients(t *testing.T) {
	requireClients(t)
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatal("curl missing: run `fwbuild doctor --fix` (apt-get install curl)")
	}
	f := newUpdFixture(t)
	hostport, _, ca := serveFixture(t, f.rfFixture)
	art := f.w.artefact(t, "qemu-q35", "1.3.0+cccccccc", []byte("payload 1.3.0"))
	files := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(art) }))
	defer files.Close()

	out, code := runClient(t, systemPython, "-c", sushyUpdateScript, "https://"+hostport, "operator", opPass, ca, files.URL+"/update.fwu")
	if code != 0 {
		t.Fatalf("sushy: exit %d:\n%s", code, out)
	}
	for _, want := range []string{
		"TASK Completed 100 OK\n",
		"MESSAGE Update.1.0.AwaitToActivate Slot b holds version 1.3.0+cccccccc; the next boot tries it once",
		"FIRMWARE slot-a 1.0.0+aaaaaaaa False Enabled 1.1.0\n",
		"FIRMWARE slot-b 1.3.0+cccccccc True Updating 1.1.0\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("sushy output lacks %q:\n%s", want, out)
		}
	}

	// curl's multipart push of an artefact for another board: 202, and the
	// task says why it was refused.
	wrong := filepath.Join(t.TempDir(), "update.fwu")
	os.WriteFile(wrong, f.w.artefact(t, "qemu-q35-host", "1.3.0+dddddddd", []byte("x")), 0o644)
	before := string(f.w.esp[contract.SlotFile(contract.SlotB)])
	out, code = runClient(t, curl, "-sS", "--cacert", ca, "-u", "admin:"+adminPass, "-D", "-",
		"-F", `UpdateParameters={"@Redfish.OperationApplyTime":"OnReset"};type=application/json`,
		"-F", "UpdateFile=@"+wrong+";type=application/octet-stream", "https://"+hostport+"/redfish/v1/UpdateService/upload")
	if code != 0 || !strings.Contains(out, " 202") {
		t.Fatalf("curl push: exit %d:\n%s", code, out)
	}
	loc := ""
	for _, l := range strings.Split(out, "\r\n") {
		if k, v, ok := strings.Cut(l, ": "); ok && strings.EqualFold(k, "Location") {
			loc = v
		}
	}
	if task := f.wait(t, loc); task.TaskState != "Exception" || !strings.Contains(taskText(task), `artefact is for board "qemu-q35-host"`) ||
		string(f.w.esp[contract.SlotFile(contract.SlotB)]) != before {
		t.Errorf("curl push of a wrong-board artefact: %s\n%s", task.TaskState, taskText(task))
	}

	out, code = runClient(t, "redfishtool", "-r", hostport, "-S", "Always", "-u", "viewer", "-p", viewerPass, "raw", "GET", "/redfish/v1/UpdateService/FirmwareInventory/slot-b")
	if code != 0 || !strings.Contains(out, `"Version": "1.3.0+cccccccc"`) || !strings.Contains(out, `"State": "pending"`) {
		t.Errorf("redfishtool raw GET slot-b: exit %d:\n%s", code, out)
	}
}
