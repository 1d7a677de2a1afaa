package qemutests

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// defaultMarkerTimeout is the base timeout of a marker whose Timeout is zero
// (before scaling: 90s under TCG with the default scale).
const defaultMarkerTimeout = 30 * time.Second

// maxLine bounds the unfinished line kept in memory: a guest that prints
// megabytes without a newline gets its output split into 64 KiB lines.
const maxLine = 64 << 10

// Marker is one expected piece of console output.
type Marker struct {
	// Name identifies the marker in results and errors, e.g. "xen".
	Name string
	// Text is a plain substring to find; set Text or Pattern, not both.
	Text string
	// Pattern is a regular expression; its groups become Match.Values.
	Pattern *regexp.Regexp
	// Timeout is the base time allowed since the previous marker matched
	// (since QEMU started for the first marker); Run multiplies it by the
	// timeout scale. Zero means 30s.
	Timeout time.Duration
	// Then is typed on the serial console once the marker has matched
	// (SerialStdio machines), e.g. a shell command whose output the next
	// markers wait for.
	Then string
	// Diagnose, if set, is typed on the serial console when this marker
	// times out (SerialStdio machines): commands that show why (e.g. the
	// hypervisor's view of a stalled guest). What the console prints in
	// the DiagnoseFor that follows goes into the MarkerError, and the
	// run still fails.
	Diagnose string
	// DiagnoseFor is how long the diagnosis may print (scaled like
	// Timeout); zero: 20s.
	DiagnoseFor time.Duration
}

// Substring returns a marker matching the plain text s.
func Substring(name, s string, timeout time.Duration) Marker {
	return Marker{Name: name, Text: s, Timeout: timeout}
}

// Regexp returns a marker matching the regular expression expr; it panics if
// expr does not compile, like regexp.MustCompile, as it is meant for
// constant expressions.
func Regexp(name, expr string, timeout time.Duration) Marker {
	return Marker{Name: name, Pattern: regexp.MustCompile(expr), Timeout: timeout}
}

// String describes the marker for error messages.
func (mk Marker) String() string {
	if mk.Pattern != nil {
		return fmt.Sprintf("%q (regexp `%s`)", mk.Name, mk.Pattern)
	}
	return fmt.Sprintf("%q (text %q)", mk.Name, mk.Text)
}

func (mk Marker) validate(i int) error {
	switch {
	case mk.Name == "":
		return fmt.Errorf("marker %d has no Name", i+1)
	case mk.Text == "" && mk.Pattern == nil:
		return fmt.Errorf("marker %d %q has neither Text nor Pattern", i+1, mk.Name)
	case mk.Text != "" && mk.Pattern != nil:
		return fmt.Errorf("marker %d %q has both Text and Pattern; set one", i+1, mk.Name)
	case mk.Timeout < 0:
		return fmt.Errorf("marker %d %q has a negative Timeout", i+1, mk.Name)
	}
	return nil
}

// literal returns the fixed text a match of mk always is, if any: such a
// match in an unfinished line can be trusted at once, as more bytes cannot
// change it.
func (mk Marker) literal() (string, bool) {
	if mk.Pattern == nil {
		return mk.Text, true
	}
	return mk.Pattern.LiteralPrefix()
}

// find returns where the match of mk in s ends, plus the regexp's groups.
func (mk Marker) find(s string) (end int, values []string, ok bool) {
	if mk.Pattern == nil {
		i := strings.Index(s, mk.Text)
		if i < 0 {
			return 0, nil, false
		}
		return i + len(mk.Text), nil, true
	}
	loc := mk.Pattern.FindStringSubmatchIndex(s)
	if loc == nil {
		return 0, nil, false
	}
	for g := 1; g < len(loc)/2; g++ {
		if loc[2*g] < 0 {
			values = append(values, "")
			continue
		}
		values = append(values, s[loc[2*g]:loc[2*g+1]])
	}
	return loc[1], values, true
}

// Match is a marker seen on the console.
type Match struct {
	Marker Marker
	// Index is the marker's position in the list given to Run.
	Index int
	// At is when the marker appeared, measured from QEMU's start.
	At time.Duration
	// Line is the console line it matched in, cleaned of escape
	// sequences; for a match in an unfinished line, as much as had arrived.
	Line string
	// Values are the regexp's submatches (group 1 first); nil for Text.
	Values []string
}

// cleaner removes what a terminal interprets rather than prints: CSI
// sequences (colours, cursor moves, OVMF's "\x1b[=3h"), two-byte ESC
// sequences, and C0 control characters other than tab. It keeps its state
// between chunks, so a sequence split across reads is still removed and the
// cleaned text of a line only ever grows.
type cleaner int

const (
	plain cleaner = iota
	afterESC
	inCSI
)

func (c *cleaner) append(dst, p []byte) []byte {
	for i := 0; i < len(p); i++ {
		b := p[i]
		switch *c {
		case afterESC:
			*c = plain
			if b == '[' {
				*c = inCSI
				continue
			}
			if b >= 0x40 && b <= 0x7e {
				continue
			}
			// Not a sequence we know: drop the ESC, keep b.
		case inCSI:
			if b >= 0x20 && b <= 0x3f { // parameters, intermediates
				continue
			}
			*c = plain
			if b >= 0x40 && b <= 0x7e { // final byte
				continue
			}
			// A broken sequence: keep b.
		}
		switch {
		case b == 0x1b:
			*c = afterESC
		case b < 0x20 && b != '\t', b == 0x7f:
		default:
			dst = append(dst, b)
		}
	}
	return dst
}

// cleanLine returns the printable text of a raw console line.
func cleanLine(raw []byte) string {
	var c cleaner
	return string(c.append(nil, raw))
}

// matcher assembles console bytes into lines and matches markers in order.
// It does no I/O and keeps no clock, so it can be fed from tests.
type matcher struct {
	markers []Marker
	next    int     // index of the marker being waited for
	cur     []byte  // cleaned text of the unfinished line
	raw     int     // raw bytes in the unfinished line
	esc     cleaner // escape state within the unfinished line
	from    int     // offset in cur where the search resumes
	// searched is how far cur has been searched for the current literal
	// marker, so an endless line is not searched again from the start.
	searched int
	tail     []string
	tailMax  int
	abort    *regexp.Regexp
	aborted  string // the first complete line abort matched
	// lines are the complete non-empty lines, cleaned, with when each
	// ended: the timeline's input.
	lines []Line
}

// Line is a complete console line, cleaned of escape sequences, and when
// its end arrived (since QEMU's start).
type Line struct {
	At   time.Duration
	Text string
}

func newMatcher(markers []Marker, tailLines int) *matcher {
	return &matcher{markers: markers, tailMax: tailLines}
}

// done reports whether every marker has matched.
func (m *matcher) done() bool { return m.next >= len(m.markers) }

// feed consumes a chunk of console output seen at time at and returns the
// markers it completed.
func (m *matcher) feed(p []byte, at time.Duration) []Match {
	var out []Match
	for len(p) > 0 {
		n := bytes.IndexByte(p, '\n')
		eol := n >= 0
		if !eol {
			n = len(p)
		}
		if room := maxLine - m.raw; n > room {
			n, eol = room, true // split an overlong line
		}
		m.cur = m.esc.append(m.cur, p[:n])
		m.raw += n
		if n < len(p) && p[n] == '\n' {
			n++
		}
		p = p[n:]
		if eol {
			out = m.endLine(out, at)
		}
	}
	return m.scanLiterals(out, at)
}

// scanLiterals matches literal markers in the unfinished line.
func (m *matcher) scanLiterals(out []Match, at time.Duration) []Match {
	for !m.done() && len(m.cur) > m.from {
		lit, ok := m.markers[m.next].literal()
		if !ok {
			break
		}
		start := max(m.from, m.searched-len(lit)+1)
		i := bytes.Index(m.cur[start:], []byte(lit))
		if i < 0 {
			m.searched = len(m.cur)
			break
		}
		m.from = start + i + len(lit)
		m.searched = m.from
		out = append(out, m.match(string(m.cur), nil, at))
	}
	return out
}

// flush matches every marker, literal or not, against the unfinished line:
// the console has gone quiet or ended, so the line is as complete as it gets.
func (m *matcher) flush(at time.Duration) []Match {
	if len(m.cur) == 0 {
		return nil
	}
	return m.scan(nil, string(m.cur), at)
}

// pending reports whether the unfinished line could still match the current
// marker once flushed: only then is a quiet timer worth arming.
func (m *matcher) pending() bool {
	if len(m.cur) <= m.from || m.done() {
		return false
	}
	_, lit := m.markers[m.next].literal()
	return !lit
}

func (m *matcher) endLine(out []Match, at time.Duration) []Match {
	s := string(m.cur)
	out = m.scan(out, s, at)
	if m.abort != nil && m.aborted == "" && !m.done() && m.abort.MatchString(s) {
		m.aborted = s
	}
	if strings.TrimSpace(s) != "" {
		m.lines = append(m.lines, Line{At: at, Text: s})
	}
	if strings.TrimSpace(s) != "" && m.tailMax > 0 {
		if len(m.tail) == m.tailMax {
			copy(m.tail, m.tail[1:])
			m.tail = m.tail[:m.tailMax-1]
		}
		m.tail = append(m.tail, s)
	}
	m.cur, m.raw, m.esc, m.from, m.searched = m.cur[:0], 0, plain, 0, 0
	return out
}

// scan matches markers in order against line s from m.from on.
func (m *matcher) scan(out []Match, s string, at time.Duration) []Match {
	for !m.done() {
		end, values, ok := m.markers[m.next].find(s[m.from:])
		if !ok {
			break
		}
		m.from += end
		m.searched = m.from
		out = append(out, m.match(s, values, at))
	}
	return out
}

func (m *matcher) match(line string, values []string, at time.Duration) Match {
	mm := Match{Marker: m.markers[m.next], Index: m.next, At: at, Line: line, Values: values}
	m.next++
	return mm
}

// lastLines returns the last tailMax non-empty cleaned lines, the unfinished
// one included.
func (m *matcher) lastLines() []string {
	lines := append([]string(nil), m.tail...)
	if s := string(m.cur); strings.TrimSpace(s) != "" {
		lines = append(lines, s)
	}
	if len(lines) > m.tailMax {
		lines = lines[len(lines)-m.tailMax:]
	}
	return lines
}
