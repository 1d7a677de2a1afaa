package main

import (
	"context"
	"errors"
	"io"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/contract"
)

const (
	guestsDir = "/etc/fwbuild/guests"
	xl        = xenBin + "/xl"
)

// withGuests adds guest configs to world; cfgs maps a name to its autostart
// value ("" for no comment).
func withGuests(t *testing.T, cfgs map[string]string) (*agent, *fakeRunner, *fakeSystem, *strings.Builder) {
	t.Helper()
	a, r, sys, _ := world(t)
	sys.files[guestsDir] = ""
	for name, auto := range cfgs {
		c := "name = \"" + name + "\"\ntype = \"pv\"\nkernel = \"/var/lib/fwbuild/guests/" + name + "/vmlinuz\"\n"
		if auto != "" {
			c = "# fwbuild: autostart=" + auto + "\n" + c
		}
		sys.files[guestsDir+"/"+name+".cfg"] = c
	}
	var out strings.Builder
	a.out = &out
	a.cfg.XenBin = xenBin
	a.cfg.GuestPoll = time.Millisecond
	a.cfg.GuestWatch = 5 * time.Second
	r.streams = map[string]string{}
	return a, r, sys, &out
}

func TestReadyLineCountsGuestConfigs(t *testing.T) {
	a, _, _, out := withGuests(t, map[string]string{"web": "yes", "db": "no", "spare": ""})
	if err := a.start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "fwbuild-ctld: ready xen=4.17.7 dom0_mem=512 guests=3\n"; got != want {
		t.Errorf("output %q, want %q", got, want)
	}
	var names []string
	for _, g := range a.autostart() {
		names = append(names, g.Name)
	}
	if strings.Join(names, ",") != "web" {
		t.Errorf("autostart guests %v, want [web]", names)
	}
}

func TestNoGuestsDirIsUnchanged(t *testing.T) {
	a, r, _, out := world(t)
	if err := a.start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "fwbuild-ctld: ready xen=4.17.7 dom0_mem=512 guests=0\n"; got != want {
		t.Errorf("output %q, want %q", got, want)
	}
	if len(a.autostart()) != 0 {
		t.Errorf("autostart %v without a guests dir", a.autostart())
	}
	for _, c := range r.calls {
		if strings.Contains(c, "create") || strings.HasPrefix(c, "stream") {
			t.Errorf("ran %q without guests", c)
		}
	}
}

func TestBadGuestConfigFailsStart(t *testing.T) {
	for name, tc := range map[string]struct{ file, content, want string }{
		"autostart": {guestsDir + "/web.cfg", "# fwbuild: autostart=maybe\n", `FAILED guests: /etc/fwbuild/guests/web.cfg: "# fwbuild: autostart=maybe": want autostart=yes`},
		"name":      {guestsDir + "/we b.cfg", "", `FAILED guests: /etc/fwbuild/guests/we b.cfg: guest name "we b"`},
	} {
		t.Run(name, func(t *testing.T) {
			a, _, sys, out := withGuests(t, nil)
			sys.files[tc.file] = tc.content
			if err := a.start(context.Background()); err == nil {
				t.Fatal("start succeeded")
			}
			if !strings.Contains(out.String(), tc.want) {
				t.Errorf("output %q, want %q", out.String(), tc.want)
			}
		})
	}
}

func TestRunGuests(t *testing.T) {
	a, r, _, out := withGuests(t, map[string]string{"web": "yes", "bad": "yes", "idle": "no", "crash": "yes"})
	xlLog, err := os.ReadFile("testdata/xl-create-pv.log")
	if err != nil {
		t.Fatal(err)
	}
	r.results[xl+" -vvv create "+guestsDir+"/web.cfg"] = fakeResult{log: string(xlLog)}
	r.results[xl+" -vvv create "+guestsDir+"/crash.cfg"] = fakeResult{}
	r.results[xl+" -vvv create "+guestsDir+"/bad.cfg"] = fakeResult{err: errors.New(xl + " -vvv create " + guestsDir + "/bad.cfg: exit status 3: libxl: error: libxl_dom.c:592: Domain 4:failed to build: Cannot allocate memory")}
	r.results[xl+" list web"] = fakeResult{out: "Name ID Mem VCPUs State Time(s)\nweb 5 128 1 -b---- 0.2\n"}
	r.results[xl+" list crash"] = fakeResult{out: "Name ID Mem VCPUs State Time(s)\ncrash 6 64 1 r----- 0.1\n"}
	r.streams[xl+" console web"] = "Linux version 6.1.0\r\nfwbuild-guest web: up domid=5\r\npartial"
	r.streams[xl+" console crash"] = ""
	r.lists = []string{
		xlListDom0 + "web 5 128 1 -b---- 0.2\ncrash 6 64 1 r----- 0.1\n",
		xlListDom0 + "web 5 128 1 -b---- 0.2\ncrash 6 64 1 ----c- 0.3\n",
		xlListDom0,
	}
	a.steps = out
	if err := a.runGuests(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	// Each started guest's phases are timed, in order, before its running line.
	for _, g := range []string{"web", "crash"} {
		var at []int
		for _, p := range []string{"step guest " + g + " create took=", "step guest " + g + " console took=", "step guest " + g + " domid took=", "guest " + g + " running"} {
			at = append(at, strings.Index(got, p))
		}
		if !sort.IntsAreSorted(at) || at[0] < 0 {
			t.Errorf("guest %s: phases and running line at %v:\n%s", g, at, got)
		}
	}
	// web's xl printed its log: its create is split into xl's phases, each
	// timed before the create step ends; crash's printed none.
	var at []int
	for _, p := range []string{contract.GuestPhaseXL, contract.GuestPhaseDomain, contract.GuestPhaseKernel, contract.GuestPhaseBuild, contract.GuestPhaseDevices, contract.GuestPhaseUnpause, contract.GuestPhaseCreate} {
		at = append(at, strings.Index(got, "step "+contract.GuestStepName("web", p)+" took="))
	}
	if !sort.IntsAreSorted(at) || at[0] < 0 {
		t.Errorf("web's create phases at %v:\n%s", at, got)
	}
	if strings.Contains(got, "step guest crash create.") {
		t.Errorf("phases of a create without a log:\n%s", got)
	}
	if !strings.Contains(got, "step guest bad create took=") || strings.Contains(got, "step guest bad console") {
		t.Errorf("the failed create is timed, and nothing after it:\n%s", got)
	}
	for _, want := range []string{
		"fwbuild-ctld: guest bad FAILED: " + xl + " -vvv create " + guestsDir + "/bad.cfg: exit status 3: libxl: error: libxl_dom.c:592: Domain 4:failed to build: Cannot allocate memory\n",
		"fwbuild-ctld: guest web running domid=5 type=pv\n", // the type line of the test configs
		"fwbuild-ctld: guest crash running domid=6 type=pv\n",
		"[guest web] Linux version 6.1.0\n",
		"[guest web] fwbuild-guest web: up domid=5\n",
		"[guest web] partial\n",
		"fwbuild-ctld: guest crash stopped: crashed\n",
		"fwbuild-ctld: guest web stopped: gone\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Count(got, "stopped") != 2 || strings.Contains(got, "idle") || strings.Contains(got, "\r") {
		t.Errorf("output:\n%s", got)
	}
	if strings.Index(got, "guest crash stopped") > strings.Index(got, "guest web stopped") {
		t.Errorf("crash reported after web left:\n%s", got)
	}
	if contains(r.calls, xl+" -vvv create "+guestsDir+"/idle.cfg") {
		t.Error("created a guest with autostart=no")
	}
}

func TestRunGuestsNotListed(t *testing.T) {
	a, r, _, out := withGuests(t, map[string]string{"web": "yes"})
	r.results[xl+" -vvv create "+guestsDir+"/web.cfg"] = fakeResult{}
	r.results[xl+" list web"] = fakeResult{err: errors.New(xl + " list web: exit status 1: web is an invalid domain identifier (rc=-6)")}
	r.streams[xl+" console web"] = ""
	if err := a.runGuests(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := "fwbuild-ctld: guest web FAILED: " + xl + " list web: exit status 1: web is an invalid domain identifier (rc=-6)\n"
	if out.String() != want {
		t.Errorf("output %q, want %q", out.String(), want)
	}
}

func TestWatchGivesUp(t *testing.T) {
	a, r, _, out := withGuests(t, nil)
	a.cfg.GuestWatch = 20 * time.Millisecond
	r.lists = []string{xlListDom0 + "web 5 128 1 -b---- 0.2\n"}
	a.watch(context.Background(), []string{"web"}, func(n string) { t.Errorf("%s reported stopped", n) })
	if out.String() != "" {
		t.Errorf("output %q for a running guest", out.String())
	}
}

func TestStoppedState(t *testing.T) {
	for s, want := range map[string]string{"r-----": "", "-b----": "", "--p---": "", "---s--": "shutdown", "----c-": "crashed", "-----d": "dying", "---sc-": "crashed", "": "", "d": ""} {
		if got := stoppedState(s); got != want {
			t.Errorf("stoppedState(%q) = %q, want %q", s, got, want)
		}
	}
}

// A full-screen program's output without a newline is forwarded once the
// console has been quiet for consoleQuiet; complete lines at once.
func TestForwardConsoleFlushesQuietLine(t *testing.T) {
	pr, pw := io.Pipe()
	var out syncBuffer
	a := &agent{out: &out}
	done := make(chan struct{})
	go func() { a.forwardConsole("installer", pr); close(done) }()
	io.WriteString(pw, "line one\r\n\x1b[1;1H  Select a language")
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "Select a language") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	io.WriteString(pw, " more\r\n")
	pw.Close()
	<-done
	want := "[guest installer] line one\n[guest installer] \x1b[1;1H  Select a language\n[guest installer]  more\n"
	if out.String() != want {
		t.Errorf("forwarded %q, want %q", out.String(), want)
	}
}
