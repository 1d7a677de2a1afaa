package image

import (
	"strings"
	"testing"

	"github.com/fwbuild/fwbuild/boardcfg"
)

func TestCheckLayout(t *testing.T) {
	layout := func() []boardcfg.Region {
		return []boardcfg.Region{
			{Name: "bios", Start: 0x10000, Size: 0xFF0000, Firmware: true},
			{Name: "vars", Start: 0, Size: 0x10000},
		}
	}
	rs, fw, err := checkLayout(16<<20, layout(), map[string][]byte{"vars": []byte("store")})
	if err != nil || rs[0].Name != "vars" || fw != 1 {
		t.Fatalf("sorted %+v, firmware %d, %v", rs, fw, err)
	}
	for _, c := range []struct {
		name  string
		edit  func([]boardcfg.Region)
		fills map[string][]byte
		want  string
	}{
		// The name rule is the profile's: what passes `fwbuild check` passes here.
		{"long name", func(rs []boardcfg.Region) { rs[1].Name = strings.Repeat("v", 65) }, nil, "at most 64"},
		{"space in name", func(rs []boardcfg.Region) { rs[1].Name = "my vars" }, nil, `region name "my vars" has ' '`},
		{"fill without region", nil, map[string][]byte{"nvram": {1}}, `fill content for region "nvram", which the layout does not have`},
		{"fill too big", nil, map[string][]byte{"vars": make([]byte, 0x10001)}, "exceeds its size"},
		{"firmware fill", nil, map[string][]byte{"bios": {1}}, "cannot also have fill content"},
	} {
		rs := layout()
		if c.edit != nil {
			c.edit(rs)
		}
		if _, _, err := checkLayout(16<<20, rs, c.fills); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
}
