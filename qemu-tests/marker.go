package qemutests

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// DefaultMarkerTimeout is the base timeout of a marker whose Timeout is zero
// (before scaling: 90s under TCG with the default scale).
const DefaultMarkerTimeout = 30 * time.Second

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
	// timeout scale. Zero means DefaultMarkerTimeout.
	Timeout time.Duration
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

// literal reports whether a match of mk in an unfinished line can be trusted
// at once: more bytes cannot change what a fixed string matches.
func (mk Marker) literal() bool {
	if mk.Pattern == nil {
		return true
	}
	_, complete := mk.Pattern.LiteralPrefix()
	return complete
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
	// Line is the console line it matched in, cleaned of escape sequences.
	Line string
	// Values are the regexp's submatches (group 1 first); nil for Text.
	Values []string
}

// escapes matches what a terminal interprets rather than prints: CSI
// sequences (colours, cursor moves, OVMF's "\x1b[=3h"), two-byte ESC
// sequences and C0 control characters other than tab.
var escapes = regexp.MustCompile(`\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-~]|[\x00-\x08\x0a-\x1f\x7f]`)

// cleanLine returns the printable text of a raw console line.
func cleanLine(raw []byte) string {
	return escapes.ReplaceAllString(string(raw), "")
}

// matcher assembles console bytes into lines and matches markers in order.
// It does no I/O and keeps no clock, so it can be fed from tests.
type matcher struct {
	markers []Marker
	next    int    // index of the marker being waited for
	line    []byte // raw bytes of the unfinished line
	from    int    // offset in the cleaned current line where the search resumes
	tail    []string
	tailMax int
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
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			room := maxLine - len(m.line)
			if len(p) < room {
				m.line = append(m.line, p...)
				break
			}
			m.line = append(m.line, p[:room]...)
			p = p[room:]
			out = m.endLine(out, at)
			continue
		}
		if len(m.line)+i > maxLine {
			room := maxLine - len(m.line)
			m.line = append(m.line, p[:room]...)
			p = p[room:]
			out = m.endLine(out, at)
			continue
		}
		m.line = append(m.line, p[:i]...)
		p = p[i+1:]
		out = m.endLine(out, at)
	}
	if len(m.line) > 0 && !m.done() && m.markers[m.next].literal() {
		out = m.scan(out, cleanLine(m.line), at, true)
	}
	return out
}

// flush matches every marker, literal or not, against the unfinished line:
// the console has gone quiet or ended, so the line is as complete as it gets.
func (m *matcher) flush(at time.Duration) []Match {
	if len(m.line) == 0 || m.done() {
		return nil
	}
	return m.scan(nil, cleanLine(m.line), at, false)
}

// pending reports whether the unfinished line could still match the current
// marker once flushed: only then is a quiet timer worth arming.
func (m *matcher) pending() bool {
	return len(m.line) > 0 && !m.done() && !m.markers[m.next].literal()
}

func (m *matcher) endLine(out []Match, at time.Duration) []Match {
	s := cleanLine(m.line)
	out = m.scan(out, s, at, false)
	if strings.TrimSpace(s) != "" && m.tailMax > 0 {
		if len(m.tail) == m.tailMax {
			copy(m.tail, m.tail[1:])
			m.tail = m.tail[:m.tailMax-1]
		}
		m.tail = append(m.tail, s)
	}
	m.line = m.line[:0]
	m.from = 0
	return out
}

// scan matches markers in order against line s from m.from on. With
// literalOnly it stops at the first marker that is not literal.
func (m *matcher) scan(out []Match, s string, at time.Duration, literalOnly bool) []Match {
	for !m.done() {
		mk := m.markers[m.next]
		if literalOnly && !mk.literal() {
			break
		}
		if m.from > len(s) {
			m.from = len(s)
		}
		end, values, ok := mk.find(s[m.from:])
		if !ok {
			break
		}
		m.from += end
		out = append(out, Match{Marker: mk, Index: m.next, At: at, Line: s, Values: values})
		m.next++
	}
	return out
}

// lastLines returns the last tailMax non-empty cleaned lines, the unfinished
// one included.
func (m *matcher) lastLines() []string {
	lines := append([]string(nil), m.tail...)
	if s := cleanLine(m.line); strings.TrimSpace(s) != "" {
		lines = append(lines, s)
	}
	if len(lines) > m.tailMax {
		lines = lines[len(lines)-m.tailMax:]
	}
	return lines
}
