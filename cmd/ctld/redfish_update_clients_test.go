package main

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/contract"
	"github.com/fwbuild/fwbuild/contract/update"
	"github.com/fwbuild/fwbuild/release"
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
		"MESSAGE Update.1.0.UpdateSuccessful Slot b holds version 1.3.0+cccccccc; the next boot tries it once",
		"MESSAGE Base.1.16.ResetRequired In order to complete the operation, a component reset is required with the Reset action URI '/redfish/v1/Systems/host/Actions/ComputerSystem.Reset' and ResetType 'ForceRestart'.\n",
		"FIRMWARE slot-a 1.0.0 True Enabled 1.1.0\n",
		"FIRMWARE slot-b 1.3.0 False Updating 1.1.0\n",
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
	if code != 0 || !strings.Contains(out, `"Version": "1.3.0+cccccccc"`) || !strings.Contains(out, `"Version": "1.3.0",`) || !strings.Contains(out, `"State": "pending"`) {
		t.Errorf("redfishtool raw GET slot-b: exit %d:\n%s", code, out)
	}
}

// fwupd's own tool (Debian's fwupd 2.0.20, its redfish plugin) installs
// the cabinet fwbuild writes (release.Cabinet: the artefact and its
// metainfo with the board's GUID) through ctld's UpdateService: it finds
// the running slot by its SoftwareId, pushes the artefact as multipart
// with ApplyTime Immediate, polls the task monitor, and takes Base's
// ResetRequired as "needs reboot". ctld writes slot b and reboots the unit.
// A cabinet around another board's artefact fails with ctld's reason.
func TestFwupdInstall(t *testing.T) {
	tool, err := exec.LookPath("fwupdtool")
	if err != nil {
		t.Fatal("fwupdtool missing: run `fwbuild doctor --fix` (apt-get install fwupd)")
	}
	f := newUpdFixture(t)
	hostport, rec, _ := serveFixture(t, f.rfFixture)
	// fwupd reads its configuration and keeps its state where these say,
	// not in /etc and /var.
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "etc/fwupd"), 0o755)
	conf := "[fwupd]\n[redfish]\nUri=https://" + hostport + "\nUsername=operator\nPassword=" + opPass + "\nCACheck=false\n"
	if err := os.WriteFile(filepath.Join(dir, "etc/fwupd/fwupd.conf"), []byte(conf), 0o640); err != nil {
		t.Fatal(err)
	}
	cabinet := func(board string) string {
		v, _ := update.ParseVersion("1.3.0+cccccccc")
		c := release.Cabinet{Board: "qemu-q35", Version: v, GUIDs: []string{contract.DefaultUpdateGUID("qemu-q35")}, Date: time.Unix(1704067200, 0),
			Artefact: f.w.artefact(t, board, "1.3.0+cccccccc", []byte("payload 1.3.0")), ArtefactName: contract.UpdateArtefact}
		cab, err := c.Build()
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), contract.CabinetArtefact("qemu-q35", "1.3.0"))
		os.WriteFile(p, cab, 0o644)
		return p
	}
	fwupd := func(args ...string) (string, int) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		// --no-safety-check: fwupd would refuse a machine without AC power.
		cmd := exec.CommandContext(ctx, tool, append([]string{"--plugins", "redfish", "--no-safety-check", "-v"}, args...)...)
		cmd.Env = append(os.Environ(), "FWUPD_SYSCONFDIR="+filepath.Join(dir, "etc"), "FWUPD_LOCALSTATEDIR="+filepath.Join(dir, "var"))
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	guid := contract.DefaultUpdateGUID("qemu-q35")

	espBefore, varsBefore := f.snapshot()
	out, code := fwupd("install", cabinet("qemu-q35-host"))
	if code == 0 || !strings.Contains(out, `artefact is for board "qemu-q35-host", this is "qemu-q35"`) {
		t.Errorf("fwupdtool install of another board's artefact: exit %d:\n%s", code, tail(out, 30))
	}
	if esp, vars := f.snapshot(); !maps.Equal(esp, espBefore) || !maps.Equal(vars, varsBefore) {
		t.Error("a refused fwupd install changed the ESP or the variables")
	}
	rec.take()

	out, code = fwupd("install", cabinet("qemu-q35"))
	if code != 0 {
		t.Fatalf("fwupdtool install: exit %d:\n%s", code, tail(out, 60))
	}
	if !strings.Contains(out, guid) || !strings.Contains(out, "needs-reboot") {
		t.Errorf("fwupdtool's output lacks the device GUID %s or needs-reboot:\n%s", guid, tail(out, 60))
	}
	if got := string(f.w.esp[contract.SlotFile(contract.SlotB)]); got != "payload 1.3.0" || fmt.Sprint(u16s(f.w.vars["BootNext"])) != "[3841]" {
		t.Errorf("after fwupd: slot b %q, BootNext %v", got, u16s(f.w.vars["BootNext"]))
	}
	reqs := strings.Join(rec.take(), "\n")
	for _, want := range []string{"GET /redfish/v1/UpdateService/FirmwareInventory/slot-a basic", "POST /redfish/v1/UpdateService/upload basic", "GET /redfish/v1/TaskService/Tasks/"} {
		if !strings.Contains(reqs, want) {
			t.Errorf("fwupd's requests lack %q:\n%s", want, reqs)
		}
	}
	// fwupd asks for Immediate: ctld reboots the unit into the new slot.
	select {
	case <-f.rebooted:
	case <-time.After(10 * time.Second):
		t.Error("fwupd's Immediate update did not reboot the unit")
	}
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
