package main

import (
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	rf "github.com/fwbuild/fwbuild/contract/redfish"
)

// BenchmarkRedfishGetSystems measures GET /redfish/v1/Systems through the
// real handler over TLS (keep-alive, a session token, as fleet tools poll)
// with the fake Xen behind it, and reports the median and p99 latency.
// Basic auth would add a PBKDF2 check (unit.Iterations) to every request.
func BenchmarkRedfishGetSystems(b *testing.B) {
	f := newRFFixture(b)
	login := f.do(b, "POST", rf.Sessions, "", `{"UserName":"viewer","Password":"`+viewerPass+`"}`)
	tok := login.hdr.Get(rf.HeaderToken)
	if tok == "" {
		b.Fatalf("login: %d %s", login.code, login.body)
	}
	client := f.srv.Client()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req, _ := http.NewRequest("GET", f.srv.URL+rf.Systems, nil)
		req.Header.Set(rf.HeaderToken, tok)
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		lat = append(lat, time.Since(start))
		if resp.StatusCode != 200 {
			b.Fatalf("GET Systems: %d", resp.StatusCode)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "median-µs")
	b.ReportMetric(float64(lat[min(len(lat)-1, len(lat)*99/100)].Microseconds()), "p99-µs")
}
