package pipeline

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/fwbuild/fwbuild/contract"
)

// pinnedGuestsParam is the dom0 parameter naming the chip's guests region
// with the SHA-256 of the archive the region holds (contract.GuestsRegion):
// the flash payload, which the launcher checks, carries it, so ctld refuses
// a region rewritten with any other bundle. "" for a board without a
// guests region.
func (r *run) pinnedGuestsParam(gst stageResult) (string, error) {
	reg, ok := guestsRegion(r.Board)
	if !ok {
		return "", nil
	}
	archive, err := gst.read("guests.cpio")
	if err != nil {
		return "", fmt.Errorf("payload: guests region pin: %w", err)
	}
	sum := sha256.Sum256(archive)
	return contract.GuestsRegion{
		Addr:   r.Board.Outputs.SPI.MappedAddress(uint64(reg.Start)),
		Size:   uint64(reg.Size),
		SHA256: hex.EncodeToString(sum[:]),
	}.String(), nil
}
