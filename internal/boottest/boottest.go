// Package boottest boots a board's built artefacts in QEMU and checks the
// boot chain: the glue between a board profile, a build's outputs and the
// qemu-tests harness, shared by `fwbuild test` and the Go test suite.
package boottest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/fwbuild/fwbuild/boardcfg"
	"github.com/fwbuild/fwbuild/internal/pipeline"
	qemutests "github.com/fwbuild/fwbuild/qemu-tests"
)

// Paths are the boot paths a board can be tested on.
var Paths = []string{qemutests.ChainUSB, qemutests.ChainSPI}

// Spec is one boot to run.
type Spec struct {
	Board   *boardcfg.Board
	Comps   pipeline.Components
	OutDir  string // holds usb.img / spi.bin
	Path    string // qemutests.ChainUSB or ChainSPI
	WorkDir string // scratch (the VARS copy); the console log goes here too
	// Chip, when set, replaces OutDir/spi.bin (e.g. a chip file written by flashrom).
	Chip string
}

// Machine returns the QEMU machine and the markers for a boot.
func Machine(s Spec) (qemutests.Machine, []qemutests.Marker, error) {
	b := s.Board
	q := b.QEMU
	m := qemutests.Machine{Machine: q.Machine, CPU: q.CPU, MemoryMiB: int(uint64(q.Memory) >> 20), SMP: q.SMP}
	markers, err := qemutests.BootChain(s.Path)
	if err != nil {
		return m, nil, err
	}
	// Each autostart guest: ctld's running line, then the guest's own line from inside the VM.
	for _, g := range b.Guests {
		if !g.Autostart {
			continue
		}
		markers = append(markers,
			qemutests.Regexp("guest-"+g.Name+"-running", `fwbuild-ctld: guest `+regexp.QuoteMeta(g.Name)+` running domid=(\d+)`, qemutests.TimeoutReady),
			qemutests.Regexp("guest-"+g.Name+"-up", `fwbuild-guest `+regexp.QuoteMeta(g.Name)+`: up domid=(\d+)`, qemutests.TimeoutReady),
		)
	}
	// The operator interface, typed on the control domain's shell once
	// everything above has been seen: ctld status and a row per guest.
	markers[len(markers)-1].Then = "ctld status\n"
	markers = append(markers, qemutests.Regexp("ctld-status", StatusPattern, qemutests.TimeoutReady))
	for _, g := range b.Guests {
		markers = append(markers, qemutests.Regexp("ctld-status-"+g.Name, `(?:^|\s)`+regexp.QuoteMeta(g.Name)+`\s+(yes|no)\s+(running|paused|shutdown|crashed|dying|not running)\s`, qemutests.TimeoutReady))
	}
	switch s.Path {
	case qemutests.ChainUSB:
		ovmf := q.OVMF
		if ovmf == "" {
			return m, nil, fmt.Errorf("boottest: board %s: qemu.ovmf names no component with code/vars files (%s)", b.Name, b.Loc("qemu"))
		}
		code, err := s.Comps.File(ovmf, "code", b)
		if err != nil {
			return m, nil, fmt.Errorf("boottest: %w", err)
		}
		vars, err := s.Comps.File(ovmf, "vars", b)
		if err != nil {
			return m, nil, fmt.Errorf("boottest: %w", err)
		}
		m.Firmware = qemutests.PflashOVMF(code, vars)
		m.Disks = []qemutests.Disk{qemutests.USBKey(filepath.Join(s.OutDir, "usb.img"))}
	case qemutests.ChainSPI:
		if b.Outputs.SPI == nil {
			return m, nil, fmt.Errorf("boottest: board %s has no SPI output", b.Name)
		}
		chip := s.Chip
		if chip == "" {
			chip = filepath.Join(s.OutDir, "spi.bin")
		}
		switch q.SPIMode {
		case "", "bios":
			m.Firmware = qemutests.BIOS(chip)
		case "pflash":
			fw, ok := b.Outputs.SPI.FirmwareRegion()
			if !ok {
				return m, nil, fmt.Errorf("boottest: board %s has no firmware region", b.Name)
			}
			m.Firmware = qemutests.SplitPflash(chip, int64(fw.Start))
		}
	}
	return m, markers, nil
}

// FailurePattern is a console line by which ctld reports a failure: a boot
// showing one stops at once instead of waiting out the next marker.
var FailurePattern = regexp.MustCompile(`fwbuild-ctld: (FAILED |guest \S+ FAILED|guest \S+ stopped: crashed)`)

// StatusPattern is the first line of `ctld status`: Xen's version, dom0's
// memory in MiB, running guest domains.
const StatusPattern = `xen (\d+\.\d+\S*), dom0 (\d+) MiB, (\d+) guest domain\(s\) running`

// Report is a finished boot.
type Report struct {
	Path    string            `json:"path"`
	Result  qemutests.Result  `json:"result"`
	Ready   map[string]string `json:"ready,omitempty"` // parsed ctld ready line
	ReadyAt time.Duration     `json:"ready_at_ns"`     // QEMU start to the ready line
	LogPath string            `json:"log"`
}

// Run boots one path and checks the chain, including that ctld's ready
// line reports the Xen the board pins and the dom0 memory it asks for.
func Run(ctx context.Context, s Spec, opts qemutests.Options) (Report, error) {
	m, markers, err := Machine(s)
	if err != nil {
		return Report{}, err
	}
	if opts.LogPath == "" {
		if err := os.MkdirAll(s.WorkDir, 0o755); err != nil {
			return Report{}, err
		}
		opts.LogPath = filepath.Join(s.WorkDir, "console-"+s.Path+".log")
	}
	if opts.Abort == nil {
		opts.Abort = FailurePattern
	}
	res, err := qemutests.Run(ctx, m, markers, opts)
	rep := Report{Path: s.Path, Result: res, LogPath: res.LogPath}
	if err != nil {
		return rep, err
	}
	for _, mt := range res.Matches {
		if mt.Marker.Name == "ctld-ready" && len(mt.Values) == 3 {
			rep.Ready = map[string]string{"xen": mt.Values[0], "dom0_mem": mt.Values[1], "guests": mt.Values[2]}
			rep.ReadyAt = mt.At
		}
	}
	if err := checkReady(s.Board, rep.Ready); err != nil {
		return rep, fmt.Errorf("boottest: %s path: %w (log %s)", s.Path, err, rep.LogPath)
	}
	// ctld status, typed on the shell, must agree with the ready line and the profile.
	for _, mt := range res.Matches {
		switch name, guest := strings.CutPrefix(mt.Marker.Name, "ctld-status-"); {
		case mt.Marker.Name == "ctld-status" && (mt.Values[0] != rep.Ready["xen"] || atoi(mt.Values[1]) > atoi(rep.Ready["dom0_mem"]) || atoi(mt.Values[1]) <= 0):
			// dom0's allocation may shrink by a page or two once guests run; it never grows past dom0_mem's max.
			return rep, fmt.Errorf("boottest: ctld status says xen %s dom0 %s MiB, the ready line xen=%s dom0_mem=%s (log %s)", mt.Values[0], mt.Values[1], rep.Ready["xen"], rep.Ready["dom0_mem"], rep.LogPath)
		case guest:
			for _, g := range s.Board.Guests {
				if g.Name == name && (mt.Values[0] == "yes") != g.Autostart {
					return rep, fmt.Errorf("boottest: ctld status lists guest %s with autostart %s, the profile says %v (log %s)", name, mt.Values[0], g.Autostart, rep.LogPath)
				}
			}
		}
	}
	// The domain id ctld got from xl must be the one the guest read from xenstore.
	running := map[string]string{}
	for _, mt := range res.Matches {
		if name, ok := strings.CutSuffix(mt.Marker.Name, "-running"); ok {
			running[name] = mt.Values[0]
		} else if name, ok := strings.CutSuffix(mt.Marker.Name, "-up"); ok && running[name] != mt.Values[0] {
			return rep, fmt.Errorf("boottest: %s: ctld reports domid %s, the guest %s (log %s)", name, running[name], mt.Values[0], rep.LogPath)
		}
	}
	return rep, nil
}

// checkReady compares what ctld measured inside dom0 with what the board asked for.
func checkReady(b *boardcfg.Board, ready map[string]string) error {
	if ready == nil {
		return fmt.Errorf("no ctld ready line values")
	}
	xen, _ := b.Component(b.Hypervisor.Xen)
	if !strings.HasPrefix(xen.Version, ready["xen"]) {
		return fmt.Errorf("ctld reports xen=%s, the board pins %s", ready["xen"], xen.Version)
	}
	if ready["guests"] != strconv.Itoa(len(b.Guests)) {
		return fmt.Errorf("ctld reports guests=%s, the board declares %d", ready["guests"], len(b.Guests))
	}
	want := uint64(b.Hypervisor.Dom0.Memory) >> 20
	got, _ := strconv.ParseUint(ready["dom0_mem"], 10, 64)
	// dom0 sees its allocation minus what Xen keeps for itself; allow 5%.
	if got == 0 || got > want || got < want*95/100 {
		return fmt.Errorf("ctld reports dom0_mem=%s MiB, the board asks for %d", ready["dom0_mem"], want)
	}
	return nil
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return n
}
