package contract

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

// specLog builds a crypto-agile log: the Spec ID event with SHA-1 and
// SHA-256, then events with the given PCRs.
func specLog(pcrs ...int) []byte {
	le := binary.LittleEndian
	var spec bytes.Buffer
	spec.WriteString("Spec ID Event03\x00")
	binary.Write(&spec, le, uint32(0))
	spec.Write([]byte{0, 2, 0, 2})
	binary.Write(&spec, le, uint32(2))
	binary.Write(&spec, le, []uint16{AlgSHA1, 20, AlgSHA256, 32})
	spec.WriteByte(0)
	var b bytes.Buffer
	binary.Write(&b, le, []uint32{0, 3})
	b.Write(make([]byte, 20))
	binary.Write(&b, le, uint32(spec.Len()))
	b.Write(spec.Bytes())
	for i, p := range pcrs {
		binary.Write(&b, le, []uint32{uint32(p), 0x80000007, 2})
		binary.Write(&b, le, uint16(AlgSHA1))
		b.Write(bytes.Repeat([]byte{byte(i)}, 20))
		binary.Write(&b, le, uint16(AlgSHA256))
		b.Write(bytes.Repeat([]byte{byte(i)}, 32))
		binary.Write(&b, le, uint32(3))
		b.WriteString("abc")
	}
	return b.Bytes()
}

func TestParseEventLog(t *testing.T) {
	log := append(specLog(4, 7, 4), make([]byte, 64)...) // the log area's unused rest
	ev, err := ParseEventLog(log)
	if err != nil || len(ev) != 3 {
		t.Fatalf("%d events, %v", len(ev), err)
	}
	if ev[1].PCR != 7 || ev[2].Digests[AlgSHA256][0] != 2 || string(ev[0].Data) != "abc" {
		t.Fatalf("%+v", ev)
	}
	for _, bad := range [][]byte{nil, make([]byte, 100), log[:len(specLog(4))-2]} {
		if _, err := ParseEventLog(bad); err == nil {
			t.Errorf("a %d-byte log accepted", len(bad))
		}
	}
}

func TestMeasuredLine(t *testing.T) {
	m := Measured{PCR4: strings.Repeat("ab", 32), PCR7: strings.Repeat("cd", 32), LogEvents: 12}
	back, err := ParseMeasured("$ " + m.String())
	if err != nil || back != m {
		t.Fatalf("%q -> %+v %v", m.String(), back, err)
	}
	if _, err := ParseMeasured(CtldPrefix + "measured sha256 pcr4=zz pcr7=zz eventlog=1"); err == nil {
		t.Fatal("bad hex accepted")
	}
	if _, err := ParseQuote(QuotePrefix + `{"nonce":"00"}`); err == nil {
		t.Fatal("a quote without its parts accepted")
	}
}
