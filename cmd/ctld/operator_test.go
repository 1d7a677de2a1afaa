package main

import (
	"context"
	"strings"
	"testing"
)

func TestOperatorGuests(t *testing.T) {
	a, r, _, _ := withGuests(t, map[string]string{"web": "yes", "db": "no"})
	r.results[xl+" list"] = fakeResult{out: xlListDom0 +
		"web                                          3    64     1     -b----       1.2\n" +
		"stray                                        4   128     1     --p---       0.1\n"}
	var out strings.Builder
	if err := a.operate(context.Background(), "guests", &out); err != nil {
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
	if err := a.operate(context.Background(), "status", &out); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "xen 4.17.7, dom0 512 MiB, 0 guest domain(s) running\nGUEST") || !strings.Contains(out.String(), "web ") {
		t.Errorf("status output:\n%s", out.String())
	}
	if err := a.operate(context.Background(), "restart", &out); err == nil || !strings.Contains(err.Error(), `unknown command "restart"`) {
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
