package qemutests

import (
	"cmp"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/fwbuild/fwbuild/contract"
)

// A Timeline splits a boot into the links of its chain, each with its start
// and its duration, from the console lines' arrival times and ctld's own
// step lines (contract.Step). It is how the slow links are found: `fwbuild
// test` and the boot benchmarks print it.
type Timeline struct {
	Links []Link
	// Ready is the arrival of ctld's ready line; zero if none came.
	Ready time.Duration
	// HandOver is the arrival of the line where the board's firmware hands
	// over to what fwbuild built: fwbuild's launcher starting the payload
	// (SPI), else BDS starting the boot option; zero if neither came.
	// Ready-HandOver is the part of the boot the build decides.
	HandOver time.Duration
	// GuestUp is each guest's up line (its own report from inside the VM,
	// or the stock image's first line), by guest name.
	GuestUp map[string]time.Duration
}

// Link is one link of the chain.
type Link struct {
	Name  string
	Start time.Duration // since QEMU's start
	Took  time.Duration
	// Clock is "serial" for a link between two console lines' arrivals,
	// "dom0" for one ctld timed itself (its start placed on QEMU's clock
	// through the step lines' arrivals).
	Clock string
	// Wait is the longest silence inside a serial link, and Before the
	// line that ended it: where the link spends its time.
	Wait   time.Duration
	Before string
}

// Console lines the timeline recognises, beyond the contract's.
var (
	tlBDS       = regexp.MustCompile(`^BdsDxe: starting Boot[0-9A-F]{4} `)
	tlLauncher  = regexp.MustCompile(contract.LauncherStartingPattern)
	tlEFILoader = regexp.MustCompile(`^Xen \S+ .*EFI loader`)
	tlXen       = regexp.MustCompile(`^\(XEN\) Xen version \d`)
	tlDom0Build = regexp.MustCompile(`^\(XEN\) \*\*\* Building a PVH? Dom0 \*\*\*`)
	tlDom0Start = regexp.MustCompile(`^\(XEN\) Freed \d+kB init memory`)
	tlLinux     = regexp.MustCompile(`^Linux version \d`)
	tlInit      = regexp.MustCompile(`^Run /\S+ as init process`)
	tlGuest     = regexp.MustCompile(`^\[guest (\S+)\] (.*)$`)
	// A kernel with CONFIG_PRINTK_TIME (Debian's) stamps its lines.
	tlPrintkTime = regexp.MustCompile(`^\[\s*\d+\.\d+\] `)
)

// NewTimeline reads a boot's console lines (Result.Lines).
func NewTimeline(lines []Line) Timeline {
	tl := Timeline{GuestUp: map[string]time.Duration{}}
	// Lines as their programs printed them: ctld's land behind the shell's prompt.
	text := make([]string, len(lines))
	for i, l := range lines {
		t := strings.TrimLeft(strings.TrimPrefix(strings.TrimLeft(l.Text, " "), "$ "), " ")
		if m := tlGuest.FindStringSubmatch(t); m != nil {
			t = "[guest " + m[1] + "] " + tlPrintkTime.ReplaceAllString(m[2], "")
		}
		text[i] = tlPrintkTime.ReplaceAllString(t, "")
	}
	find := func(from int, re *regexp.Regexp) int {
		for i := max(from, 0); i < len(text); i++ {
			if re.MatchString(text[i]) {
				return i
			}
		}
		return -1
	}
	// serial adds the link from line a to line b (a == -1: QEMU's start).
	serial := func(name string, a, b int) {
		if b < 0 || a < -1 || a >= b {
			return
		}
		l := Link{Name: name, Clock: "serial", Took: lines[b].At}
		if a >= 0 {
			l.Start, l.Took = lines[a].At, lines[b].At-lines[a].At
		}
		for i := a + 1; i <= b; i++ {
			prev := time.Duration(0) // QEMU's start, before the first line
			if i > 0 {
				prev = lines[i-1].At
			}
			if w := lines[i].At - prev; w > l.Wait {
				l.Wait, l.Before = w, text[i]
			}
		}
		tl.Links = append(tl.Links, l)
	}

	xen := find(0, tlXen)
	// The firmware hands over with the last boot option BDS starts before Xen.
	bds, launcher := -1, -1
	for i := 0; i < len(text) && (xen < 0 || i < xen); i++ {
		switch {
		case tlBDS.MatchString(text[i]):
			bds = i
		case tlLauncher.MatchString(text[i]):
			launcher = i
		}
	}
	grub := -1
	if bds >= 0 {
		grub = findText(text, bds, xen, "Welcome to GRUB!")
	}
	switch {
	case launcher >= 0:
		tl.HandOver = lines[launcher].At
	case bds >= 0:
		tl.HandOver = lines[bds].At
	}
	if launcher >= 0 {
		serial("firmware (power-on to the launcher)", -1, launcher)
		serial("launcher (to BDS starting the payload)", launcher, bds)
	} else {
		serial("firmware (power-on to BDS handing over)", -1, bds)
	}
	if grub >= 0 {
		serial("GRUB (BDS to GRUB)", bds, grub)
		serial("GRUB (loading Xen and dom0's modules)", grub, xen)
	} else if ld := find(bds, tlEFILoader); ld >= 0 && ld < xen {
		serial("Xen's EFI loader (BDS to its banner)", bds, ld)
		serial("Xen's EFI loader (loading dom0's kernel and initramfs)", ld, xen)
	} else {
		serial("loader (BDS to Xen's banner)", bds, xen)
	}
	build := find(xen, tlDom0Build)
	d0 := find(build, tlDom0Start)
	linux := find(xen, tlLinux)
	serial("Xen (banner to building dom0)", xen, build)
	serial("Xen (building dom0)", build, d0)
	serial("Xen (dom0 start to its banner)", d0, linux)
	initLine := find(linux, tlInit)
	serial("dom0 kernel (banner to init)", linux, initLine)

	// ctld's steps: their clock is dom0's; the smallest difference between
	// a step line's arrival and its At places them on QEMU's (serial
	// latency only ever adds).
	type stepAt struct {
		contract.Step
		i int
	}
	var steps []stepAt
	offset := time.Duration(-1)
	ready := -1
	for i, s := range text {
		if st, err := contract.ParseStep(s); err == nil {
			steps = append(steps, stepAt{st, i})
			if d := lines[i].At - st.At; offset < 0 || d < offset {
				offset = d
			}
		}
		if ready < 0 {
			if _, err := contract.ParseReady(s); err == nil {
				ready = i
				tl.Ready = lines[i].At
			}
		}
	}
	if len(steps) > 0 && initLine >= 0 {
		first := steps[0].Start() + offset
		l := Link{Name: "init (to ctld's first step)", Start: lines[initLine].At, Took: max(0, first-lines[initLine].At), Clock: "serial"}
		tl.Links = append(tl.Links, l)
	}
	helper := false
	for _, s := range steps {
		if ready >= 0 && s.i > ready && !helper {
			helper = true
			// ctld exits after the ready line; its detached copy does the rest.
			tl.Links = append(tl.Links, Link{Name: "ctld (ready line to the guest helper's first step)", Start: tl.Ready, Took: max(0, s.Start()+offset-tl.Ready), Clock: "dom0"})
		}
		tl.Links = append(tl.Links, Link{Name: "ctld " + s.Name, Start: s.Start() + offset, Took: s.Took, Clock: "dom0"})
	}

	// Each guest: ctld's running line, then the guest's kernel and init
	// from its forwarded console.
	var guests []string
	banner, ginit := map[string]int{}, map[string]int{}
	for i, s := range text {
		m := tlGuest.FindStringSubmatch(s)
		if m == nil {
			continue
		}
		name, rest := m[1], m[2]
		if !slices.Contains(guests, name) {
			guests = append(guests, name)
		}
		_, hasBanner := banner[name]
		_, hasInit := ginit[name]
		_, up := tl.GuestUp[name]
		switch {
		case tlLinux.MatchString(rest) && !hasBanner:
			banner[name] = i
		case tlInit.MatchString(rest) && !hasInit:
			ginit[name] = i
		case !up && (strings.HasPrefix(rest, contract.GuestPrefix+name+": up ") || strings.HasPrefix(rest, "fwbuild-guestos "+name+": ")):
			tl.GuestUp[name] = lines[i].At
			if hasInit {
				serial("guest "+name+" init (to up)", ginit[name], i)
			}
		}
	}
	for _, name := range guests {
		running := -1
		for i, s := range text {
			if g, err := contract.ParseGuestRunning(s); err == nil && g.Name == name {
				running = i
				break
			}
		}
		if b, ok := banner[name]; ok {
			serial("guest "+name+" (running line to its kernel's banner)", running, b)
			if in, ok := ginit[name]; ok {
				serial("guest "+name+" kernel (banner to init)", b, in)
			}
		}
	}
	// A step and its first phase ("create", "create.xl") start together:
	// the whole comes first.
	slices.SortStableFunc(tl.Links, func(a, b Link) int {
		if c := cmp.Compare(a.Start, b.Start); c != 0 {
			return c
		}
		switch {
		case strings.HasPrefix(b.Name, a.Name+"."):
			return -1
		case strings.HasPrefix(a.Name, b.Name+"."):
			return 1
		}
		return 0
	})
	return tl
}

// findText returns the first line in text[from:to] (to < 0: the end) that
// contains s, or -1.
func findText(text []string, from, to int, s string) int {
	if to < 0 {
		to = len(text)
	}
	for i := max(from, 0); i < to; i++ {
		if strings.Contains(text[i], s) {
			return i
		}
	}
	return -1
}

// Format prints the timeline as a table, each line prefixed with indent.
func (tl Timeline) Format(w io.Writer, indent string) {
	width := len("link")
	for _, l := range tl.Links {
		width = max(width, len(l.Name))
	}
	fmt.Fprintf(w, "%s%-*s  %8s  %8s  %-6s  %s\n", indent, width, "link", "start", "took", "clock", "longest wait in it")
	for _, l := range tl.Links {
		wait := ""
		if l.Clock == "serial" && l.Wait >= 300*time.Millisecond {
			before := l.Before
			if len(before) > 60 {
				before = before[:57] + "..."
			}
			wait = fmt.Sprintf("%.1fs before %q", l.Wait.Seconds(), before)
		}
		fmt.Fprintf(w, "%s%-*s  %7.2fs  %7.2fs  %-6s  %s\n", indent, width, l.Name, l.Start.Seconds(), l.Took.Seconds(), l.Clock, wait)
	}
	if tl.Ready > 0 {
		fmt.Fprintf(w, "%sboot to ready: %.2fs", indent, tl.Ready.Seconds())
		if tl.HandOver > 0 && tl.HandOver < tl.Ready {
			fmt.Fprintf(w, " (%.2fs after the firmware's hand-over)", (tl.Ready - tl.HandOver).Seconds())
		}
		names := make([]string, 0, len(tl.GuestUp))
		for n := range tl.GuestUp {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			fmt.Fprintf(w, "; ready to guest %s up: %.2fs", n, (tl.GuestUp[n] - tl.Ready).Seconds())
		}
		fmt.Fprintln(w)
	}
}
