package contract

import (
	"regexp"
	"testing"
)

func TestGuestOSLines(t *testing.T) {
	d := GuestOSDHCP{Name: "debian", Iface: "eth0", IP: "10.0.2.15", Router: "10.0.2.2"}
	if got := d.String(); got != "fwbuild-guestos debian: dhcp eth0 ip=10.0.2.15 router=10.0.2.2" {
		t.Errorf("GuestOSDHCP.String() = %q", got)
	}
	// Forwarded by ctld, the line has a prefix.
	if got, err := ParseGuestOSDHCP(GuestConsole{Name: "debian", Line: d.String()}.String()); err != nil || got != d {
		t.Errorf("ParseGuestOSDHCP = %+v, %v", got, err)
	}
	if !regexp.MustCompile(GuestOSDHCPPattern("debian")).MatchString(d.String()) {
		t.Error("GuestOSDHCPPattern")
	}
	f := GuestOSFetched{Name: "web-1", URL: "http://10.0.2.2:8080/x", Bytes: 42, SHA256: "0ec08c0287c06d1d4ba70109ffd328aa4578a1b01d2d4333956ef751af9b8a71"}
	if got, err := ParseGuestOSFetched(f.String()); err != nil || got != f {
		t.Errorf("ParseGuestOSFetched(%q) = %+v, %v", f.String(), got, err)
	}
	if !regexp.MustCompile(GuestOSFetchedPattern("web-1")).MatchString(f.String()) {
		t.Error("GuestOSFetchedPattern")
	}
	for _, m := range []GuestOSMarker{{Name: "debian", Token: "a3684f4f"}, {Name: "debian", Found: true, Token: "a3684f4f"}} {
		if got, err := ParseGuestOSMarker(m.String()); err != nil || got != m {
			t.Errorf("ParseGuestOSMarker(%q) = %+v, %v", m.String(), got, err)
		}
		if !regexp.MustCompile(GuestOSMarkerPattern("debian")).MatchString(m.String()) {
			t.Errorf("GuestOSMarkerPattern misses %q", m.String())
		}
	}
	r := GuestOSRoot{Name: "debian", Device: "/dev/xvda"}
	if !regexp.MustCompile(GuestOSRootPattern("debian")).MatchString(r.String()) {
		t.Error("GuestOSRootPattern")
	}
	fl := GuestOSFailed{Name: "debian", Step: "dhcp", Reason: "no lease on eth0"}
	if !regexp.MustCompile(GuestOSFailurePattern).MatchString(fl.String()) {
		t.Error("GuestOSFailurePattern")
	}
	for _, bad := range []string{
		"fwbuild-guestos debian: dhcp eth0 10.0.2.15",
		"fwbuild-guestos debian dhcp eth0 ip=1 router=2",
		"fwbuild-guestos ../x: marker found t",
		"fwbuild-guestos debian: marker lost t",
		"fwbuild-guestos debian: fetched u bytes=x sha256=00",
		"fwbuild-guestos debian: fetched u bytes=1 sha256=00",
	} {
		_, e1 := ParseGuestOSDHCP(bad)
		_, e2 := ParseGuestOSMarker(bad)
		_, e3 := ParseGuestOSFetched(bad)
		if e1 == nil || e2 == nil || e3 == nil {
			t.Errorf("%q parsed: %v %v %v", bad, e1, e2, e3)
		}
	}
}

func TestGuestImageArtefact(t *testing.T) {
	if got := GuestImageArtefact("debian", GuestImageRoot); got != "guest-debian-root.img" {
		t.Errorf("GuestImageArtefact = %q", got)
	}
	if got := DataImageFile("debian", GuestImageKernel); got != "/var/lib/fwbuild/data/images/debian/vmlinuz" {
		t.Errorf("DataImageFile = %q", got)
	}
}

func TestGuestRunningType(t *testing.T) {
	for _, g := range []GuestRunning{{Name: "debian", DomID: 2, Type: "pvh"}, {Name: "demo", DomID: 1}} {
		got, err := ParseGuestRunning(GuestConsole{Name: "x", Line: g.String()}.String())
		if err != nil || got != g {
			t.Errorf("ParseGuestRunning(%q) = %+v, %v", g.String(), got, err)
		}
		if !regexp.MustCompile(GuestRunningPattern(g.Name)).MatchString(g.String()) {
			t.Errorf("GuestRunningPattern misses %q", g.String())
		}
	}
	if got := (GuestRunning{Name: "debian", DomID: 2, Type: "pvh"}).String(); got != "fwbuild-ctld: guest debian running domid=2 type=pvh" {
		t.Errorf("String() = %q", got)
	}
	if got := ParseXLType([]byte("name = \"debian\"\ntype = \"pvh\"\nmemory = 256\n")); got != "pvh" {
		t.Errorf("ParseXLType = %q", got)
	}
}
