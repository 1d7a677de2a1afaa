package kconfig

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/fwbuild/fwbuild/internal/boundedfile"
)

// Option is one Kconfig symbol a fragment asks for.
type Option struct {
	Name  string // with the prefix: "CONFIG_XEN"
	Value string // "y", "m", "n", a quoted string exactly as in .config (`"hvc0"`), or a number
	File  string // fragment file that set the value last
	Line  int
}

// Pos is the file:line that asked for the option.
func (o Option) Pos() string { return fmt.Sprintf("%s:%d", o.File, o.Line) }

// String is the option as a .config line.
func (o Option) String() string {
	if o.Value == "n" {
		return "# " + o.Name + " is not set"
	}
	return o.Name + "=" + o.Value
}

// Fragment is a config fragment with its includes resolved.
type Fragment struct {
	Files []string // every file read, in the order read
	// Options holds the effective value of each symbol. Like merge_config.sh, a symbol set
	// again moves to the end, so for Kconfig choices the last `=y` wins in both.
	Options []Option
	// Overrides lists "file:line: CONFIG_X=v overrides file:line" for symbols set twice with
	// different values; merge_config.sh warns about the same thing.
	Overrides []string
}

var (
	reSet     = regexp.MustCompile(`^(CONFIG_[A-Za-z0-9_]+)=(.*)$`)
	reUnset   = regexp.MustCompile(`^# (CONFIG_[A-Za-z0-9_]+) is not set$`)
	reLooksOp = regexp.MustCompile(`^#\s*CONFIG_`)
	reInclude = regexp.MustCompile(`^#include(?:\s+(.*))?$`)
	reString  = regexp.MustCompile(`^"(?:[^"\\]|\\.)*"$`)
	reNumber  = regexp.MustCompile(`^(?:-?[0-9]+|0[xX][0-9a-fA-F]+)$`)
)

const lineSyntax = `want CONFIG_X=y|m|n|"string"|number, "# CONFIG_X is not set", a comment, a blank line or #include "file"`

// Bounds on what a fragment reads. A fragment is a few hundred lines; the
// bounds keep a fragment (or an #include) naming /dev/zero, a FIFO or a huge
// file, or a diamond of includes re-reading the same files exponentially
// often, from exhausting memory or hanging the build.
const (
	MaxFragmentFile  = 1 << 20 // bytes in one fragment file
	maxFragmentReads = 256     // files read, counting re-includes
)

// ParseFragment reads a Kconfig fragment: .config lines, comments, blank lines and
// `#include "path"` lines (also `#include <path>` or a bare path), where path is relative
// to the including file's directory. Errors name file:line. Including a file twice is
// allowed (it is re-applied); an include cycle is an error. Every file must be a regular
// file of at most MaxFragmentFile bytes.
func ParseFragment(path string) (Fragment, error) {
	return ParseFragmentIn(path, "")
}

// ParseFragmentIn is ParseFragment with every file read, the top one and each include,
// confined to the directory tree root (symlinks resolved first, so a link pointing out
// of root counts as outside). A file outside root is not opened, so no error shows any
// of its content. An empty root confines nothing.
func ParseFragmentIn(path, root string) (Fragment, error) {
	p := &fragParser{index: map[string]int{}}
	if root != "" {
		r, err := filepath.EvalSymlinks(root)
		if err == nil {
			r, err = filepath.Abs(r)
		}
		if err != nil {
			return Fragment{}, fmt.Errorf("kconfig: fragment %s: directory %s: %w", path, root, err)
		}
		p.root = r
	}
	p.parse(path, nil, "")
	if len(p.errs) > 0 {
		return Fragment{}, fmt.Errorf("kconfig: fragment %s: %w", path, errors.Join(p.errs...))
	}
	return Fragment{Files: p.files, Options: p.opts, Overrides: p.overrides}, nil
}

type fragParser struct {
	files     []string
	opts      []Option
	index     map[string]int // symbol -> position in opts
	overrides []string
	errs      []error
	root      string // resolved; "" for no confinement
	reads     int
	tooMany   bool // reads passed maxFragmentReads: reported once, stop reading
}

// read returns the content of one fragment file after checking where it
// really is, that it is a regular file and its size, in that order, so a
// file that fails is never read.
func (p *fragParser) read(path string) ([]byte, error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, err
	}
	if real, err = filepath.Abs(real); err != nil {
		return nil, err
	}
	if p.root != "" {
		if rel, err := filepath.Rel(p.root, real); err != nil || !filepath.IsLocal(rel) {
			return nil, fmt.Errorf("%s is outside %s: a fragment and its includes must be in the boards directory", real, p.root)
		}
	}
	p.reads++
	if p.reads > maxFragmentReads {
		p.tooMany = true
		return nil, fmt.Errorf("more than %d fragment files read (includes count each time): simplify the includes", maxFragmentReads)
	}
	// Checked here first for messages that name the rule; boundedfile
	// checks again on the opened file.
	if st, err := os.Stat(real); err != nil {
		return nil, err
	} else if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%v): give a fragment file", real, st.Mode().Type())
	} else if st.Size() > MaxFragmentFile {
		return nil, fmt.Errorf("%s is %d bytes: a fragment file has at most %d", real, st.Size(), MaxFragmentFile)
	}
	return boundedfile.Read(real, MaxFragmentFile)
}

func (p *fragParser) parse(path string, stack []string, from string) {
	if p.tooMany {
		return
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		p.errs = append(p.errs, fmt.Errorf("%s%w", from, err))
		return
	}
	for _, s := range stack {
		if s == abs {
			p.errs = append(p.errs, fmt.Errorf("%sinclude cycle: %s -> %s", from, strings.Join(stack, " -> "), abs))
			return
		}
	}
	data, err := p.read(path)
	if err != nil {
		p.errs = append(p.errs, fmt.Errorf("%sread fragment: %w", from, err))
		return
	}
	p.files = append(p.files, path)
	stack = append(stack, abs)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		pos := fmt.Sprintf("%s:%d: ", path, n)
		switch {
		case line == "":
		case reInclude.MatchString(line):
			arg := strings.TrimSpace(reInclude.FindStringSubmatch(line)[1])
			if len(arg) >= 2 && (arg[0] == '"' && arg[len(arg)-1] == '"' || arg[0] == '<' && arg[len(arg)-1] == '>') {
				arg = arg[1 : len(arg)-1]
			}
			if arg == "" {
				p.errs = append(p.errs, fmt.Errorf("%s#include without a file name", pos))
				continue
			}
			if !filepath.IsAbs(arg) {
				arg = filepath.Join(filepath.Dir(path), arg)
			}
			p.parse(arg, stack, pos)
		case reUnset.MatchString(line):
			p.set(Option{Name: reUnset.FindStringSubmatch(line)[1], Value: "n", File: path, Line: n})
		case reLooksOp.MatchString(line):
			// "#CONFIG_X is not set" or "# CONFIG_X=y": almost certainly a typo, not a comment.
			p.errs = append(p.errs, fmt.Errorf("%smalformed line %q: write \"# CONFIG_X is not set\" to unset an option", pos, line))
		case strings.HasPrefix(line, "#"):
		case reSet.MatchString(line):
			m := reSet.FindStringSubmatch(line)
			v := m[2]
			if v != "y" && v != "m" && v != "n" && !reString.MatchString(v) && !reNumber.MatchString(v) {
				p.errs = append(p.errs, fmt.Errorf("%sbad value %q for %s: %s", pos, v, m[1], lineSyntax))
				continue
			}
			p.set(Option{Name: m[1], Value: v, File: path, Line: n})
		default:
			p.errs = append(p.errs, fmt.Errorf("%snot a config line %q: %s", pos, line, lineSyntax))
		}
	}
	if err := sc.Err(); err != nil {
		p.errs = append(p.errs, fmt.Errorf("%s: %w", path, err))
	}
}

func (p *fragParser) set(o Option) {
	if i, ok := p.index[o.Name]; ok {
		old := p.opts[i]
		if old.Value != o.Value {
			p.overrides = append(p.overrides, fmt.Sprintf("%s: %s overrides %s (%s)", o.Pos(), o, old.Pos(), old))
		}
		p.opts = append(p.opts[:i], p.opts[i+1:]...)
		for j := i; j < len(p.opts); j++ {
			p.index[p.opts[j].Name] = j
		}
	}
	p.index[o.Name] = len(p.opts)
	p.opts = append(p.opts, o)
}

// Text is the merged fragment as .config lines, without comments or file names: the form
// that is hashed into the cache key and merged into the base config.
func (f Fragment) Text() []byte {
	var b bytes.Buffer
	for _, o := range f.Options {
		b.WriteString(o.String())
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// Merge applies the fragment to a base .config the way merge_config.sh does: a line for a
// symbol the fragment sets is removed from the base and the fragment's lines are appended.
// Run `make olddefconfig` on the result.
func (f Fragment) Merge(base []byte) []byte {
	set := make(map[string]bool, len(f.Options))
	for _, o := range f.Options {
		set[o.Name] = true
	}
	var b bytes.Buffer
	for _, line := range strings.SplitAfter(string(base), "\n") {
		if name, _, ok := configLine(strings.TrimRight(line, "\n")); ok && set[name] {
			continue
		}
		b.WriteString(line)
	}
	if b.Len() > 0 && !bytes.HasSuffix(b.Bytes(), []byte("\n")) {
		b.WriteByte('\n')
	}
	b.Write(f.Text())
	return b.Bytes()
}

// configLine parses one .config line into symbol and value ("n" for "is not set").
func configLine(line string) (name, value string, ok bool) {
	if m := reSet.FindStringSubmatch(line); m != nil {
		return m[1], m[2], true
	}
	if m := reUnset.FindStringSubmatch(line); m != nil {
		return m[1], "n", true
	}
	return "", "", false
}

// Dropped is an option whose final value differs from the one the fragment asked for.
type Dropped struct {
	Option
	Got string // final value; "n" when unset or absent
}

// DroppedError lists every requested option that Kconfig did not keep, typically because
// a dependency is missing or another option (a choice, a select) overrode it.
type DroppedError struct {
	Dropped []Dropped
}

func (e *DroppedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "kbuild: %d option(s) requested by the fragment are not in the final .config (missing dependency, or overridden by a choice/select; add what they depend on):", len(e.Dropped))
	for _, d := range e.Dropped {
		got := d.Name + "=" + d.Got
		if d.Got == "n" {
			got = "not set"
		}
		fmt.Fprintf(&b, "\n  %s: %s requested, final .config has %s", d.Pos(), d.Option, got)
	}
	return b.String()
}

// Check verifies that every option of the fragment has the requested value in a final
// .config; it returns a *DroppedError naming each option that does not and where it was
// asked for.
func (f Fragment) Check(config []byte) error {
	final := map[string]string{}
	for _, line := range strings.Split(string(config), "\n") {
		if name, v, ok := configLine(strings.TrimSpace(line)); ok {
			final[name] = v
		}
	}
	var dropped []Dropped
	for _, o := range f.Options {
		got, ok := final[o.Name]
		if !ok {
			got = "n"
		}
		if !sameValue(o.Value, got) {
			dropped = append(dropped, Dropped{Option: o, Got: got})
		}
	}
	if len(dropped) > 0 {
		return &DroppedError{Dropped: dropped}
	}
	return nil
}

func sameValue(want, got string) bool {
	if want == got {
		return true
	}
	// Kconfig may rewrite a number's spelling (0X10 vs 0x10).
	a, err1 := strconv.ParseInt(want, 0, 64)
	b, err2 := strconv.ParseInt(got, 0, 64)
	return err1 == nil && err2 == nil && a == b
}
