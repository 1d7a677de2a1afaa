package measure

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
)

// TestRealBoots replays the prediction against PCRs read from swtpm after
// real boots (QEMU 7.2, Debian's OVMF edk2-stable202211; the PCRs read from
// the host over swtpm's control socket once QEMU had reached Xen's banner):
// the stock USB path, the SPI path through the launcher, and the Secure Boot
// board's USB path with its enrolled PK, KEK and db.
func TestRealBoots(t *testing.T) {
	b, err := os.ReadFile("testdata/ovmf-202211-boots.json")
	if err != nil {
		t.Fatal(err)
	}
	var boots []struct {
		Name       string            `json:"name"`
		Failed     int               `json:"failed_boot_options"`
		SecureBoot map[string]string `json:"secure_boot_vars"`
		Authority  string            `json:"authority"`
		App256     string            `json:"authenticode_sha256"`
		App1       string            `json:"authenticode_sha1"`
		PCR256     map[string]string `json:"pcr_sha256"`
		PCR1       map[string]string `json:"pcr_sha1"`
	}
	if err := json.Unmarshal(b, &boots); err != nil {
		t.Fatal(err)
	}
	if len(boots) != 3 {
		t.Fatalf("%d captured boots, want 3", len(boots))
	}
	un := func(s string) []byte {
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, c := range boots {
		app := Digests{SHA256: un(c.App256), SHA1: un(c.App1)}
		policy := SecureBootPolicy([]byte{0}, nil)
		var authority []byte
		if c.SecureBoot != nil {
			var vars []Variable
			for _, n := range []string{"PK", "KEK"} {
				vars = append(vars, Variable{Name: n, GUID: GlobalVariable, Data: un(c.SecureBoot[n])})
			}
			vars = append(vars, Variable{Name: "db", GUID: ImageSecurityDB, Data: un(c.SecureBoot["db"])})
			policy = SecureBootPolicy([]byte{1}, vars)
			authority = un(c.Authority)
			entries, err := X509Entries(vars[2].Data)
			if err != nil || len(entries) != 1 || !bytes.Equal(entries[0], authority) {
				t.Errorf("%s: db's X.509 entries %d (%v), want the one that verified the payload", c.Name, len(entries), err)
			}
		}
		p := BootOption(app, policy, authority, c.Failed)
		if got, want := Hex(p.SHA256, 4, 7), c.PCR256; got["4"] != want["4"] || got["7"] != want["7"] {
			t.Errorf("%s: SHA-256 predicted %v, the TPM held %v", c.Name, got, want)
		}
		if got, want := Hex(p.SHA1, 4, 7), c.PCR1; got["4"] != want["4"] || got["7"] != want["7"] {
			t.Errorf("%s: SHA-1 predicted %v, the TPM held %v", c.Name, got, want)
		}
		// A different payload, or one more failed boot option, gives another PCR 4.
		other := Digests{SHA256: append([]byte{app.SHA256[0] ^ 1}, app.SHA256[1:]...), SHA1: app.SHA1}
		if q := BootOption(other, policy, authority, c.Failed); bytes.Equal(q.SHA256[4], p.SHA256[4]) {
			t.Errorf("%s: another payload predicts the same PCR 4", c.Name)
		}
		if q := BootOption(app, policy, authority, c.Failed+1); bytes.Equal(q.SHA256[4], p.SHA256[4]) || !bytes.Equal(q.SHA256[7], p.SHA256[7]) {
			t.Errorf("%s: a failed boot option must change PCR 4 only", c.Name)
		}
	}
}

func TestVariableData(t *testing.T) {
	e := VariableConfig(Variable{Name: "SecureBoot", GUID: GlobalVariable, Data: []byte{1}})
	// GUID, two lengths, "SecureBoot" in UTF-16, one data byte.
	if len(e.Data) != 16+8+8+20+1 || e.Data[16] != 10 || e.Data[24] != 1 || e.Data[32] != 'S' || e.Data[len(e.Data)-1] != 1 {
		t.Fatalf("UEFI_VARIABLE_DATA = %x", e.Data)
	}
	if e.VariableName() != "SecureBoot" || e.PCR != 7 {
		t.Fatalf("name %q pcr %d", e.VariableName(), e.PCR)
	}
	if hex.EncodeToString(GlobalVariable[:4]) != "61dfe48b" {
		t.Fatalf("GUID byte order: %x", GlobalVariable)
	}
}

func TestX509EntriesBad(t *testing.T) {
	for _, db := range [][]byte{make([]byte, 10), append(make([]byte, 16), 0xff, 0xff, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0)} {
		if _, err := X509Entries(db); err == nil {
			t.Errorf("X509Entries(%x) accepted", db)
		}
	}
}
