package contract

import (
	"regexp"
	"strings"
	"testing"
)

// A GuestXL config reads back with the parsers ctld uses on the data disk.
func TestGuestXL(t *testing.T) {
	g := GuestXL{Name: "vm1", Type: "pvh", MemoryMiB: 384, VCPUs: 2, Kernel: "/k", Ramdisk: "/i", Extra: "console=hvc0   root=/dev/xvda ",
		Autostart: true, Disks: []string{"/d/root.img"}, CD: "/d/cd.img", Bridge: "xenbr0", MACs: []string{"00:16:3E:00:00:01", ""}}
	b := g.Encode()
	auto, err := ParseAutostart(b)
	if err != nil || !auto || ParseXLType(b) != "pvh" {
		t.Errorf("autostart %v %v type %q", auto, err, ParseXLType(b))
	}
	if n, ok := ParseXLInt(b, "memory"); !ok || n != 384 {
		t.Errorf("memory %d %v", n, ok)
	}
	if n, ok := ParseXLInt(b, "vcpus"); !ok || n != 2 {
		t.Errorf("vcpus %d %v", n, ok)
	}
	if _, ok := ParseXLInt(b, "maxmem"); ok {
		t.Error("maxmem found")
	}
	for _, want := range []string{
		`extra = "console=hvc0 root=/dev/xvda"`,
		`disk = [ "format=raw, vdev=xvda, access=rw, backendtype=phy, script=/bbin/ctld, target=/d/root.img", "format=raw, vdev=xvdb, access=ro, devtype=cdrom, backendtype=phy, script=/bbin/ctld, target=/d/cd.img" ]`,
		`vif = [ "bridge=xenbr0, mac=00:16:3e:00:00:01, script=/bbin/ctld", "bridge=xenbr0, script=/bbin/ctld" ]`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("config lacks %s:\n%s", want, b)
		}
	}
}

func TestRedfishUpLine(t *testing.T) {
	r := RedfishUp{URL: "https://10.0.2.15:443/redfish/v1", Key: "data", Fingerprint: strings.Repeat("ab", 32)}
	got, err := ParseRedfishUp("$ " + r.String())
	if err != nil || got != r {
		t.Errorf("%+v %v", got, err)
	}
	if m := regexp.MustCompile(RedfishPattern).FindStringSubmatch(r.String()); len(m) != 4 || m[1] != r.URL || m[2] != "data" || m[3] != r.Fingerprint {
		t.Errorf("RedfishPattern on %q: %q", r, m)
	}
	for _, bad := range []string{CtldPrefix + "redfish http://x key=data sha256=" + strings.Repeat("ab", 32), CtldPrefix + "redfish https://x key=disk sha256=00"} {
		if _, err := ParseRedfishUp(bad); err == nil {
			t.Errorf("parsed %q", bad)
		}
	}
}
