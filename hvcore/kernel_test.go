package hvcore

import (
	"encoding/binary"
	"os"
	"strings"
	"testing"

	"github.com/fwbuild/fwbuild/internal/testdeps"
)

func readFile(t testing.TB, component, role string) []byte {
	t.Helper()
	b, err := os.ReadFile(testdeps.File(t, component, role))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCheckDom0Kernel(t *testing.T) {
	stock := readFile(t, "linux-image", "bzimage")
	stockCfg := readFile(t, "linux-image", "config")
	if err := CheckDom0Kernel(stock, stockCfg, "linux-image-6.1.0-47-amd64-unsigned"); err != nil {
		t.Fatalf("Debian's amd64 kernel refused: %v", err)
	}

	cloud := readFile(t, "linux-image-cloud", "bzimage")
	cloudCfg := readFile(t, "linux-image-cloud", "config")
	err := CheckDom0Kernel(cloud, cloudCfg, "linux-image-6.1.0-47-cloud-amd64-unsigned")
	if err == nil || !strings.Contains(err.Error(), "CONFIG_XEN_DOM0") || !strings.Contains(err.Error(), "linux-image-6.1.0-47-cloud-amd64-unsigned") {
		t.Errorf("cloud kernel: err = %v, want one naming CONFIG_XEN_DOM0 and the package", err)
	}

	xenGz := readFile(t, "xen", "gz")
	cases := []struct {
		name      string
		img, conf []byte
		want      string
	}{
		{"gzip, not a bzImage", xenGz, stockCfg, "not an x86 bzImage"},
		{"empty kernel", nil, stockCfg, "not an x86 bzImage"},
		{"config is not a config", stock, []byte("hello\n"), "no CONFIG_ options"},
		{"dom0 as a module", stock, []byte("CONFIG_XEN=y\nCONFIG_XEN_DOM0=m\n"), "CONFIG_XEN_DOM0"},
		{"dom0 commented out", stock, []byte("CONFIG_XEN=y\n# CONFIG_XEN_DOM0 is not set\n"), "CONFIG_XEN_DOM0"},
	}
	for _, c := range cases {
		err := CheckDom0Kernel(c.img, c.conf, "k-"+c.name)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "k-"+c.name) {
			t.Errorf("%s: err = %v, want one containing %q and the kernel's name", c.name, err, c.want)
		}
	}
}

func TestKernelInitSize(t *testing.T) {
	hdr := make([]byte, 0x300)
	copy(hdr[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(hdr[0x206:], 0x020f)
	binary.LittleEndian.PutUint32(hdr[0x260:], 20<<20)
	if n, err := KernelInitSize(hdr); err != nil || n != 20<<20 {
		t.Fatalf("KernelInitSize = %d, %v", n, err)
	}
	binary.LittleEndian.PutUint16(hdr[0x206:], 0x0209)
	if _, err := KernelInitSize(hdr); err == nil || !strings.Contains(err.Error(), "2.10") {
		t.Errorf("old protocol: %v", err)
	}
	if _, err := KernelInitSize(hdr[:0x100]); err == nil {
		t.Error("a short image was accepted")
	}
}
