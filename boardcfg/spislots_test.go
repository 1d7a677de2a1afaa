package boardcfg

import (
	"strings"
	"testing"
)

// slotsSPI is a two-slot layout without an Intel descriptor (the board's
// mapped window holds both slots); its regions are lines 35-39 of the
// profile withSPI makes.
const slotsSPI = `  spi:
    firmware: ovmf:code
    chip_size: 32MiB
    mapped: 32MiB
    payload: region
    regions:
      - {name: vpd, start: 0x0, size: 64KiB, preserve: true}
      - {name: bios, firmware: true, start: 0x10000, size: 0x1FF0000}
      - {name: guests, guests: true, start: 0x10000, size: 0x600000}
      - {name: payload-a, payload: true, slot: a, start: 0x620000, size: 0xB32000}
      - {name: payload-b, payload: true, slot: b, start: 0x1152000, size: 0xB32000}
`

func TestPayloadSlots(t *testing.T) {
	b, err := loadText(t, withSPI(t, slotsSPI))
	if err != nil {
		t.Fatal(err)
	}
	slots := b.Outputs.SPI.PayloadSlots()
	if len(slots) != 2 || slots[0].Name != "payload-a" || slots[1].Name != "payload-b" {
		t.Fatalf("PayloadSlots = %+v, want payload-a then payload-b", slots)
	}
	if r, _ := b.Outputs.SPI.PayloadRegion(); r.Name != "payload-a" {
		t.Errorf("PayloadRegion = %s, want slot a's", r.Name)
	}
	// The order in the profile does not decide which is a.
	swapped := strings.Replace(strings.Replace(slotsSPI, "slot: a", "slot: X", 1), "slot: b", "slot: a", 1)
	swapped = strings.Replace(swapped, "slot: X", "slot: b", 1)
	if b, err = loadText(t, withSPI(t, swapped)); err != nil {
		t.Fatal(err)
	}
	if r, _ := b.Outputs.SPI.PayloadRegion(); r.Name != "payload-b" {
		t.Errorf("PayloadRegion = %s, want payload-b (slot a)", r.Name)
	}

	for _, c := range []struct {
		name, old, new, want string
	}{
		{"bad slot", "slot: b,", "slot: c,", `t1.yaml:39:48: outputs.spi.regions[4].slot: "c": want a or b`},
		{"slot twice", "slot: b,", "slot: a,", `outputs.spi.regions[4].slot: region "payload-b" is slot a, as is region "payload-a" (outputs.spi.regions[3]): give one payload region slot a and the other slot b`},
		{"one slot only", ", slot: b", "", "outputs.spi.regions: payload slots need exactly two regions marked payload: true, one with slot: a and one with slot: b (found 2 payload regions, 1 with a slot)"},
		{"slot on another region", "guests: true,", "guests: true, slot: a,", `outputs.spi.regions[2].slot: region "guests" has slot "a" but is not a payload region`},
		{"slot b outside the window", "    mapped: 32MiB\n", "",
			`outputs.spi.regions[3].start: payload region "payload-a" starts 0x19e0000 below the chip's end`},
	} {
		t.Run(c.name, func(t *testing.T) {
			spi := strings.Replace(slotsSPI, c.old, c.new, 1)
			if spi == slotsSPI {
				t.Fatalf("test bug: %q not in the layout", c.old)
			}
			_, err := loadText(t, withSPI(t, spi))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error\n  %v\nwant it to contain\n  %s", err, c.want)
			}
		})
	}
}
