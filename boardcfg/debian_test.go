package boardcfg

import (
	"strings"
	"testing"
)

func TestCheckPackageName(t *testing.T) {
	for _, ok := range []string{"xen-hypervisor-4.17-amd64", "libc6", "g++", "zlib1g", "0ad", "libstdc++6", "ab"} {
		if err := CheckPackageName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []struct{ name, want string }{
		{"-oAcquire::http::Proxy-Auto-Detect", "must start with"},
		{"--help", "must start with"},
		{"a", "too short"},
		{"", "too short"},
		{"Xen", "must start with"},
		{"xen_hv", `has '_'`},
		{"xen hv", `has ' '`},
		{"xen=1", `has '='`},
		{"xen/hv", `has '/'`},
		{"xen\x00", `has '\x00'`},
		{"xen:amd64", `has ':'`},
		{".xen", "must start with"},
		{"+xen", "must start with"},
		{strings.Repeat("a", 129), "at most 128"},
	} {
		if err := CheckPackageName(bad.name); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: error %v, want %q", bad.name, err, bad.want)
		}
	}
}

func TestCheckVersion(t *testing.T) {
	for _, ok := range []string{"4.17", "4.17.7+13-g2445b30a44-0+deb12u1", "1:1.2.13.dfsg-1", "2.36-9+deb12u14", "1.0~rc1", "0", "1:2:3-4", "1.2-3-4", "10:1.0", "1.0-1~bpo12+1"} {
		if err := CheckVersion(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []struct{ v, want string }{
		{"/path/script", "must start with a digit"},
		{"-oAPT::Update::Pre-Invoke::=x", "epoch before ':' must be digits"},
		{"-1", "must start with a digit"},
		{"", "empty version"},
		{"a1.0", "must start with a digit"},
		{" 1.0", "must start with a digit"},
		{"1.0 ", `has ' '`},
		{"1.0 -oFoo=bar", `has ' '`},
		{"1.0;reboot", `has ';'`},
		{"1.0-", "ends in '-'"},
		{"1.0-1:2", "epoch before ':' must be digits"},
		{"1.0-1-", "ends in '-'"},
		{"1.0-a_b", `has '_' in its revision`},
		{"x:1.0", "epoch before ':' must be digits"},
		{"+1:1.0", "epoch before ':' must be digits"},
		{":1.0", "epoch before ':' must be digits"},
		{"1:", "must start with a digit"},
		{"1:-1", "must start with a digit"},
		{"1.0:2", "epoch before ':' must be digits"},
		{"1:1.0-1:2", `has ':' in its revision`},
		{"١.0", "must start with a digit"},
		{"1.0\n", `has '\n'`},
		{"1.0=2", `has '='`},
		{"1" + strings.Repeat("0", 128), "at most 128"},
	} {
		if err := CheckVersion(bad.v); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: error %v, want %q", bad.v, err, bad.want)
		}
	}
}
