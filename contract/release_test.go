package contract

import "testing"

// The default device GUID is the one fwbuild's cabinets have always
// provided for a board (boardcfg and ctld both use DefaultUpdateGUID); a
// profile's own GUID on the command line wins, in lower case.
func TestUpdateGUID(t *testing.T) {
	const q35 = "b7a73cd5-1e67-5c38-9c1a-c7e96f666b51"
	if g := DefaultUpdateGUID("qemu-q35"); g != q35 {
		t.Errorf("DefaultUpdateGUID(qemu-q35) = %s, want %s", g, q35)
	}
	if g := UpdateGUID("console=hvc0 fwbuild.board=qemu-q35", "qemu-q35"); g != q35 {
		t.Errorf("without %s: %s", UpdateGUIDParam, g)
	}
	if g := UpdateGUID("fwbuild.guid=6F2A1C1E-3B8D-4E55-9A41-66776275696C "+MinVersionArg("1.2.0"), "qemu-q35"); g != "6f2a1c1e-3b8d-4e55-9a41-66776275696c" {
		t.Errorf("with %s: %s", UpdateGUIDParam, g)
	}
	if v, ok := Param(MinVersionArg("1.2.0"), MinVersionParam); !ok || v != "1.2.0" {
		t.Errorf("min version %q %v", v, ok)
	}
}
