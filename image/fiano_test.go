package image

import (
	"flag"
	"os/exec"
	"strings"
	"testing"

	"github.com/linuxboot/fiano/pkg/compression"
	flog "github.com/linuxboot/fiano/pkg/log"
	"github.com/linuxboot/fiano/pkg/uefi"
)

// TestWithFiano checks the guard around fiano's globals: the pure-Go LZMA
// encoder is used even with xz on PATH, Fatalf and panics become errors,
// and everything is restored afterwards.
func TestWithFiano(t *testing.T) {
	if _, err := exec.LookPath("xz"); err != nil {
		t.Log("xz is not on PATH; the pinning is then trivially true")
	}
	before := flag.CommandLine.Lookup("xzPath").Value.String()
	oldLog := flog.DefaultLogger
	err := withFiano(pinnedXZ, func(*fianoLogger) error {
		c := compression.CompressorFromGUID(&compression.LZMAGUID)
		if _, ok := c.(*compression.LZMA); !ok {
			t.Errorf("LZMA encoder is %T, want the pure-Go *compression.LZMA", c)
		}
		if uefi.Attributes.ErasePolarity != poisonedPolarity {
			t.Errorf("erase polarity not reset: %#x", uefi.Attributes.ErasePolarity)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = withFiano(pinnedXZ, func(*fianoLogger) error {
		flog.Fatalf("volume %d is broken", 7)
		t.Error("Fatalf returned")
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "volume 7 is broken") {
		t.Errorf("Fatalf gave %v", err)
	}
	err = withFiano(pinnedXZ, func(*fianoLogger) error {
		var b []byte
		_ = b[3]
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "internal panic") {
		t.Errorf("panic gave %v", err)
	}
	if got := flag.CommandLine.Lookup("xzPath").Value.String(); got != before {
		t.Errorf("xzPath left at %q, was %q", got, before)
	}
	if flog.DefaultLogger != oldLog {
		t.Errorf("fiano logger not restored")
	}
}
