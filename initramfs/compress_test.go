package initramfs

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/boardcfg"

	"github.com/fwbuild/fwbuild/initramfs/internal/closure"
	"github.com/fwbuild/fwbuild/initramfs/internal/q35test"
	"github.com/u-root/mkuimage/cpio"
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
	for _, p := range q35test.Toolstack(b) {
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
	for _, m := range []boardcfg.Compression{"xz", "xz-x86", "zstd", "ulikunitz-xz"} {
		b.Run(string(m), func(b *testing.B) {
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

func TestPack(t *testing.T) {
	files := []File{
		{Path: "/var/lib/fwbuild/guests/demo/vmlinuz", Data: []byte("kernel")},
		{Path: "etc/fwbuild/guests/demo.cfg", Data: []byte("name = \"demo\"\n"), Mode: 0o600},
	}
	epoch := time.Unix(1700000000, 0)
	a, err := Pack(files, epoch)
	if err != nil {
		t.Fatal(err)
	}
	fs := readArchive(t, a.Data)
	if got := string(fs.data(t, "/var/lib/fwbuild/guests/demo/vmlinuz")); got != "kernel" {
		t.Errorf("vmlinuz holds %q", got)
	}
	if m := fs["/etc/fwbuild/guests/demo.cfg"].Mode; m != cpio.S_IFREG|0o600 {
		t.Errorf("demo.cfg mode %o, want regular file 0600", m)
	}
	if m := fs["/var/lib/fwbuild/guests"].Mode; m != cpio.S_IFDIR|0o755 {
		t.Errorf("parent directory mode %o, want directory 0755", m)
	}
	for p, r := range fs {
		if r.Info.MTime != uint64(epoch.Unix()) {
			t.Errorf("%s: mtime %d", p, r.Info.MTime)
		}
	}
	// Order-independent: the same files in another order give the same bytes.
	b, err := Pack([]File{files[1], files[0]}, epoch)
	if err != nil || !bytes.Equal(a.Data, b.Data) {
		t.Errorf("packing in another order changed the archive (%v)", err)
	}

	for _, bad := range [][]File{
		{{Path: "/a", Data: []byte("1")}, {Path: "a", Data: []byte("2")}},
		{{Path: "/a", Data: []byte("1")}, {Path: "/a/b", Data: []byte("2")}},
		{{Path: "/", Data: []byte("1")}},
	} {
		if _, err := Pack(bad, epoch); err == nil {
			t.Errorf("Pack(%v) succeeded", bad)
		}
	}
}
