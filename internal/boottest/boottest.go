// Package boottest boots a board's built artefacts in QEMU and checks the
// boot chain: the glue between a board profile, a build's outputs and the
// qemu-tests harness, shared by `fwbuild test` and the Go test suite.
package boottest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/fwbuild/fwbuild/boardcfg"
	"github.com/fwbuild/fwbuild/contract"
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
	// A host board: the management line, then the data disk's (the guest helper's order, before the guests).
	if b.Network != nil {
		markers = append(markers, qemutests.Regexp("management", contract.ManagementPattern, qemutests.TimeoutReady))
		if b.Network.Guests != nil {
			// Printed right after it: the guest bridge, no address of dom0's on it.
			markers = append(markers, qemutests.Regexp("guest-bridge", contract.GuestBridgeIsolatedPattern, qemutests.TimeoutReady))
		}
	}
	if b.Storage != nil {
		markers = append(markers, qemutests.Regexp("data-disk", contract.DataDiskPattern, qemutests.TimeoutReady))
	}
	// Each autostart guest: ctld's running line, then the guest's own line from inside the VM.
	for _, g := range b.Guests {
		if !g.Autostart {
			continue
		}
		markers = append(markers, qemutests.Regexp("guest-"+g.Name+"-running", contract.GuestRunningPattern(g.Name), qemutests.TimeoutReady))
		markers = append(markers, guestMarkers(b, g)...)
	}
	// The operator interface, typed on the control domain's shell once
	// everything above has been seen: ctld status and a row per guest.
	markers[len(markers)-1].Then = "ctld status\n"
	markers = append(markers, qemutests.Regexp("ctld-status", contract.StatusPattern, qemutests.TimeoutReady))
	// ctld lists the guests in the order of their config files' names
	// (<name>.cfg, globbed); the markers match in order.
	var names []string
	for _, g := range b.Guests {
		names = append(names, g.Name)
	}
	sort.Slice(names, func(i, j int) bool { return names[i]+".cfg" < names[j]+".cfg" })
	for _, n := range names {
		markers = append(markers, qemutests.Regexp("ctld-status-"+n, contract.GuestRowPattern(n), qemutests.TimeoutReady))
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
		if sb := b.Outputs.SecureBoot; sb != nil {
			// The owner's keys enrolled by the build, on the firmware
			// that enforces them (the SMM build: secure pflash). S3 off:
			// with S3 the SMM OVMF reserves its 8-23 MiB work area as
			// ACPI NVS, where the PV dom0 kernel lies.
			comp, role, _ := strings.Cut(sb.Code, ":")
			if code, err = s.Comps.File(comp, role, b); err != nil {
				return m, nil, fmt.Errorf("boottest: %w", err)
			}
			vars = filepath.Join(s.OutDir, pipeline.VarsArtefact)
			m.Machine += ",smm=on"
			m.Args = append(m.Args, "-global", "driver=cfi.pflash01,property=secure,value=on", "-global", "ICH9-LPC.disable_s3=1")
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
	if err := hostDevices(b, &m, s.WorkDir); err != nil {
		return m, nil, err
	}
	return m, markers, nil
}

// guestMarkers are what a started guest prints from inside its VM (ctld
// forwards its console): guestinit's up line, or for a guest of a guest
// image the stock image's lines (its root from its virtual disk, a DHCP
// lease, the URL of fwbuild.fetch= if its command line has one, its
// marker), or the installer's disks and first screen.
func guestMarkers(b *boardcfg.Board, g boardcfg.Guest) []qemutests.Marker {
	img, ok := b.GuestImage(g.Image)
	if !ok {
		return []qemutests.Marker{qemutests.Regexp("guest-"+g.Name+"-up", contract.GuestUpPattern(g.Name), qemutests.TimeoutReady)}
	}
	p := "guest-" + g.Name + "-"
	if !img.BuildsRoot() {
		var ms []qemutests.Marker
		if len(img.Modules) > 0 {
			ms = append(ms, qemutests.Regexp(p+"disk", contract.GuestOSDiskPattern(g.Name), qemutests.TimeoutReady))
		}
		return append(ms, qemutests.Substring(p+"first-screen", "Select a language", qemutests.TimeoutReady))
	}
	ms := []qemutests.Marker{
		qemutests.Regexp(p+"root", contract.GuestOSRootPattern(g.Name), qemutests.TimeoutReady),
		qemutests.Regexp(p+"dhcp", contract.GuestOSDHCPPattern(g.Name), qemutests.TimeoutReady),
	}
	if strings.Contains(" "+img.Cmdline+" "+g.Cmdline, " "+contract.GuestFetchParam+"=") {
		ms = append(ms, qemutests.Regexp(p+"fetched", contract.GuestOSFetchedPattern(g.Name), qemutests.TimeoutReady))
	}
	return append(ms, qemutests.Regexp(p+"marker", contract.GuestOSMarkerPattern(g.Name), qemutests.TimeoutReady))
}

// Report is a finished boot.
type Report struct {
	Path    string           `json:"path"`
	Result  qemutests.Result `json:"result"`
	Ready   contract.Ready   `json:"ready"`       // parsed ctld ready line
	ReadyAt time.Duration    `json:"ready_at_ns"` // QEMU start to the ready line
	LogPath string           `json:"log"`
	// Measured is ctld's measured line (the TPM's PCRs 4 and 7), equal to
	// the build's prediction; Quote the quote it gave over the run's nonce.
	Measured contract.Measured `json:"measured"`
	Quote    *contract.Quote   `json:"quote,omitempty"`
	// Timeline is the boot's links with their times, as far as it got.
	Timeline qemutests.Timeline `json:"timeline"`
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
		// A boot that shows a failure stops at once instead of waiting out the next marker.
		opts.Abort = regexp.MustCompile(contract.FailurePattern + "|" + contract.GuestOSFailurePattern)
	}
	stop, err := serveImages(s.Board, s.OutDir)
	if err != nil {
		return Report{}, err
	}
	defer stop()
	tpm, markers, nonce, done, err := withTPM(ctx, &m, markers)
	if err != nil {
		return Report{}, err
	}
	defer done()
	res, err := qemutests.Run(ctx, m, markers, opts)
	rep := Report{Path: s.Path, Result: res, LogPath: res.LogPath, Timeline: qemutests.NewTimeline(res.Lines)}
	if err != nil {
		return rep, err
	}
	var ready *contract.Ready
	for _, mt := range res.Matches {
		if mt.Marker.Name == "ctld-ready" {
			r, err := contract.ParseReady(mt.Line)
			if err != nil {
				return rep, fmt.Errorf("boottest: %s path: %w (log %s)", s.Path, err, rep.LogPath)
			}
			ready, rep.Ready, rep.ReadyAt = &r, r, mt.At
		}
	}
	if err := checkReady(s.Board, ready); err != nil {
		return rep, fmt.Errorf("boottest: %s path: %w (log %s)", s.Path, err, rep.LogPath)
	}
	if err := checkStatus(s.Board, rep.Ready, res.Matches); err != nil {
		return rep, fmt.Errorf("boottest: %w (log %s)", err, rep.LogPath)
	}
	if err := checkGuestIDs(res.Matches); err != nil {
		return rep, fmt.Errorf("boottest: %w (log %s)", err, rep.LogPath)
	}
	if err := checkTPM(s, tpm, nonce, res.Matches, &rep); err != nil {
		return rep, fmt.Errorf("boottest: %s path: measured boot: %w (log %s)", s.Path, err, rep.LogPath)
	}
	return rep, nil
}

// checkStatus holds ctld status, typed on the shell, against the ready line and the profile.
func checkStatus(b *boardcfg.Board, ready contract.Ready, matches []qemutests.Match) error {
	for _, mt := range matches {
		name, guest := strings.CutPrefix(mt.Marker.Name, "ctld-status-")
		switch {
		case mt.Marker.Name == "ctld-status":
			st, err := contract.ParseStatus(mt.Line)
			if err != nil {
				return err
			}
			// dom0's allocation may shrink by a page or two once guests run; it never grows past dom0_mem's max.
			if st.Xen != ready.Xen || st.Dom0MemMiB > ready.Dom0MemMiB || st.Dom0MemMiB <= 0 {
				return fmt.Errorf("ctld status says xen %s dom0 %d MiB, the ready line xen=%s dom0_mem=%d", st.Xen, st.Dom0MemMiB, ready.Xen, ready.Dom0MemMiB)
			}
		case guest:
			row, err := contract.ParseGuestRow(name, mt.Line)
			if err != nil {
				return err
			}
			for _, g := range b.Guests {
				if g.Name == name && row.Autostart != g.Autostart {
					return fmt.Errorf("ctld status lists guest %s with autostart %v, the profile says %v", name, row.Autostart, g.Autostart)
				}
			}
		}
	}
	return nil
}

// checkGuestIDs holds the domain id ctld got from xl against the one each
// guest read from xenstore inside its VM.
func checkGuestIDs(matches []qemutests.Match) error {
	running := map[string]int{}
	for _, mt := range matches {
		if !strings.HasPrefix(mt.Marker.Name, "guest-") {
			continue
		}
		if _, ok := strings.CutSuffix(mt.Marker.Name, "-running"); ok {
			g, err := contract.ParseGuestRunning(mt.Line)
			if err != nil {
				return err
			}
			running[g.Name] = g.DomID
		} else if _, ok := strings.CutSuffix(mt.Marker.Name, "-up"); ok {
			g, err := contract.ParseGuestUp(mt.Line)
			if err != nil {
				return err
			}
			if id, ok := running[g.Name]; !ok || id != g.DomID {
				return fmt.Errorf("%s: ctld reports domid %d, the guest %d", g.Name, id, g.DomID)
			}
		}
	}
	return nil
}

// checkReady compares what ctld measured inside dom0 with what the board asked for.
func checkReady(b *boardcfg.Board, ready *contract.Ready) error {
	if ready == nil {
		return fmt.Errorf("no ctld ready line values")
	}
	xen, _ := b.Component(b.Hypervisor.Xen)
	if !strings.HasPrefix(xen.Version, ready.Xen) {
		return fmt.Errorf("ctld reports xen=%s, the board pins %s", ready.Xen, xen.Version)
	}
	if ready.Guests != len(b.Guests) {
		return fmt.Errorf("ctld reports guests=%d, the board declares %d", ready.Guests, len(b.Guests))
	}
	want := int(uint64(b.Hypervisor.Dom0.Memory) >> 20)
	// dom0 sees its allocation minus what Xen keeps for itself; allow 5%.
	if ready.Dom0MemMiB <= 0 || ready.Dom0MemMiB > want || ready.Dom0MemMiB < want*95/100 {
		return fmt.Errorf("ctld reports dom0_mem=%d MiB, the board asks for %d", ready.Dom0MemMiB, want)
	}
	return nil
}

// serveImages serves outDir, where the build published the guest images'
// artefacts, at the board's guest_images_url when that names the host as
// QEMU's user network shows it (10.0.2.2:<port>): ctld copies the images from
// there when it finds no USB key with an images partition (the SPI path).
// Another URL is the profile's to serve.
// TestHostDataDiskPersists serves its own (a free port), not through Run.
func serveImages(b *boardcfg.Board, outDir string) (stop func(), err error) {
	// Only a boot that starts a guest of an image needs them (qemu-q35's
	// boots do not, and two of them at once must not compete for the port).
	needed := false
	for _, g := range b.Guests {
		needed = needed || (g.Autostart && g.Image != "")
	}
	u, err := url.Parse(b.GuestImagesURL)
	if !needed || b.GuestImagesURL == "" || err != nil || u.Scheme != "http" || u.Hostname() != "10.0.2.2" {
		return func() {}, nil
	}
	port := u.Port()
	if port == "" {
		port = "80"
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", port))
	if err != nil {
		return nil, fmt.Errorf("boottest: serve the guest images at %s (guest_images_url, %s): %w", b.GuestImagesURL, b.Loc("guest_images_url"), err)
	}
	srv := &http.Server{Handler: http.StripPrefix(strings.TrimSuffix(u.Path, "/"), http.FileServer(http.Dir(outDir)))}
	go srv.Serve(ln)
	return func() { srv.Close() }, nil
}
