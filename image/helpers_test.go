package image

import (
	"os"
	"os/exec"
	"testing"

	"github.com/fwbuild/fwbuild/boardcfg"
	"github.com/fwbuild/fwbuild/internal/testdeps"
	"github.com/linuxboot/fiano/pkg/guid"
)

const (
	growGUID  = "48DB5E17-707C-472D-91CD-1613E7EF51B0" // FVMAIN_COMPACT
	shellGUID = "7C04A583-9E3E-4F1C-AD65-E05268D0B4D1" // UEFI Shell
	dxeGUID   = "7CB8BDC9-F8EB-4F34-AAEA-3EE4AF6516A1" // DXEFV
)

// readComponent reads the file a qemu-q35 component has in role.
func readComponent(t testing.TB, component, role string) []byte {
	t.Helper()
	b, err := os.ReadFile(testdeps.File(t, component, role))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ovmfCode(t testing.TB) []byte { return readComponent(t, "ovmf", "code") }

func ovmfVars(t testing.TB) []byte { return readComponent(t, "ovmf", "vars") }

// q35Spec16 is qemu-q35's 16 MiB chip: a preserved vpd region + bios.
func q35Spec16(base, payload []byte) SPISpec {
	return SPISpec{
		ChipSize: 16 << 20,
		Regions: []boardcfg.Region{
			{Name: "vpd", Start: 0, Size: 0x10000, Preserve: true},
			{Name: "bios", Start: 0x10000, Size: 0xFF0000, Firmware: true},
		},
		BaseFirmware: base, GrowFV: growGUID, SlotFile: shellGUID, Payload: payload,
	}
}

// q35Spec8 is the 8 MiB variant: OVMF VARS at 0 + CODE grown to 0x77C000.
func q35Spec8(base, vars, payload []byte) SPISpec {
	return SPISpec{
		ChipSize: 8 << 20,
		Regions: []boardcfg.Region{
			{Name: "vars", Start: 0, Size: 0x84000},
			{Name: "bios", Start: 0x84000, Size: 0x77C000, Firmware: true},
		},
		Fills:        map[string][]byte{"vars": vars},
		BaseFirmware: base, GrowFV: growGUID, SlotFile: shellGUID, Payload: payload,
	}
}

// needTool fails the test loudly when a host tool is missing.
func needTool(t testing.TB, tool, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		t.Fatalf("%s not found on PATH: install it with `apt-get install -y %s`", tool, pkg)
	}
	return p
}

func mustGUID(t testing.TB, s string) guid.GUID {
	t.Helper()
	g, err := guid.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return *g
}
