package contract

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// The firmware's TPM 2.0 event log in the crypto-agile format (TCG PC Client
// PFP spec, 10.2): a TCG_PCR_EVENT holding the Spec ID event (which names the
// digest sizes), then TCG_PCR_EVENT2s. The kernel exposes it as
// /sys/kernel/security/tpm0/binary_bios_measurements; ctld counts its events,
// `fwbuild attest --eventlog` replays it.

// TPM 2.0 algorithm ids of the banks fwbuild reads.
const (
	AlgSHA1   = 0x0004
	AlgSHA256 = 0x000b
)

// LogEvent is one event of the log.
type LogEvent struct {
	PCR     int
	Type    uint32
	Digests map[uint16][]byte // by algorithm id
	Data    []byte
}

// ParseEventLog reads a crypto-agile event log. Trailing zero bytes (the
// unused rest of a firmware's log area) end it.
func ParseEventLog(b []byte) ([]LogEvent, error) {
	le := binary.LittleEndian
	if len(b) < 32 {
		return nil, fmt.Errorf("event log: %d bytes, too short for its first event", len(b))
	}
	size := int(le.Uint32(b[28:]))
	if size > len(b)-32 || size < 24 || !bytes.HasPrefix(b[32:], []byte("Spec ID Event03\x00")) {
		return nil, fmt.Errorf("event log: the first event is not a TPM 2.0 Spec ID event")
	}
	spec := b[32 : 32+size]
	n := int(le.Uint32(spec[24:]))
	if n > 16 || 28+4*n > len(spec) {
		return nil, fmt.Errorf("event log: Spec ID event names %d algorithms", n)
	}
	sizes := map[uint16]int{}
	for i := 0; i < n; i++ {
		sizes[le.Uint16(spec[28+4*i:])] = int(le.Uint16(spec[30+4*i:]))
	}
	var out []LogEvent
	for off := 32 + size; off+12 <= len(b); {
		h := b[off:]
		e := LogEvent{PCR: int(le.Uint32(h)), Type: le.Uint32(h[4:]), Digests: map[uint16][]byte{}}
		count := int(le.Uint32(h[8:]))
		if e.PCR == 0 && e.Type == 0 && count == 0 {
			break // the unused rest of the log area
		}
		p := 12
		if count > n {
			return out, fmt.Errorf("event log: event %d at %d has %d digests, the log declares %d algorithms", len(out)+1, off, count, n)
		}
		for i := 0; i < count; i++ {
			if p+2 > len(h) {
				return out, fmt.Errorf("event log: event %d at %d runs past the end", len(out)+1, off)
			}
			alg := le.Uint16(h[p:])
			ds, ok := sizes[alg]
			if !ok || p+2+ds > len(h) {
				return out, fmt.Errorf("event log: event %d at %d: digest of algorithm %#x unknown or past the end", len(out)+1, off, alg)
			}
			e.Digests[alg] = bytes.Clone(h[p+2 : p+2+ds])
			p += 2 + ds
		}
		if p+4 > len(h) {
			return out, fmt.Errorf("event log: event %d at %d runs past the end", len(out)+1, off)
		}
		ds := int(le.Uint32(h[p:]))
		if ds > len(h)-p-4 {
			return out, fmt.Errorf("event log: event %d at %d: %d bytes of data run past the end", len(out)+1, off, ds)
		}
		e.Data = bytes.Clone(h[p+4 : p+4+ds])
		out = append(out, e)
		off += p + 4 + ds
	}
	return out, nil
}

// CountEvents is the number of events after the Spec ID event.
func CountEvents(b []byte) (int, error) {
	ev, err := ParseEventLog(b)
	return len(ev), err
}
