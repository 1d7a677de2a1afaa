package attest

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/fwbuild/fwbuild/contract"
	"github.com/fwbuild/fwbuild/measure"
)

// TestReplayLog replays a log made of the predicted events: it must match
// the quoted PCRs and the prediction; an altered event or a missing one is named.
func TestReplayLog(t *testing.T) {
	app := measure.Digests{SHA256: make([]byte, 32), SHA1: make([]byte, 20)}
	app.SHA256[0] = 7
	p := measure.BootOption(app, measure.SecureBootPolicy([]byte{0}, nil), nil, 1)
	want := &contract.PathMeasurement{Payload: "payload-esp.efi", SHA256: measure.Hex(p.SHA256, 4, 7)}
	var log []contract.LogEvent
	for _, e := range p.Events {
		want.Events = append(want.Events, contract.MeasuredEvent{PCR: e.PCR, Type: e.Type.String(), SHA256: hex.EncodeToString(e.Digest.SHA256)})
		log = append(log, contract.LogEvent{PCR: e.PCR, Type: uint32(e.Type), Digests: map[uint16][]byte{contract.AlgSHA256: e.Digest.SHA256}})
	}
	q := contract.Quote{PCRs: map[string]string{}}
	for _, i := range measure.PCRs(p.SHA256) {
		q.PCRs[fmt.Sprint(i)] = hex.EncodeToString(p.SHA256[i])
	}
	if err := ReplayLog(log, q, want); err != nil {
		t.Fatal(err)
	}
	bad := append([]contract.LogEvent(nil), log...)
	bad[len(bad)-1] = contract.LogEvent{PCR: 4, Type: uint32(measure.EvEFIBootServicesApplication), Digests: map[uint16][]byte{contract.AlgSHA256: make([]byte, 32)}}
	var mm *Mismatch
	if err := ReplayLog(bad, q, want); !errors.As(err, &mm) || !strings.Contains(err.Error(), "PCR 4 replays") || !strings.Contains(err.Error(), "PCR 4 event") {
		t.Errorf("altered application event: %v", err)
	}
	if err := ReplayLog(log[:len(log)-1], q, want); !errors.As(err, &mm) || !strings.Contains(err.Error(), "lacks predicted event") {
		t.Errorf("missing event: %v", err)
	}
}
