package closure

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/fwbuild/fwbuild/initramfs/internal/q35test"
)

// elfSeeds are small real ELF files: a dynamic program, a shared library
// and a kernel module. (Multi-megabyte seeds make the fuzzer crawl.)
func elfSeeds(f *testing.F) {
	for _, p := range []string{"usr/bin/xenstore", "usr/lib/x86_64-linux-gnu/libxentoollog.so.1.0", "lib/modules/6.1.0-47-amd64/kernel/drivers/xen/xenfs/xenfs.ko"} {
		if b, err := os.ReadFile(q35test.Find(f, p)); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("\x7fELF\x02\x01\x01"))
}

// FuzzELFClosure puts arbitrary bytes where a toolstack program would be and
// resolves its closure: errors are fine, panics and hangs are not.
func FuzzELFClosure(f *testing.F) {
	elfSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		root := t.TempDir()
		p := filepath.Join(root, "usr/bin/prog")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o755); err != nil {
			t.Fatal(err)
		}
		tr, err := New([]string{root})
		if err != nil {
			t.Fatal(err)
		}
		_ = tr.Add("usr/bin/prog", "fuzz")
		if info, err := readELF(bytes.NewReader(b)); err == nil {
			for _, n := range info.Needed {
				if n == "" {
					t.Error("empty DT_NEEDED accepted")
				}
			}
		}
		_, _ = readModinfo(bytes.NewReader(b))
	})
}

func FuzzModinfo(f *testing.F) {
	f.Add([]byte("depends=xen-privcmd\x00name=xenfs\x00vermagic=6.1.0-47-amd64 SMP\x00"))
	f.Add([]byte("=\x00depends\x00alias=a\x00alias=b"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m := parseModinfo(b)
		for k := range m {
			if k == "" {
				t.Error("empty key")
			}
		}
	})
}
