package boardcfg

import (
	"path/filepath"
	"strings"
	"testing"
)

// outputs.secure_boot names two component files; a wrong one is an error
// at its line, and a missing one is named.
func TestSecureBootRefs(t *testing.T) {
	dir := t.TempDir()
	writeProfile(t, dir, "t1.yaml", valid)
	for _, c := range []struct{ body, want string }{
		{"  secure_boot:\n    variables: ovmf:code\n    code: ovmf:nope\n", `sb.yaml:6:11: outputs.secure_boot.code: component "ovmf" has no file with role "nope"`},
		{"  secure_boot:\n    variables: nope:vars\n    code: ovmf:code\n", `sb.yaml:5:16: outputs.secure_boot.variables: no component named "nope"`},
		{"  secure_boot:\n    variables: ovmf:code\n", `outputs.secure_boot.code: required field is missing`},
	} {
		writeProfile(t, dir, "sb.yaml", "extends: t1\nname: sb\noutputs:\n"+c.body)
		if _, err := Load(filepath.Join(dir, "sb.yaml"), dir); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err = %v, want %q", c.body, err, c.want)
		}
	}
	writeProfile(t, dir, "sb.yaml", "extends: t1\nname: sb\noutputs:\n  secure_boot:\n    variables: ovmf:code\n    code: ovmf:code\n")
	b, err := Load(filepath.Join(dir, "sb.yaml"), dir)
	if err != nil || b.Outputs.SecureBoot == nil || b.Outputs.SecureBoot.Code != "ovmf:code" {
		t.Fatalf("valid secure_boot: %v, %+v", err, b)
	}
}
