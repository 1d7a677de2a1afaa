package flash

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// aptFlashrom is the install line quoted when flashrom is missing.
const aptFlashrom = "apt-get install -y flashrom"

// problem classifies a failed flashrom run from its output.
type problem int

const (
	probNone problem = iota
	probNoChip
	probMultipleChips
	probUnknownChip
	probProgrammer
	probProtected
	probVerify
	probEraseWrite
	probSize
	probRegion
)

// diagnosis is what parseFlashrom extracts from flashrom's output.
type diagnosis struct {
	Kind       problem
	Lines      []string // relevant lines, in order, repeats dropped
	Candidates []string // chip definitions when several match
	Found      []string // chip names from "Found ... flash chip" lines
	// Changed: +1 flashrom says the chip changed after a failed write, -1 it says nothing
	// changed, 0 it said neither.
	Changed int
	Size    int64 // from --flash-size (a line holding only a number); -1 if none
}

var (
	foundRe  = regexp.MustCompile(`^Found .* flash chip "([^"]*)"`)
	quotedRe = regexp.MustCompile(`"([^"]*)"`)
	digitsRe = regexp.MustCompile(`^[0-9]{1,19}$`)
)

// patterns maps substrings of flashrom 1.3 messages to the problem they indicate. Order
// matters only for the Kind: the highest-priority problem seen wins (see rank).
var patterns = []struct {
	sub  string
	kind problem
}{
	{"No EEPROM/flash device found", probNoChip},
	{"flashrom can never write if the flash chip isn't found", probNoChip},
	{"Multiple flash chip definitions match", probMultipleChips},
	{"Please specify which chip definition to use", probMultipleChips},
	{"Unknown chip '", probUnknownChip},
	{"Programmer initialization failed", probProgrammer},
	{"Unknown programmer", probProgrammer},
	{"failed to open", probProgrammer},
	{"Could not get I/O privileges", probProgrammer},
	{"Permission denied", probProgrammer},
	{"write protected", probProtected},
	{"write-protected", probProtected},
	{"Block protection could not be disabled", probProtected},
	{"is read-only", probProtected},
	{"is locked", probProtected},
	{"locked down", probProtected},
	{"Transaction error", probProtected},
	{"VERIFY FAILED", probVerify},
	{"Verifying flash... FAILED", probVerify},
	{"Erase/write failed", probEraseWrite},
	{"Failed to erase", probEraseWrite},
	{"No usable erase functions left", probEraseWrite},
	{"failed during command execution", probEraseWrite},
	{"Your flash chip is in an unknown state", probEraseWrite},
	{"Apparently at least some data has changed", probEraseWrite},
	{"writing to the flash chip apparently didn't do anything", probEraseWrite},
	{"doesn't match the expected size", probSize},
	{"Invalid region specified", probRegion},
}

// rank orders problems by how much they explain: a protected chip also makes erase fail,
// so "protected" must win over "erase/write failed".
var rank = map[problem]int{
	probNone: 0, probEraseWrite: 1, probVerify: 2, probSize: 3, probRegion: 3, probNoChip: 4,
	probProgrammer: 5, probUnknownChip: 6, probMultipleChips: 7, probProtected: 8,
}

const maxDiagLines = 16

// parseFlashrom extracts the relevant lines and the kind of problem from flashrom output.
func parseFlashrom(out string) diagnosis {
	d := diagnosis{Size: -1}
	seen := map[string]bool{}
	for _, raw := range strings.Split(out, "\n") {
		line := strings.TrimSpace(strings.TrimRight(raw, "\r"))
		if line == "" {
			continue
		}
		if m := foundRe.FindStringSubmatch(line); m != nil {
			d.Found = append(d.Found, m[1])
		}
		if digitsRe.MatchString(line) {
			if v, err := strconv.ParseInt(line, 10, 64); err == nil {
				d.Size = v
			}
		}
		switch {
		case strings.Contains(line, "Apparently at least some data has changed"),
			strings.Contains(line, "Your flash chip is in an unknown state"):
			d.Changed = 1
		case strings.Contains(line, "writing to the flash chip apparently didn't do anything"):
			if d.Changed == 0 {
				d.Changed = -1
			}
		}
		relevant := false
		for _, p := range patterns {
			if strings.Contains(line, p.sub) {
				relevant = true
				if rank[p.kind] > rank[d.Kind] {
					d.Kind = p.kind
				}
			}
		}
		if strings.Contains(line, "Multiple flash chip definitions match") {
			if i := strings.Index(line, ":"); i >= 0 {
				for _, m := range quotedRe.FindAllStringSubmatch(line[i:], -1) {
					d.Candidates = append(d.Candidates, m[1])
				}
			}
		}
		if relevant && !seen[line] && len(d.Lines) < maxDiagLines {
			d.Lines = append(d.Lines, line)
			seen[line] = true
		}
	}
	return d
}

// hint says what to do about a diagnosed problem.
func (d diagnosis) hint(programmer string) string {
	switch d.Kind {
	case probNoChip:
		return fmt.Sprintf("flashrom found no flash chip on programmer %q: check that the clip/cable is seated "+
			"(pin 1!) and the chip is powered as your setup requires, the programmer string is right, "+
			"and try a lower spispeed=", programmer)
	case probMultipleChips:
		if len(d.Candidates) > 0 {
			return "several chip definitions match: run again with --chip set to one of: " +
				quoteList(d.Candidates)
		}
		return "several chip definitions match: run again with --chip <name> (see `flashrom -L`)"
	case probUnknownChip:
		return "flashrom does not know that chip name: copy the exact name from `flashrom -L` or from the " +
			"\"Multiple flash chip definitions match\" message"
	case probProgrammer:
		return fmt.Sprintf("flashrom could not start programmer %q: check the programmer string "+
			"(`flashrom --help` lists programmers), that the device exists and that you run as root", programmer)
	case probProtected:
		return "the chip or a region is write-protected: for status-register protection release the WP# pin " +
			"and run `flashrom -p <programmer> --wp-disable`; an Intel descriptor lock (descriptor/ME/GbE) " +
			"cannot be lifted from here: write only the BIOS region, or use the board's service jumper"
	case probVerify:
		return "the chip does not hold what was written: check the connection (short wires, clip contact, " +
			"lower spispeed=), then restore the backup"
	case probEraseWrite:
		return "flashrom could not erase or write the chip: check the connection and write protection"
	case probSize:
		return "the image size does not match the chip: build the image for this chip size"
	case probRegion:
		return "a region name is not in the layout"
	}
	return ""
}

func quoteList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = strconv.Quote(x)
	}
	return strings.Join(q, ", ")
}

// flashrom runs one flashrom binary against one programmer (and optional chip).
type flashrom struct {
	bin        string // as the user gave it, for printed commands
	path       string // resolved with exec.LookPath
	programmer string
	chip       string
	timeout    time.Duration
	log        *slog.Logger
	rep        *reporter
}

func newFlashrom(bin, programmer, chip string, timeout time.Duration, log *slog.Logger, rep *reporter) (*flashrom, error) {
	if bin == "" {
		bin = "flashrom"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, &Error{Op: "spi check", Msg: fmt.Sprintf("flashrom not found (%q)", bin), Err: err,
			Hint: "install it: " + aptFlashrom + " (Debian 12 ships 1.3.0), or pass its path"}
	}
	if timeout <= 0 {
		timeout = 30 * time.Minute
	}
	return &flashrom{bin: bin, path: path, programmer: programmer, chip: chip, timeout: timeout, log: log, rep: rep}, nil
}

// args prefixes the programmer and chip options.
func (f *flashrom) args(op ...string) []string {
	a := []string{"-p", f.programmer}
	if f.chip != "" {
		a = append(a, "-c", f.chip)
	}
	return append(a, op...)
}

// command renders argv as a command a shell runs unchanged.
func (f *flashrom) command(args []string) string {
	return shellJoin(append([]string{f.bin}, args...))
}

// run executes flashrom with args, reporting phase progress. On failure it returns the
// combined output's diagnosis and an error that already says what to do.
func (f *flashrom) run(ctx context.Context, op, phase string, total int64, args []string) (string, diagnosis, error) {
	cctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, f.path, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	// flashrom in the middle of an erase should get a chance to finish its current command.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	f.log.Debug("flash: run", "cmd", f.command(args))
	stop := f.rep.tick(phase, total, time.Second)
	err := cmd.Run()
	stop(err == nil)
	text := out.String()
	d := parseFlashrom(text)
	f.log.Debug("flash: flashrom done", "phase", phase, "err", err, "output", text)
	if err == nil {
		return text, d, nil
	}
	e := &Error{Op: op, Flashrom: d.Lines, Hint: d.hint(f.programmer), Err: err}
	switch {
	case errors.Is(cctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil:
		e.Msg = fmt.Sprintf("flashrom timed out after %v: %s", f.timeout, f.command(args))
		e.Hint = "raise the timeout for slow programmers, or check the connection"
	case ctx.Err() != nil:
		e.Msg = "cancelled: " + f.command(args)
		e.Err = ctx.Err()
	default:
		e.Msg = "flashrom failed: " + f.command(args)
		if len(d.Lines) == 0 {
			e.Flashrom = tail(text, 8)
		}
	}
	return text, d, e
}

// tail returns the last n non-empty lines of s.
func tail(s string, n int) []string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}

var shellSafe = regexp.MustCompile(`^[A-Za-z0-9_@%+=:,./-]+$`)

// shellJoin quotes words for a POSIX shell.
func shellJoin(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		if shellSafe.MatchString(w) {
			q[i] = w
		} else {
			q[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
		}
	}
	return strings.Join(q, " ")
}
