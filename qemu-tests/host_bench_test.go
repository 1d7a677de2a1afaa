package qemutests_test

import (
	"fmt"
	"sort"
	"testing"

	"github.com/fwbuild/fwbuild/contract"
	qemutests "github.com/fwbuild/fwbuild/qemu-tests"
)

// benchGuests is the host board's variant for BenchmarkStockGuestXen: the
// stock guest as it is (type auto: PVH on the board's CPU) and a copy
// declared type pv, both started from the shell, not at boot.
const benchGuests = `  - {name: debian, autostart: false}
  - name: debian-pv
    memory: 256MiB
    image: debian
    type: pv
    after: run
    autostart: false
    disks: [{name: root, size: 64MiB, from: debian}]
    nics: [{mac: "00:16:3e:00:00:03"}]
`

// benchRounds is how many times each guest is started in one boot.
const benchRounds = 3

// BenchmarkStockGuestXen starts the stock Debian guest under Xen on
// qemu-q35-host (TCG), PVH and PV, benchRounds times each, alternating, in
// one boot per b.N: `ctld start <guest>` typed on the shell, ctld's
// running line, the guest's DHCP line, then `xl destroy`. It reports the
// medians of create-to-running (the command typed to ctld's running line:
// xl create with the vif and vbd hotplug, console attached) and
// boot-to-DHCP (the running line to the guest's lease through the bridge),
// from the console's timestamps. Run it with -benchtime 1x (one boot; Go
// runs a benchmark at b.N=1 before any larger N).
func BenchmarkStockGuestXen(b *testing.B) {
	const r = qemutests.TimeoutReady
	kinds := []struct{ typ, name string }{{"pvh", hostGuest}, {"pv", "debian-pv"}}
	times := map[string][]float64{}
	for i := 0; i < b.N; i++ {
		// The SPI path (images from guest_images_url, no USB key): with the
		// key in dom0 PVH guests are held back (see the README's host section).
		m, _, _ := hostMachine(b, hostOpts{Path: qemutests.ChainSPI, Guests: benchGuests})
		// The guests are seeded to the data disk once the data disk line is out.
		ms := append(chain(b, qemutests.ChainSPI), qemutests.Regexp("data-disk", contract.DataDiskPattern, r))
		ms = append(ms, qemutests.Regexp("seeded", contract.GuestDiskCreatedPattern("debian-pv", "root"), 2*r))
		prev := len(ms) - 1
		for round := 0; round < benchRounds; round++ {
			for _, k := range kinds {
				ms[prev].Then = "ctld start " + k.name + "\n"
				ms = append(ms,
					qemutests.Regexp(fmt.Sprintf("%s-%d-running", k.typ, round), contract.GuestRunningPattern(k.name)+" type="+k.typ, r),
					qemutests.Regexp(fmt.Sprintf("%s-%d-dhcp", k.typ, round), contract.GuestOSDHCPPattern(k.name), 2*r),
				)
				ms[len(ms)-1].Then = "/usr/sbin/xl destroy " + k.name + "; echo destroyed-" + k.name + fmt.Sprintf("-$((%d+1))\n", round)
				ms = append(ms, qemutests.Regexp(fmt.Sprintf("%s-%d-destroyed", k.typ, round), fmt.Sprintf(`destroyed-%s-%d`, k.name, round+1), r))
				prev = len(ms) - 1
			}
		}
		res := runHost(b, m, ms, contract.FailurePattern+"|"+contract.GuestOSFailurePattern)
		for round := 0; round < benchRounds; round++ {
			for j, k := range kinds {
				typed := fmt.Sprintf("%s-%d-destroyed", kinds[(j+1)%2].typ, round-1+j)
				if round == 0 && j == 0 {
					typed = "seeded"
				}
				run, dhcp := at(res, fmt.Sprintf("%s-%d-running", k.typ, round)), at(res, fmt.Sprintf("%s-%d-dhcp", k.typ, round))
				times[k.typ+"-create-s"] = append(times[k.typ+"-create-s"], (run - at(res, typed)).Seconds())
				times[k.typ+"-dhcp-s"] = append(times[k.typ+"-dhcp-s"], (dhcp - run).Seconds())
			}
		}
	}
	for unit, ts := range times {
		b.Logf("%s: %v", unit, ts)
		b.ReportMetric(medianOf(ts), unit)
	}
	b.ReportMetric(0, "ns/op")
}

func medianOf(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
