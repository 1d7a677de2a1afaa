package pipeline

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/fwbuild/fwbuild/boardcfg"
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

// unitParam is the dom0 parameter naming the chip's unit region and the
// board (contract.UnitRegion), so ctld finds the unit's credential record
// and refuses one provisioned for another board; "" for a board without a
// unit region. The region's content is per unit, so unlike the guests
// region it cannot be pinned by hash here.
func unitParam(b *boardcfg.Board) string {
	if b.Outputs.SPI == nil {
		return ""
	}
	reg, ok := b.Outputs.SPI.UnitRegion()
	if !ok {
		return ""
	}
	return contract.UnitRegion{Addr: b.Outputs.SPI.MappedAddress(uint64(reg.Start)), Size: uint64(reg.Size), Board: b.Name}.String()
}
