package initramfs

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/fwbuild/fwbuild/initramfs/internal/closure"
	"github.com/fwbuild/fwbuild/initramfs/internal/q35test"
	"github.com/ulikunitz/xz"
)

// BenchmarkCompress compares the encoders on the toolstack plus a Go binary
// (this test binary standing in for the busybox): ratio matters more than
// time for a firmware payload.
func BenchmarkCompress(b *testing.B) {
	needTool(b, "xz", "xz-utils")
	tr, err := closure.New(q35test.Roots(b))
	if err != nil {
		b.Fatal(err)
	}
	for _, p := range q35test.Toolstack {
		if err := tr.Add(p, "bench"); err != nil {
			b.Fatal(err)
		}
	}
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	tr.Nodes["/bbin/bb"] = &closure.Node{Path: "/bbin/bb", Kind: closure.File, Perm: 0o755, Src: exe}
	addParents(tr.Nodes)
	var raw bytes.Buffer
	if _, err := writeCPIO(&raw, tr.Nodes, 0); err != nil {
		b.Fatal(err)
	}
	for _, m := range []string{"xz", "xz-x86", "zstd", "ulikunitz-xz"} {
		b.Run(m, func(b *testing.B) {
			var n int
			for b.Loop() {
				if m == "ulikunitz-xz" {
					var out bytes.Buffer
					w, err := xz.WriterConfig{CheckSum: xz.CRC32, DictCap: 8 << 20}.NewWriter(&out)
					if err != nil {
						b.Fatal(err)
					}
					w.Write(raw.Bytes())
					w.Close()
					n = out.Len()
					continue
				}
				c, err := compress(context.Background(), m, raw.Bytes())
				if err != nil {
					b.Fatal(err)
				}
				n = len(c)
			}
			b.ReportMetric(float64(n), "bytes")
			b.ReportMetric(float64(raw.Len())/float64(n), "ratio")
		})
	}
}
