package image

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"

	flog "github.com/linuxboot/fiano/pkg/log"
	"github.com/linuxboot/fiano/pkg/uefi"
)

// fiano keeps its state in package globals: the erase polarity (set by the
// first volume parsed, checked against every later one), the logger (whose
// Fatalf exits the process) and the xz flag on flag.CommandLine. fianoMu
// serializes every use of fiano in this package; withFiano sets that state
// for one call and restores it afterwards.
var fianoMu sync.Mutex

// poisonedPolarity is fiano's unexported "not set yet" marker.
const poisonedPolarity = 0xF0

// fianoFatal is the panic value our logger raises instead of os.Exit.
type fianoFatal string

// fianoLogger turns fiano's Fatalf into a panic that withFiano recovers and
// keeps its error lines so they can explain a later failure.
type fianoLogger struct{ errs []string }

func (l *fianoLogger) Warnf(format string, args ...any) {
	slog.Debug("fiano: " + fmt.Sprintf(format, args...))
}

func (l *fianoLogger) Errorf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	slog.Debug("fiano: " + msg)
	if len(l.errs) < 8 {
		l.errs = append(l.errs, msg)
	}
}

func (l *fianoLogger) Fatalf(format string, args ...any) {
	panic(fianoFatal(fmt.Sprintf(format, args...)))
}

// errFiano marks errors that come from a panic inside fiano.
var errFiano = errors.New("fiano failed")

// withFiano runs fn with fiano's globals set for a reproducible, in-process
// run: the given LZMA encoder (pinnedXZ, so output does not depend on
// whether xz is on PATH), no Fatalf exits, fresh erase polarity. A panic inside fiano (malformed
// input reaches unchecked slices) becomes an error.
func withFiano(xzPath string, fn func(l *fianoLogger) error) (err error) {
	fianoMu.Lock()
	defer fianoMu.Unlock()

	xz := flag.CommandLine.Lookup("xzPath")
	if xz == nil {
		return errors.New("image: fiano's xzPath flag is not registered (fiano version changed?): cannot pin its LZMA encoder")
	}
	oldXZ := xz.Value.String()
	oldLog := flog.DefaultLogger
	oldAttr := uefi.Attributes
	oldSuppress := uefi.SuppressErasePolarityError

	l := &fianoLogger{}
	flog.DefaultLogger = l
	if err := xz.Value.Set(xzPath); err != nil {
		return fmt.Errorf("image: set fiano xzPath: %w", err)
	}
	uefi.Attributes = uefi.ROMAttributes{ErasePolarity: poisonedPolarity}
	uefi.SuppressErasePolarityError = false

	defer func() {
		_ = xz.Value.Set(oldXZ)
		flog.DefaultLogger = oldLog
		uefi.Attributes = oldAttr
		uefi.SuppressErasePolarityError = oldSuppress
		if r := recover(); r != nil {
			if f, ok := r.(fianoFatal); ok {
				err = fmt.Errorf("%w: %s", errFiano, string(f))
				return
			}
			slog.Debug("fiano panic", "value", r, "stack", string(debug.Stack()))
			err = fmt.Errorf("%w: internal panic: %v", errFiano, r)
		}
	}()
	return fn(l)
}

// resetErasePolarity forgets the erase polarity fiano took from the volumes
// parsed so far, for a second parse inside the same withFiano call.
func resetErasePolarity() {
	uefi.Attributes = uefi.ROMAttributes{ErasePolarity: poisonedPolarity}
}

// pinnedXZ is the xzPath every exported function gives fiano. Empty makes
// exec.LookPath fail, which selects fiano's pure-Go encoder (github.com/ulikunitz/xz, pinned in go.sum): the
// same bytes on every machine and no host tool to install. System xz
// compresses OVMF's FVMAIN_COMPACT ~17% smaller (1.29 vs 1.56 MB) and
// twice as fast, but its output can change with the xz-utils version, and
// for the 16 MiB layout the budget is bound by DXEFV, not compression.
const pinnedXZ = ""

// fianoDetail formats the error lines fiano logged, for an error message.
func (l *fianoLogger) detail() string {
	if len(l.errs) == 0 {
		return ""
	}
	return " (fiano reported: " + strings.Join(l.errs, "; ") + ")"
}
