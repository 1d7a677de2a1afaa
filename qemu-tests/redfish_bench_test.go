package qemutests_test

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/contract"
	rf "github.com/fwbuild/fwbuild/contract/redfish"
	qemutests "github.com/fwbuild/fwbuild/qemu-tests"
)

// redfishBenchGuests keeps the stock guest from autostarting, so nothing
// but the benchmark's own VM competes with the measurements.
const redfishBenchGuests = "  - {name: debian, autostart: false}\n"

// latencyRounds is how many GET Systems the latency figures rest on.
const latencyRounds = 200

// BenchmarkRedfishHost boots a provisioned qemu-q35-host from its SPI
// flash on a blank data disk (TCG), the Redfish port forwarded, once per
// b.N, and reports: boot-to-service (QEMU's start to the first answer of
// the service root over the forward, pinned TLS), GET /redfish/v1/Systems's
// median and p99 over latencyRounds requests on one kept connection (Basic
// auth, whose PBKDF2 check runs on every request, then a session's
// X-Auth-Token, as sushy sends, once the images are on the data disk), and
// GET of one VM (xl list for its power state, with the token); then a VM created through
// the API (POST Systems, then Reset On) to ctld's running line, and that
// line to the VM's DHCP lease. Run it with -benchtime 1x (one boot).
func BenchmarkRedfishHost(b *testing.B) {
	requireRedfishClients(b)
	const r = qemutests.TimeoutReady
	metrics := map[string][]float64{}
	for i := 0; i < b.N; i++ {
		bl := buildHostWith(b, redfishBenchGuests)
		chip, unitRes := provisionHostChip(b, bl)
		m, _, ports := hostMachine(b, hostOpts{Path: qemutests.ChainSPI, Guests: redfishBenchGuests, Chip: chip, Forward: []int{redfishPort}})
		ms := append(chain(b, qemutests.ChainSPI),
			qemutests.Regexp("redfish", contract.RedfishPattern, r),
			// The images are copied and the (not autostarted) guest's
			// disk made: POST can name the image now.
			qemutests.Regexp("seeded", contract.GuestDiskCreatedPattern(hostGuest, "root"), 2*r),
			// After the latency rounds (3 x latencyRounds GETs, some
			// 0.5 s each under TCG), then POST and Reset On.
			qemutests.Regexp("api-running", contract.GuestRunningPattern(apiVM)+" type=pvh", 8*r),
			qemutests.Regexp("api-dhcp", contract.GuestOSDHCPPattern(apiVM), 2*r),
		)
		ctx, cancel := context.WithCancel(context.Background())
		var e errs
		var (
			mu         sync.Mutex
			sess       *rfSession
			qemuStart  time.Time
			answered   time.Duration
			created    time.Duration
			latencies  []time.Duration // GET Systems, Basic auth
			tokenLat   []time.Duration // GET Systems, X-Auth-Token
			vmLat      []time.Duration // GET Systems/debian, X-Auth-Token
			answerDone = make(chan struct{})
		)
		fail := func(err error) { e.add("%v", err); cancel() }
		onMarker := func(mt qemutests.Match) {
			switch mt.Marker.Name {
			case "redfish":
				qemuStart = time.Now().Add(-mt.At)
				up, err := contract.ParseRedfishUp(mt.Line)
				if err == nil {
					sess, err = newRFSession(fmt.Sprintf("127.0.0.1:%d", ports[redfishPort]), up, unitRes.User, unitRes.Password)
				}
				if err != nil {
					fail(err)
					close(answerDone)
					return
				}
				s, start := sess, qemuStart
				go func() {
					defer close(answerDone)
					for ctx.Err() == nil {
						if code, err := s.raw(ctx, "GET", rf.Root, "", ""); err == nil && code == http.StatusOK {
							mu.Lock()
							answered = time.Since(start)
							mu.Unlock()
							return
						}
						time.Sleep(50 * time.Millisecond)
					}
				}()
			case "seeded":
				s, start := sess, qemuStart
				go func() {
					<-answerDone
					if s == nil {
						return
					}
					rounds := func(what string, get func() (int, error)) []time.Duration {
						var ls []time.Duration
						for j := 0; j < latencyRounds && ctx.Err() == nil; j++ {
							t0 := time.Now()
							code, err := get()
							if err != nil || code != http.StatusOK {
								fail(fmt.Errorf("GET %s: %d, %v", what, code, err))
								return nil
							}
							ls = append(ls, time.Since(t0))
						}
						return ls
					}
					basic := rounds("Systems (Basic)", func() (int, error) { return s.raw(ctx, "GET", rf.Systems, s.user, s.password) })
					tok, loc, err := s.login(ctx)
					if err != nil {
						fail(err)
						return
					}
					token := rounds("Systems (token)", func() (int, error) { return s.withToken(ctx, "GET", rf.Systems, tok) })
					vm := rounds("Systems/"+hostGuest, func() (int, error) { return s.withToken(ctx, "GET", rf.System(hostGuest), tok) })
					s.withToken(ctx, "DELETE", loc, tok)
					mu.Lock()
					latencies, tokenLat, vmLat = basic, token, vm
					created = time.Since(start)
					mu.Unlock()
					if _, err := s.client.Create(ctx, apiVMSpec("pvh")); err != nil {
						fail(err)
						return
					}
					if err := s.client.Reset(ctx, apiVM, rf.ResetOn); err != nil {
						fail(err)
					}
				}()
			}
		}
		res := runHostWith(b, ctx, m, ms, contract.FailurePattern+"|"+contract.GuestOSFailurePattern, onMarker)
		cancel()
		e.report(b)
		mu.Lock()
		if len(latencies) == latencyRounds && len(tokenLat) == latencyRounds && len(vmLat) == latencyRounds {
			metrics["boot-to-service-s"] = append(metrics["boot-to-service-s"], answered.Seconds())
			for name, ls := range map[string][]time.Duration{"systems": latencies, "systems-token": tokenLat, "vm-token": vmLat} {
				sort.Slice(ls, func(i, j int) bool { return ls[i] < ls[j] })
				metrics[name+"-median-ms"] = append(metrics[name+"-median-ms"], float64(ls[len(ls)/2].Microseconds())/1000)
				metrics[name+"-p99-ms"] = append(metrics[name+"-p99-ms"], float64(ls[len(ls)*99/100].Microseconds())/1000)
			}
			metrics["create-to-running-s"] = append(metrics["create-to-running-s"], (at(res, "api-running") - created).Seconds())
			metrics["running-to-dhcp-s"] = append(metrics["running-to-dhcp-s"], (at(res, "api-dhcp") - at(res, "api-running")).Seconds())
		}
		mu.Unlock()
	}
	for unit, xs := range metrics {
		b.Logf("%s: %v", unit, xs)
		b.ReportMetric(medianOf(xs), unit)
	}
	b.ReportMetric(0, "ns/op")
}
