package initramfs

import (
	"bytes"
	"context"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/boardcfg"

	"github.com/u-root/mkuimage/cpio"
)

func guestSpec(t testing.TB) GuestSpec {
	return GuestSpec{Epoch: time.Unix(1700000000, 0), TempDir: t.TempDir()}
}

func TestGuest(t *testing.T) {
	xz := needTool(t, "xz", "xz-utils")
	ctx := context.Background()
	a, err := Guest(ctx, guestSpec(t))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Guest(ctx, guestSpec(t))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Errorf("two builds differ: %d and %d bytes", len(a), len(b))
	}
	t.Logf("guest initramfs: %d bytes xz", len(a))

	cmd := exec.Command(xz, "-dc")
	cmd.Stdin = bytes.NewReader(a)
	raw, err := cmd.Output()
	if err != nil {
		t.Fatalf("xz -dc: %v", err)
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	byName := map[string]cpio.Record{}
	for _, r := range recs {
		names = append(names, r.Name)
		byName[r.Name] = r
		if r.MTime != 1700000000 {
			t.Errorf("%s: mtime %d", r.Name, r.MTime)
		}
	}
	if got, want := strings.Join(names, " "), "dev dev/console init"; got != want {
		t.Errorf("members %q, want %q", got, want)
	}
	con := byName["dev/console"]
	if con.Mode&cpio.S_IFMT != cpio.S_IFCHR || con.Rmajor != 5 || con.Rminor != 1 {
		t.Errorf("dev/console: mode %#o, device %d,%d; want c 5,1", con.Mode, con.Rmajor, con.Rminor)
	}
	in := byName["init"]
	if in.Mode&cpio.S_IFMT != cpio.S_IFREG || in.Mode&0o111 == 0 {
		t.Fatalf("init: mode %#o, want an executable file", in.Mode)
	}
	data := make([]byte, in.FileSize)
	if _, err := in.ReadAt(data, 0); err != nil {
		t.Fatal(err)
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("init is not ELF: %v", err)
	}
	if f.Machine != elf.EM_X86_64 || f.Type != elf.ET_EXEC {
		t.Errorf("init: %v %v, want a static x86-64 executable", f.Machine, f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("init has PT_INTERP: not static")
		}
	}
	// The strings guestinit prints prove it is the right program.
	if !bytes.Contains(data, []byte("fwbuild-guest ")) || !bytes.Contains(data, []byte("fwbuild.guest")) {
		t.Error("init does not look like cmd/guestinit")
	}
	t.Logf("guest init: %d bytes, cpio %d bytes", len(data), len(raw))
}

func TestGuestErrors(t *testing.T) {
	s := guestSpec(t)
	s.Compression = "lz4"
	if _, err := Guest(context.Background(), s); err == nil || !strings.Contains(err.Error(), `compression "lz4"`) {
		t.Errorf("lz4: %v", err)
	}
	s = guestSpec(t)
	s.GoCmd = "/nonexistent/go"
	if _, err := Guest(context.Background(), s); err == nil || !strings.Contains(err.Error(), "need the go command") {
		t.Errorf("missing go: %v", err)
	}
}

func TestCheckStatic(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal(err)
	}
	b, err := readFileResolved(sh)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkStatic(b); err == nil || !strings.Contains(err.Error(), "PT_INTERP") {
		t.Errorf("checkStatic(%s) = %v, want PT_INTERP error", sh, err)
	}
	if err := checkStatic([]byte("#!/bin/sh\n")); err == nil {
		t.Error("checkStatic accepted a script")
	}
}

// BenchmarkGuest reports the guest initramfs size; the target is
// well under 1 MB compressed (it goes on the SPI chip).
func BenchmarkGuest(b *testing.B) {
	for _, c := range []boardcfg.Compression{"xz", "zstd"} {
		b.Run(string(c), func(b *testing.B) {
			var n int
			for i := 0; i < b.N; i++ {
				s := guestSpec(b)
				s.Compression = c
				d, err := Guest(context.Background(), s)
				if err != nil {
					b.Fatal(err)
				}
				n = len(d)
			}
			b.ReportMetric(float64(n), "bytes")
		})
	}
}

func readFileResolved(p string) ([]byte, error) {
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(r)
}
