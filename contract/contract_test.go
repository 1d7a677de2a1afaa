package contract

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestGuestsRegionRoundTrip(t *testing.T) {
	r := GuestsRegion{Addr: 0xff010000, Size: 0x3f0000}
	if got := r.String(); got != "fwbuild.guests=0xff010000,0x3f0000" {
		t.Fatalf("String() = %q", got)
	}
	got, ok, err := ParseGuestsRegion("console=hvc0 " + r.String() + " quiet")
	if !ok || err != nil || got != r {
		t.Fatalf("ParseGuestsRegion = %+v, %v, %v", got, ok, err)
	}
	if _, ok, err := ParseGuestsRegion("console=hvc0"); ok || err != nil {
		t.Errorf("no parameter: ok %v, err %v", ok, err)
	}
	pinned := GuestsRegion{Addr: 0xff010000, Size: 0x3f0000, SHA256: strings.Repeat("ab", 32)}
	if got, _, err := ParseGuestsRegion(pinned.String()); err != nil || got != pinned || !strings.HasSuffix(pinned.String(), ",sha256:"+pinned.SHA256) {
		t.Errorf("pinned: %q parses as %+v, %v", pinned.String(), got, err)
	}
	for _, bad := range []string{"fwbuild.guests=1,2,sha256:ab", "fwbuild.guests=1,2,md5:" + strings.Repeat("ab", 32), "fwbuild.guests=1,2,sha256:" + strings.Repeat("AB", 32)} {
		if _, ok, err := ParseGuestsRegion(bad); !ok || err == nil || !strings.Contains(err.Error(), "sha256:<64 lower-case hex digits>") {
			t.Errorf("%s: ok %v, err %v", bad, ok, err)
		}
	}
	for _, bad := range []string{"fwbuild.guests=0xff010000", "fwbuild.guests=x,0x100", "fwbuild.guests=0x100,0", "fwbuild.guests=0xffffffffffffff00,0x1000"} {
		if _, ok, err := ParseGuestsRegion(bad); !ok || err == nil || !strings.Contains(err.Error(), "want fwbuild.guests=<address>,<size>") {
			t.Errorf("%s: ok %v, err %v", bad, ok, err)
		}
	}
}

func TestParseGuestParams(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want GuestParams
		err  string
	}{
		{"console=hvc0 fwbuild.guest=web fwbuild.after=run quiet\n", GuestParams{"web", "run"}, ""},
		{"fwbuild.guest=db", GuestParams{"db", ""}, ""},
		{"fwbuild.after=poweroff fwbuild.guest=a fwbuild.guest=b", GuestParams{"b", "poweroff"}, ""},
		{"console=hvc0 quiet", GuestParams{}, "no fwbuild.guest=<name> on the kernel command line \"console=hvc0 quiet\""},
		{"fwbuild.guest=web fwbuild.after=reboot", GuestParams{"web", ""}, "fwbuild.after=reboot: want poweroff or run"},
	} {
		got, err := ParseGuestParams(tc.in)
		if got != tc.want {
			t.Errorf("ParseGuestParams(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
		if (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ParseGuestParams(%q) error %v, want %q", tc.in, err, tc.err)
		}
	}
	p := GuestParams{Name: "demo", After: AfterPoweroff}
	if got, err := ParseGuestParams("console=hvc0 " + p.String()); err != nil || got != p {
		t.Errorf("round trip of %q: %+v, %v", p.String(), got, err)
	}
}

func TestAutostart(t *testing.T) {
	for _, want := range []bool{true, false} {
		cfg := AutostartLine(want) + "\nname = \"x\"\n"
		if got, err := ParseAutostart([]byte(cfg)); err != nil || got != want {
			t.Errorf("ParseAutostart(%q) = %v, %v", cfg, got, err)
		}
	}
	if got, err := ParseAutostart([]byte("name = \"x\"\n")); err != nil || got {
		t.Errorf("no tag: %v, %v", got, err)
	}
	if _, err := ParseAutostart([]byte(AutostartTag + "maybe\n")); err == nil || !strings.Contains(err.Error(), "want autostart=yes or autostart=no") {
		t.Errorf("bad tag: %v", err)
	}
}

func TestPaths(t *testing.T) {
	if GuestConfig("demo") != GuestsDir+"/demo.cfg" || GuestKernel("demo") != GuestImagesDir+"/demo/vmlinuz" || GuestInitrd("demo") != GuestImagesDir+"/demo/initrd" {
		t.Error(GuestConfig("demo"), GuestKernel("demo"), GuestInitrd("demo"))
	}
	for _, n := range []string{"", ".", "..", "a/b", "a b", "ü"} {
		if ValidGuestName(n) {
			t.Errorf("ValidGuestName(%q) = true", n)
		}
	}
	if !ValidGuestName("web-1.a_b") {
		t.Error("ValidGuestName(web-1.a_b) = false")
	}
}

// Each console line, printed by String and read back by its parser and its
// pattern, after a shell prompt as it arrives on a serial console.
func TestConsoleLinesRoundTrip(t *testing.T) {
	ready := Ready{Xen: "4.17.7", Dom0MemMiB: 512, Guests: 1}
	if got := ready.String(); got != "fwbuild-ctld: ready xen=4.17.7 dom0_mem=512 guests=1" {
		t.Fatalf("Ready.String() = %q", got)
	}
	if got, err := ParseReady("$ " + ready.String()); err != nil || got != ready {
		t.Errorf("ParseReady = %+v, %v", got, err)
	}
	if _, err := ParseReady("fwbuild-ctld: FAILED mount: x"); err == nil {
		t.Error("ParseReady accepted a FAILED line")
	}

	run := GuestRunning{Name: "demo", DomID: 3}
	if got, err := ParseGuestRunning(run.String()); err != nil || got != run {
		t.Errorf("ParseGuestRunning = %+v, %v", got, err)
	}
	for _, r := range []GuestRunning{{Name: "debian", DomID: 1, Type: "pvh"}, {Name: "debian", DomID: 2, Type: "pv", Why: "type auto: this CPU cannot run PVH, neither hap nor shadow in virt_caps"}} {
		if got, err := ParseGuestRunning(r.String()); err != nil || got != r {
			t.Errorf("ParseGuestRunning(%q) = %+v, %v", r.String(), got, err)
		}
	}
	if !regexp.MustCompile(GuestRunningPattern("demo")).MatchString(run.String()) || regexp.MustCompile(GuestRunningPattern("dem.")).MatchString("fwbuild-ctld: guest demx running domid=3") {
		t.Error("GuestRunningPattern")
	}
	up := GuestUp{Name: "demo", DomID: 3}
	if got := up.String(); got != "fwbuild-guest demo: up domid=3" {
		t.Fatalf("GuestUp.String() = %q", got)
	}
	if got, err := ParseGuestUp(GuestConsole{Name: "demo", Line: up.String()}.String()); err != nil || got != up {
		t.Errorf("ParseGuestUp = %+v, %v", got, err)
	}
	if !regexp.MustCompile(GuestUpPattern("demo")).MatchString(up.String()) {
		t.Error("GuestUpPattern")
	}

	st := Status{Xen: "4.17.7", Dom0MemMiB: 511, Running: 0}
	if got, err := ParseStatus(st.String()); err != nil || got != st {
		t.Errorf("ParseStatus(%q) = %+v, %v", st.String(), got, err)
	}
	row, err := ParseGuestRow("demo", "demo   yes        not running  -      -")
	if err != nil || row != (GuestRow{Name: "demo", Autostart: true, State: "not running"}) {
		t.Errorf("ParseGuestRow = %+v, %v", row, err)
	}

	fail := regexp.MustCompile(FailurePattern)
	for _, l := range []string{
		Failed{Step: "guests", Reason: "guests region at 0x1: bad\nnews"}.String(),
		GuestFailed{Name: "demo", Reason: "xl create: exit 1"}.String(),
		GuestFailed{Reason: "no toolstack"}.String(),
		GuestStopped{Name: "demo", Why: "crashed"}.String(),
	} {
		if strings.Contains(l, "\n") || !fail.MatchString(l) {
			t.Errorf("failure line %q: one line, matched by FailurePattern", l)
		}
	}
	for _, l := range []string{ready.String(), run.String(), GuestStopped{Name: "demo", Why: "shutdown"}.String(), BundleLoaded{Addr: 0xff010000, Files: 3}.String()} {
		if fail.MatchString(l) {
			t.Errorf("FailurePattern matches %q", l)
		}
	}
}

func TestGuestImagesRoundTrip(t *testing.T) {
	in := GuestImages{Files: []GuestImageFile{{Image: "debian", Name: "vmlinuz", Size: 3, SHA256: strings.Repeat("ab", 32), MediaPath: "debian/vmlinuz"}}}
	b, err := in.Encode()
	if err != nil {
		t.Fatal(err)
	}
	out, err := ParseGuestImages(b)
	if err != nil || len(out.Files) != 1 || out.Files[0] != in.Files[0] {
		t.Fatalf("round trip: %+v, %v", out, err)
	}
	for _, bad := range []GuestImageFile{
		{Image: "../x", Name: "k", Size: 1, SHA256: strings.Repeat("0", 64), URL: "http://h/k"},
		{Image: "d", Name: "k", Size: 1, SHA256: strings.Repeat("G", 64), URL: "http://h/k"},
		{Image: "d", Name: "k", Size: 0, SHA256: strings.Repeat("0", 64), URL: "http://h/k"},
		{Image: "d", Name: "k", Size: 1, SHA256: strings.Repeat("0", 64)},
	} {
		if _, err := (GuestImages{Files: []GuestImageFile{bad}}).Encode(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestPayloadVersionLine(t *testing.T) {
	l := PayloadVersion{Version: "1.4.0+3f2a9c1e"}.String()
	if !regexp.MustCompile(PayloadVersionPattern).MatchString("$ " + l) {
		t.Errorf("pattern does not match %q", l)
	}
	p, err := ParsePayloadVersion("$ " + l)
	if err != nil || p.Version != "1.4.0+3f2a9c1e" {
		t.Errorf("parse %q: %+v %v", l, p, err)
	}
	if v, ok := ParseVersionArg("console=hvc0 " + VersionArg("1.4.0+3f2a9c1e") + " quiet"); !ok || v != "1.4.0+3f2a9c1e" {
		t.Errorf("version arg: %q %v", v, ok)
	}
	if _, ok := ParseVersionArg("console=hvc0 fwbuild.version="); ok {
		t.Error("empty version arg accepted")
	}
}

func TestStepRoundTrip(t *testing.T) {
	s := Step{Name: GuestStepName("web.1", GuestPhaseCreate), Took: 1234 * time.Millisecond, At: 15021 * time.Millisecond}
	line := "$ " + s.String()
	if s.String() != "fwbuild-ctld: step guest web.1 create took=1234ms at=15021ms" {
		t.Fatalf("String() = %q", s.String())
	}
	got, err := ParseStep(line)
	if err != nil || got != s || got.Start() != 13787*time.Millisecond {
		t.Fatalf("ParseStep(%q) = %+v, %v", line, got, err)
	}
	m := regexp.MustCompile(StepPattern).FindStringSubmatch(line)
	if m == nil || m[1] != "guest web.1 create" || m[2] != "1234" || m[3] != "15021" {
		t.Errorf("StepPattern on %q: %q", line, m)
	}
	for _, bad := range []string{
		"fwbuild-ctld: step  took=1ms at=2ms",
		"fwbuild-ctld: step a  b took=1ms at=2ms",
		"fwbuild-ctld: step xenstored took=-1ms at=2ms",
		"fwbuild-ctld: step xenstored took=1s at=2ms",
		"fwbuild-ctld: ready xen=4.17.7 dom0_mem=512 guests=0",
	} {
		if s, err := ParseStep(bad); err == nil {
			t.Errorf("ParseStep(%q) = %+v, want an error", bad, s)
		}
	}
}
