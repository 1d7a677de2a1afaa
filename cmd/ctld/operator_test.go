package main

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/fwbuild/fwbuild/contract"
)

func TestOperatorGuests(t *testing.T) {
	a, r, _, _ := withGuests(t, map[string]string{"web": "yes", "db": "no"})
	r.results[xl+" list"] = fakeResult{out: xlListDom0 +
		"web                                          3    64     1     -b----       1.2\n" +
		"stray                                        4   128     1     --p---       0.1\n"}
	var out strings.Builder
	if err := a.operate(context.Background(), []string{"guests"}, &out, nil); err != nil {
		t.Fatal(err)
	}
	rows := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n")[1:] {
		f := strings.Fields(line)
		rows[f[0]] = f[1:]
	}
	want := map[string]string{
		"web":   "yes running 3 64",
		"db":    "no not running - -",
		"stray": "(not in profile) paused 4 128",
	}
	for name, w := range want {
		if got := strings.Join(rows[name], " "); got != w {
			t.Errorf("%s: %q, want %q\n%s", name, got, w, out.String())
		}
	}
	if len(rows) != 3 {
		t.Errorf("%d rows, want 3 (Domain-0 is not a guest):\n%s", len(rows), out.String())
	}
}

func TestOperatorStatus(t *testing.T) {
	a, _, _, _ := withGuests(t, map[string]string{"web": "yes"})
	var out strings.Builder
	if err := a.operate(context.Background(), []string{"status"}, &out, nil); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "xen 4.17.7, dom0 512 MiB, 0 guest domain(s) running\nGUEST") || !strings.Contains(out.String(), "web ") {
		t.Errorf("status output:\n%s", out.String())
	}
	if err := a.operate(context.Background(), []string{"restart"}, &out, nil); err == nil || !strings.Contains(err.Error(), `unknown command "restart"`) {
		t.Errorf("unknown command: %v", err)
	}
}

func TestDomainState(t *testing.T) {
	for s, want := range map[string]string{"r-----": "running", "-b----": "running", "--p---": "paused", "---s--": "shutdown", "----c-": "crashed", "-----d": "dying", "------": "running (------)"} {
		if got := domainState(s); got != want {
			t.Errorf("domainState(%q) = %q, want %q", s, got, want)
		}
	}
}

// ctld start <guest>: the definition on the data disk wins over the
// profile's; a running guest is not started twice; the detached ctld
// (spawn) does the starting.
func TestOperatorStart(t *testing.T) {
	a, r, sys, _ := withGuests(t, map[string]string{"web": "no", "db": "no"})
	sys.files[contract.DataGuestConfig("web")] = "# fwbuild: autostart=no\nname = \"web\"\ntype = \"pvh\"\n"
	r.results[xl+" list db"] = fakeResult{out: "Name ID Mem VCPUs State Time(s)\ndb 4 128 1 -b---- 0.2\n"}
	r.results[xl+" list web"] = fakeResult{err: errors.New("exit status 1: web is an invalid domain identifier (rc=-6)")}
	var spawned []string
	spawn := func(name string) error { spawned = append(spawned, name); return nil }
	var out strings.Builder
	if err := a.operate(context.Background(), []string{"start", "web"}, &out, spawn); err != nil || strings.Join(spawned, " ") != "web" {
		t.Errorf("start web: %v, spawned %v", err, spawned)
	}
	g, err := a.lookupGuest("web")
	if err != nil || g.Config != contract.DataGuestConfig("web") || g.Type != "pvh" {
		t.Errorf("lookupGuest(web) = %+v, %v: want the data disk's definition", g, err)
	}
	if g, err := a.lookupGuest("db"); err != nil || g.Config != guestsDir+"/db.cfg" {
		t.Errorf("lookupGuest(db) = %+v, %v: want the profile's", g, err)
	}
	for args, want := range map[string]string{
		"start db":     "guest db is running already (domid 4)",
		"start nosuch": "guest nosuch: no definition on the data disk or in the profile",
		"start ../etc": `guest name "../etc"`,
		"start":        "usage: ctld start <guest>",
		"start web db": "usage: ctld start <guest>",
		"status extra": `unknown command "status extra"`,
	} {
		if err := a.operate(context.Background(), strings.Fields(args), &out, spawn); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ctld %s: %v, want %q", args, err, want)
		}
	}
	if len(spawned) != 1 {
		t.Errorf("spawned %v", spawned)
	}
}

// A type: auto guest whose kernel runs PVH (the config says pvh and carries
// contract.TypeAutoLine) starts as PV where xl info's virt_caps show no way
// to run an HVM container, and its running line says so; with hap it starts
// as PVH; a guest asked for as pvh explicitly is never changed.
func TestStartGuestPVFallback(t *testing.T) {
	info, err := os.ReadFile("testdata/xl-info.txt") // virt_caps: pv hvm gnttab-v1 gnttab-v2 (TCG, no NPT)
	if err != nil {
		t.Fatal(err)
	}
	withHAP := strings.Replace(string(info), "virt_caps              : pv hvm ", "virt_caps              : pv hvm hvm_directio pv_directio hap ", 1)
	noHVM := strings.Replace(string(info), "virt_caps              : pv hvm ", "virt_caps              : pv ", 1)
	for _, tc := range []struct {
		name, info string
		auto       bool
		wantCreate string // the xl create arguments after the config
		wantLine   string
	}{
		{"no hap", string(info), true, ` type="pv"`, "type=pv (type auto: this CPU cannot run PVH, neither hap nor shadow in virt_caps)"},
		{"no hvm", noHVM, true, ` type="pv"`, "type=pv (type auto: this CPU cannot run PVH, no hvm in virt_caps)"},
		{"hap", withHAP, true, "", "type=pvh\n"},
		{"explicit pvh", string(info), false, "", "type=pvh\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, r, sys, out := withGuests(t, nil)
			cfg := "# fwbuild: autostart=yes\nname = \"debian\"\ntype = \"pvh\"\n"
			if tc.auto {
				cfg = contract.TypeAutoLine + "\n" + cfg
			}
			sys.files[guestsDir+"/debian.cfg"] = cfg
			r.results[xl+" info"] = fakeResult{out: tc.info}
			r.results[xl+" -vvv create "+guestsDir+"/debian.cfg"+tc.wantCreate] = fakeResult{}
			r.results[xl+" list debian"] = fakeResult{out: "Name ID Mem VCPUs State Time(s)\ndebian 2 256 1 -b---- 0.2\n"}
			r.streams[xl+" console debian"] = "Linux version 6.1.0\r\n"
			r.lists = []string{xlListDom0}
			if err := a.startOne(context.Background(), "debian"); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if want := "fwbuild-ctld: guest debian running domid=2 " + tc.wantLine; !strings.Contains(out.String(), want) {
				t.Errorf("output lacks %q:\n%s\ncalls %v", want, out, r.calls)
			}
			if !strings.Contains(out.String(), "[guest debian] Linux version 6.1.0\n") || !strings.Contains(out.String(), "guest debian stopped: gone") {
				t.Errorf("console or stop not reported:\n%s", out)
			}
			if g, err := contract.ParseGuestRunning(strings.Split(out.String()[strings.Index(out.String(), "fwbuild-ctld: guest debian running"):], "\n")[0]); err != nil || (g.Type == "pv") != (tc.wantCreate != "") {
				t.Errorf("parsed running line %+v, %v", g, err)
			}
		})
	}
}
