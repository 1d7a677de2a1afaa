package qemutests

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/contract"
)

// feedAll feeds pieces in order, piece i at time i ms, then flushes as Run
// does at EOF, and returns every match.
func feedAll(m *matcher, pieces ...string) []Match {
	var out []Match
	for i, p := range pieces {
		out = append(out, m.feed([]byte(p), time.Duration(i)*time.Millisecond)...)
	}
	return append(out, m.flush(time.Duration(len(pieces))*time.Millisecond)...)
}

type got struct {
	name   string
	values []string
}

func summary(ms []Match) []got {
	var g []got
	for _, m := range ms {
		g = append(g, got{m.Marker.Name, m.Values})
	}
	return g
}

func chainMarkers() []Marker {
	return []Marker{
		Regexp("bds", `BdsDxe: starting Boot[0-9A-F]{4} "([^"]*)"`, 0),
		Substring("xen", "(XEN) Xen version 4.17", 0),
		Regexp("ready", contract.ReadyPattern, 0),
		Substring("prompt", "Shell>", 0),
	}
}

const chainConsole = "\x1b[2J\x1b[01;01HBdsDxe: loading Boot0002 \"EFI Internal Shell\" from Fv(...)\r\n" +
	"BdsDxe: starting Boot0002 \"EFI Internal Shell\" from Fv(...)\r\n" +
	"\r(XEN) Xen version 4.17.7 (Debian) debug=n\r\n" +
	"[    1.0] noise fwbuild-ctld: not yet\r\n" +
	"fwbuild-ctld: ready xen=4.17.7 dom0_mem=512 guests=12\r\n" +
	"\x1b[08;01H\x1b[1m\x1b[33m\x1b[40mShell> \x1b[0m"

var chainWant = []got{
	{"bds", []string{"EFI Internal Shell"}},
	{"xen", nil},
	{"ready", []string{"4.17.7", "512", "12"}},
	{"prompt", nil},
}

// Every way of cutting the console into two or three chunks gives the same
// matches as one chunk: lines are assembled before matching.
func TestMatcherChunkBoundaries(t *testing.T) {
	s := chainConsole
	if g := summary(feedAll(newMatcher(chainMarkers(), 40), s)); !reflect.DeepEqual(g, chainWant) {
		t.Fatalf("one chunk: got %v, want %v", g, chainWant)
	}
	for i := 0; i <= len(s); i++ {
		if g := summary(feedAll(newMatcher(chainMarkers(), 40), s[:i], s[i:])); !reflect.DeepEqual(g, chainWant) {
			t.Fatalf("split at %d (%q | %q): got %v, want %v", i, s[max(0, i-10):i], s[i:min(len(s), i+10)], g, chainWant)
		}
	}
	for i := 0; i < len(s); i += 7 {
		for j := i; j <= len(s); j += 5 {
			if g := summary(feedAll(newMatcher(chainMarkers(), 40), s[:i], s[i:j], s[j:])); !reflect.DeepEqual(g, chainWant) {
				t.Fatalf("split at %d,%d: got %v, want %v", i, j, g, chainWant)
			}
		}
	}
	bytewise := strings.Split(s, "")
	if g := summary(feedAll(newMatcher(chainMarkers(), 40), bytewise...)); !reflect.DeepEqual(g, chainWant) {
		t.Fatalf("byte by byte: got %v, want %v", g, chainWant)
	}
}

// A greedy group must not capture half a number: the regexp waits for the
// end of the line (or a flush), while a substring matches at once.
func TestMatcherPartialLine(t *testing.T) {
	m := newMatcher([]Marker{Regexp("ready", contract.ReadyPattern, 0)}, 40)
	if ms := m.feed([]byte("fwbuild-ctld: ready xen=4.17.7 dom0_mem=512 guests=1"), 0); len(ms) != 0 {
		t.Fatalf("regexp matched an unfinished line: %v", summary(ms))
	}
	if !m.pending() {
		t.Fatal("pending() = false with an unfinished line that may match")
	}
	ms := m.feed([]byte("2\r\n"), time.Second)
	if want := []got{{"ready", []string{"4.17.7", "512", "12"}}}; !reflect.DeepEqual(summary(ms), want) {
		t.Fatalf("got %v, want %v", summary(ms), want)
	}
	if ms[0].At != time.Second {
		t.Errorf("At = %v, want the time of the chunk that completed the line (1s)", ms[0].At)
	}

	// A prompt never gets its newline: substrings match in the unfinished line.
	m = newMatcher([]Marker{Substring("prompt", "Shell>", 0)}, 40)
	if ms := m.feed([]byte("\x1b[1mShe"), 0); len(ms) != 0 {
		t.Fatalf("matched too early: %v", summary(ms))
	}
	if ms := m.feed([]byte("ll> \x1b[0m"), 5*time.Millisecond); len(ms) != 1 || ms[0].At != 5*time.Millisecond {
		t.Fatalf("prompt without newline: got %v", summary(ms))
	}

	// So does a regexp without metacharacters.
	m = newMatcher([]Marker{Regexp("prompt", `Shell> `, 0)}, 40)
	if ms := m.feed([]byte("Shell> "), 0); len(ms) != 1 {
		t.Fatalf("literal regexp in unfinished line: got %v", summary(ms))
	}

	// Other regexps match an unfinished line when Run flushes after a quiet spell.
	m = newMatcher([]Marker{Regexp("login", `(\w+) login:`, 0)}, 40)
	if ms := m.feed([]byte("dom0 login: "), 0); len(ms) != 0 {
		t.Fatalf("matched before flush: %v", summary(ms))
	}
	if ms := m.flush(time.Second); len(ms) != 1 || ms[0].Values[0] != "dom0" {
		t.Fatalf("flush: got %v", summary(ms))
	}
	if m.pending() || len(m.flush(2*time.Second)) != 0 {
		t.Fatal("a matched marker matched again")
	}
}

func TestMatcherOrder(t *testing.T) {
	markers := []Marker{Substring("a", "alpha", 0), Substring("b", "beta", 0), Substring("c", "gamma", 0)}
	cases := []struct {
		console string
		want    []string
	}{
		{"alpha\nbeta\ngamma\n", []string{"a", "b", "c"}},
		// beta before alpha does not count; the later one does.
		{"beta\nalpha\ngamma\nbeta\n", []string{"a", "b"}},
		// Several markers in one line, in order.
		{"alpha beta gamma\n", []string{"a", "b", "c"}},
		// In one line but out of order: only what follows the previous match counts.
		{"beta alpha gamma\n", []string{"a"}},
		// The same text cannot satisfy two markers.
		{"alphabet\n", []string{"a"}},
		{"nothing here\n", nil},
	}
	for _, c := range cases {
		m := newMatcher(markers, 40)
		var names []string
		for _, mm := range feedAll(m, c.console) {
			names = append(names, mm.Marker.Name)
		}
		if !reflect.DeepEqual(names, c.want) {
			t.Errorf("%q: matched %v, want %v", c.console, names, c.want)
		}
	}

	// Repeated markers need repeated output.
	m := newMatcher([]Marker{Substring("x1", "tick", 0), Substring("x2", "tick", 0)}, 40)
	if n := len(feedAll(m, "tick\n")); n != 1 {
		t.Errorf("one tick matched %d markers, want 1", n)
	}
	if n := len(feedAll(m, "tick tock\n")); n != 1 || !m.done() {
		t.Errorf("second tick: matched %d, done=%v", n, m.done())
	}
}

func TestMatcherCleansEscapes(t *testing.T) {
	m := newMatcher([]Marker{Substring("shell", "UEFI Interactive Shell", 0), Substring("esc", "in 4 seconds", 0)}, 40)
	console := "\x1b[2J\x1b[01;01H\x1b[01;01HUEFI Interactive\x1b[0m Shell v2.2\r\n" +
		"\x1b[07;01HPress \x1b[1m\x1b[37m\x1b[40mESC\x1b[0m in 5 seconds\x1b[07;01HPress ESC in 4 seconds\r\n"
	ms := feedAll(m, console)
	if len(ms) != 2 {
		t.Fatalf("matched %v, want both markers", summary(ms))
	}
	if want := "UEFI Interactive Shell v2.2"; ms[0].Line != want {
		t.Errorf("Line = %q, want %q", ms[0].Line, want)
	}
	if got := cleanLine([]byte("a\tb\x07c\x1b[=3hd\x1bce\r")); got != "a\tbcde" {
		t.Errorf("cleanLine = %q", got)
	}
}

func TestMatcherTail(t *testing.T) {
	m := newMatcher([]Marker{Substring("never", "never", 0)}, 40)
	var b strings.Builder
	for i := 1; i <= 100; i++ {
		fmt.Fprintf(&b, "line %d\r\n\r\n", i) // blank lines are dropped from the tail
	}
	b.WriteString("\x1b[1mpartial")
	feedAll(m, b.String())
	tail := m.lastLines()
	if len(tail) != 40 {
		t.Fatalf("tail has %d lines, want 40: %q", len(tail), tail)
	}
	if tail[0] != "line 62" || tail[38] != "line 100" || tail[39] != "partial" {
		t.Errorf("tail = %q ... %q, want line 62 ... line 100, partial", tail[:2], tail[38:])
	}

	short := newMatcher([]Marker{Substring("never", "never", 0)}, 40)
	feedAll(short, "one\ntwo\n")
	if got := short.lastLines(); !reflect.DeepEqual(got, []string{"one", "two"}) {
		t.Errorf("short tail = %q", got)
	}
}

// A guest printing without newlines cannot make the matcher grow without
// bound, and a marker in such output is still found.
func TestMatcherLongLine(t *testing.T) {
	m := newMatcher([]Marker{Substring("end", "THE END", 0)}, 40)
	junk := strings.Repeat("x", 1000)
	for i := 0; i < 1000; i++ {
		m.feed([]byte(junk), 0)
		if m.raw > maxLine || len(m.cur) > maxLine {
			t.Fatalf("unfinished line grew to %d bytes", len(m.cur))
		}
	}
	if ms := m.feed([]byte("THE END"), time.Second); len(ms) != 1 {
		t.Fatalf("marker after 1 MB without newline: got %v", summary(ms))
	}
}

func TestMarkerValidate(t *testing.T) {
	cases := []struct {
		mk   Marker
		want string
	}{
		{Marker{Text: "x"}, "no Name"},
		{Marker{Name: "n"}, "neither Text nor Pattern"},
		{Marker{Name: "n", Text: "x", Pattern: Regexp("n", "x", 0).Pattern}, "both"},
		{Marker{Name: "n", Text: "x", Timeout: -1}, "negative"},
	}
	for _, c := range cases {
		err := c.mk.validate(0)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("validate(%+v) = %v, want an error containing %q", c.mk, err, c.want)
		}
	}
	if err := Substring("ok", "x", 0).validate(0); err != nil {
		t.Errorf("valid marker: %v", err)
	}
}
