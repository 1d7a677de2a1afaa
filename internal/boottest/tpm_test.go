package boottest

import (
	"regexp"
	"strings"
	"testing"

	"github.com/fwbuild/fwbuild/contract"
	qemutests "github.com/fwbuild/fwbuild/qemu-tests"
)

func TestTPMMarkers(t *testing.T) {
	chain, err := qemutests.BootChain(qemutests.ChainUSB)
	if err != nil {
		t.Fatal(err)
	}
	ms := tpmMarkers(chain, []byte{0xab, 0xcd})
	var names []string
	for _, m := range ms {
		names = append(names, m.Name)
	}
	got := strings.Join(names, " ")
	if !strings.Contains(got, "ctld-ready ctld-measured") || !strings.HasSuffix(got, "ctld-quote") {
		t.Fatalf("markers %s", got)
	}
	if ms[len(ms)-2].Then != "ctld quote abcd\n" {
		t.Fatalf("typed %q", ms[len(ms)-2].Then)
	}
	q := contract.Quote{Nonce: "abcd", Quoted: []byte{1}, Signature: []byte{2}, AKPublic: []byte{3}, PCRs: map[string]string{}}
	for i := 0; i < 8; i++ {
		q.PCRs[string(rune('0'+i))] = strings.Repeat("0f", 32)
	}
	line := "$ " + q.String()
	if !regexp.MustCompile(QuotePattern).MatchString(line) {
		t.Fatalf("QuotePattern does not match %q", line)
	}
	if regexp.MustCompile(QuotePattern).MatchString(line[:len(line)-40]) {
		t.Fatal("QuotePattern matches a cut line")
	}
	m := contract.Measured{PCR4: strings.Repeat("12", 32), PCR7: strings.Repeat("34", 32), LogEvents: -1}
	if !regexp.MustCompile(contract.MeasuredPattern).MatchString(m.String()) {
		t.Fatalf("MeasuredPattern does not match %q", m.String())
	}
	want := &contract.PathMeasurement{SHA256: map[string]string{"4": m.PCR4, "7": m.PCR7}}
	if _, err := CheckMeasured(m.String(), want); err != nil {
		t.Fatal(err)
	}
	want.SHA256["4"] = m.PCR7
	if _, err := CheckMeasured(m.String(), want); err == nil || !strings.Contains(err.Error(), "predicts") {
		t.Fatalf("a different PCR 4: %v", err)
	}
}
