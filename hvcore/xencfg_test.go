package hvcore

import (
	"strings"
	"testing"
)

func TestXenConfig(t *testing.T) {
	xo := "console=com1 com1=115200,8n1 dom0_mem=512M,max:512M"
	cases := []struct {
		c     XenConfigSpec
		lines []string
	}{
		{XenConfigSpec{XenOptions: xo, Dom0Cmdline: "console=hvc0 earlyprintk=xen"}, []string{
			"[global]", "default=xen", "", "[xen]", "options=" + xo,
			"kernel=vmlinuz console=hvc0 earlyprintk=xen", "ramdisk=initrd.img"}},
		{XenConfigSpec{Ucode: true, XSM: true}, []string{
			"[global]", "default=xen", "", "[xen]", "options=", "kernel=vmlinuz", "ramdisk=initrd.img",
			"ucode=ucode.bin", "xsm=xsm.cfg"}},
	}
	for _, c := range cases {
		got, err := XenConfig(c.c)
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.Join(c.lines, "\n") + "\n"; string(got) != want {
			t.Errorf("XenConfig(%+v) =\n%s\nwant\n%s", c.c, got, want)
		}
	}
}

func TestXenConfigRejects(t *testing.T) {
	cases := []struct {
		c     XenConfigSpec
		field string
	}{
		{XenConfigSpec{XenOptions: "console=com1\nkernel=evil"}, "Xen options"},
		{XenConfigSpec{Dom0Cmdline: "quiet\r"}, "dom0 command line"},
		{XenConfigSpec{Dom0Cmdline: "a\tb"}, "dom0 command line"},
		{XenConfigSpec{XenOptions: "loglvl=all caf\u00e9"}, "Xen options"},
		{XenConfigSpec{Dom0Cmdline: "x\x00"}, "dom0 command line"},
	}
	for _, c := range cases {
		_, err := XenConfig(c.c)
		if err == nil || !strings.Contains(err.Error(), c.field) || !strings.Contains(err.Error(), "printable ASCII") {
			t.Errorf("XenConfig(%+v) error = %v, want one naming %q", c.c, err, c.field)
		}
	}
}
