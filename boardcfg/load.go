// Package boardcfg loads board profiles: strict YAML with `extends:` merging,
// validated, with every error naming the file, line and field.
package boardcfg

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/fwbuild/fwbuild/internal/boundedfile"

	"gopkg.in/yaml.v3"
)

// Resolve turns a --board argument into a profile path: a path to a file
// (anything with a slash or a .yaml suffix), or a name in boardsDir.
func Resolve(arg, boardsDir string) (string, error) {
	if arg == "" {
		return "", errors.New("boardcfg: no board given (use --board NAME or --board path/to/profile.yaml)")
	}
	if strings.ContainsRune(arg, os.PathSeparator) || strings.HasSuffix(arg, ".yaml") || strings.HasSuffix(arg, ".yml") {
		if _, err := os.Stat(arg); err != nil {
			return "", fmt.Errorf("boardcfg: board profile %s: %w", arg, err)
		}
		return arg, nil
	}
	p := filepath.Join(boardsDir, arg+".yaml")
	if _, err := os.Stat(p); err != nil {
		names, _ := List(boardsDir)
		return "", fmt.Errorf("boardcfg: no board %q in %s (known: %s)", arg, boardsDir, strings.Join(names, ", "))
	}
	return p, nil
}

// List returns the board names in boardsDir.
func List(boardsDir string) ([]string, error) {
	m, err := filepath.Glob(filepath.Join(boardsDir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	var names []string
	for _, p := range m {
		names = append(names, strings.TrimSuffix(filepath.Base(p), ".yaml"))
	}
	sort.Strings(names)
	return names, nil
}

// Load reads the profile at path, merges what it extends (names resolve in
// boardsDir), decodes strictly and validates.
func Load(path, boardsDir string) (*Board, error) {
	l := &loader{boardsDir: boardsDir, boardsReal: realDir(boardsDir), origin: map[*yaml.Node]string{}}
	root, files, err := l.load(path, path, nil)
	if err != nil {
		return nil, err
	}
	b := &Board{File: path, Files: files}
	d := &decoder{origin: l.originOf, locs: map[string]Loc{}}
	if err := d.decode(root, "", reflect.ValueOf(b).Elem()); err != nil {
		return nil, err
	}
	b.locs = d.locs
	b.locs[""] = Loc{File: path, Line: 1, Col: 1}
	b.Extends = ""
	if err := errors.Join(b.validate(), errors.Join(b.checkHostFiles(boardsDir)...)); err != nil {
		return nil, err
	}
	return b, nil
}

type loader struct {
	boardsDir  string
	boardsReal string // boardsDir resolved (see realDir)
	origin     map[*yaml.Node]string
}

func (l *loader) originOf(n *yaml.Node) string { return l.origin[n] }

// load reads the profile named path (in messages) at real (what is opened:
// for a base profile, the path confine resolved).
func (l *loader) load(path, real string, chain []string) (*yaml.Node, []string, error) {
	abs, _ := filepath.Abs(real)
	for _, c := range chain {
		if c == abs {
			return nil, nil, fmt.Errorf("boardcfg: %s: extends cycle: %s -> %s", path, strings.Join(chain, " -> "), abs)
		}
	}
	data, err := readProfile(path, real)
	if err != nil {
		return nil, nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, nil, fmt.Errorf("boardcfg: %s: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, nil, &Error{Loc: Loc{File: path, Line: doc.Line, Col: doc.Column}, Msg: "a board profile is a YAML mapping (name:, components:, ...)"}
	}
	root := doc.Content[0]
	l.mark(root, path)
	// Checked per file, before merging: the merge keeps one value per key,
	// so a key given twice in a child or in its base would otherwise be
	// lost silently (last one wins) instead of refused.
	if err := checkNodes(root, path, ""); err != nil {
		return nil, nil, err
	}

	ext := mapValue(root, "extends")
	if ext == nil {
		return root, []string{path}, nil
	}
	if ext.Kind != yaml.ScalarNode || ext.Value == "" {
		return nil, nil, &Error{Loc: Loc{path, ext.Line, ext.Column}, Field: "extends", Msg: "want a board name or a profile path"}
	}
	basePath := filepath.Join(l.boardsDir, ext.Value+".yaml")
	switch {
	case filepath.IsAbs(ext.Value):
		basePath = ext.Value
	case strings.ContainsRune(ext.Value, '/') || strings.HasSuffix(ext.Value, ".yaml") || strings.HasSuffix(ext.Value, ".yml"):
		basePath = filepath.Join(filepath.Dir(path), ext.Value)
	case !nameRE.MatchString(ext.Value):
		return nil, nil, &Error{Loc: Loc{path, ext.Line, ext.Column}, Field: "extends", Msg: fmt.Sprintf("%q: want a board name (lower-case letters, digits and - . _ +) or a profile path", ext.Value)}
	}
	if _, err := os.Stat(basePath); os.IsNotExist(err) {
		return nil, nil, &Error{Loc: Loc{path, ext.Line, ext.Column}, Field: "extends", Msg: fmt.Sprintf("base profile %s not found (a name from %s, or a path relative to this profile)", basePath, l.boardsDir)}
	}
	// A base is in the extending profile's own directory tree or in boards/:
	// extends must not read (and echo in YAML errors) any other host file.
	baseReal, err := confine(basePath, ext.Value, []string{realDir(filepath.Dir(real)), l.boardsReal}, maxProfile, "base profile")
	if err != nil {
		return nil, nil, &Error{Loc: Loc{path, ext.Line, ext.Column}, Field: "extends", Msg: err.Error()}
	}
	base, files, err := l.load(basePath, baseReal, append(chain, abs))
	if err != nil {
		return nil, nil, err
	}
	return l.merge(base, root, ""), append([]string{path}, files...), nil
}

// maxProfile bounds what is read: a profile is a page of YAML, and an
// `extends:` that points at a device must not read forever.
const maxProfile = 1 << 20

func readProfile(path, real string) ([]byte, error) {
	// Stat first: opening a device can act on it, even to fail.
	st, err := os.Stat(real)
	if err != nil {
		return nil, fmt.Errorf("boardcfg: read profile: %w", err)
	}
	if !st.Mode().IsRegular() || st.Size() > maxProfile {
		return nil, fmt.Errorf("boardcfg: %s: not a profile (want a regular YAML file under 1 MiB)", path)
	}
	data, err := boundedfile.Read(real, maxProfile)
	if err != nil {
		return nil, fmt.Errorf("boardcfg: %s: not a profile (want a regular YAML file under 1 MiB): %w", path, err)
	}
	return data, nil
}

func (l *loader) mark(n *yaml.Node, file string) {
	l.origin[n] = file
	for _, c := range n.Content {
		l.mark(c, file)
	}
}

func mapValue(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// mergedByName are the lists whose items a derived board changes one at a
// time; any other list (regions, commands) is replaced whole, because a
// layout half-inherited from the base is never what was meant.
var mergedByName = map[string]bool{"components": true, "guests": true, "guest_images": true}

// replacedWhole are mappings that state one choice: a derived board that
// picks another kernel source must not inherit the base's fragment, nor one
// that names another firmware image (outputs.spi.firmware: {path, sha256})
// the base's hash, or a path resolved against the base's directory.
// (Region's firmware key is a bool, never a mapping, so it is unaffected.)
var replacedWhole = map[string]bool{"kernel": true, "firmware": true}

// merge overlays child on base: mappings merge key by key, the lists in
// mergedByName merge by item name, other values are replaced. The extends
// key of the child is dropped.
func (l *loader) merge(base, child *yaml.Node, key string) *yaml.Node {
	if base.Kind == yaml.MappingNode && child.Kind == yaml.MappingNode && !replacedWhole[key] {
		out := *base
		l.origin[&out] = l.origin[base]
		out.Content = append([]*yaml.Node(nil), base.Content...)
		for i := 0; i+1 < len(child.Content); i += 2 {
			k, v := child.Content[i], child.Content[i+1]
			if k.Value == "extends" {
				continue
			}
			replaced := false
			for j := 0; j+1 < len(out.Content); j += 2 {
				if out.Content[j].Value == k.Value {
					out.Content[j+1] = l.merge(out.Content[j+1], v, k.Value)
					replaced = true
					break
				}
			}
			if !replaced {
				out.Content = append(out.Content, k, v)
			}
		}
		return &out
	}
	if mergedByName[key] && base.Kind == yaml.SequenceNode && child.Kind == yaml.SequenceNode && named(base) && named(child) {
		out := *base
		l.origin[&out] = l.origin[base]
		out.Content = append([]*yaml.Node(nil), base.Content...)
		seen := map[string]bool{}
		for _, c := range child.Content {
			name := mapValue(c, "name").Value
			if seen[name] {
				// Twice in one file is a mistake, not an override: keep
				// both so validation reports the second.
				out.Content = append(out.Content, c)
				continue
			}
			seen[name] = true
			replaced := false
			for j, b := range out.Content {
				if mapValue(b, "name").Value == name {
					out.Content[j] = l.merge(b, c, "")
					replaced = true
					break
				}
			}
			if !replaced {
				out.Content = append(out.Content, c)
			}
		}
		return &out
	}
	return child
}

func named(seq *yaml.Node) bool {
	for _, c := range seq.Content {
		if c.Kind != yaml.MappingNode {
			return false
		}
		if n := mapValue(c, "name"); n == nil || n.Kind != yaml.ScalarNode {
			return false
		}
	}
	return true
}

// checkNodes refuses, in one profile file, what no merge or decode must see:
// a mapping key given twice (YAML forbids it; reported at the second one)
// and control characters in any key or value. Every string of a profile
// ends up in a file (xl configs, the manifest, flashrom layouts), a log line
// or a command line, where a newline, escape or NUL forges or hides content.
func checkNodes(n *yaml.Node, file, path string) error {
	if n.Kind == yaml.ScalarNode {
		if err := checkText(n.Value); err != nil {
			return &Error{Loc: Loc{file, n.Line, n.Column}, Field: path, Msg: err.Error()}
		}
	}
	switch n.Kind {
	case yaml.MappingNode:
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if err := checkText(k.Value); err != nil {
				return &Error{Loc: Loc{file, k.Line, k.Column}, Field: path, Msg: "key: " + err.Error()}
			}
			if seen[k.Value] {
				return &Error{Loc: Loc{file, k.Line, k.Column}, Field: join(path, k.Value), Msg: "key appears twice (remove one; YAML keeps only one value)"}
			}
			seen[k.Value] = true
			if err := checkNodes(n.Content[i+1], file, join(path, k.Value)); err != nil {
				return err
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			if err := checkNodes(c, file, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkText refuses control characters (C0, DEL, C1), Unicode line
// separators and bidirectional overrides, which make text read differently
// from what it is. It names the character and its offset, not the text.
func checkText(s string) error {
	for i, r := range s {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || unicode.Is(unicode.Bidi_Control, r) {
			return fmt.Errorf("has %q (%U, a control character) at byte %d: write the value on one line, in printable characters", r, r, i)
		}
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size == 1 {
				return fmt.Errorf("invalid UTF-8 at byte %d", i)
			}
		}
	}
	return nil
}
