package boardcfg

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// A Loc is where a value came from: after `extends:` merging, values of one
// board come from several files, so every node carries its own file.
type Loc struct {
	File string
	Line int
	Col  int
}

func (l Loc) String() string {
	if l.Line == 0 {
		return l.File
	}
	return fmt.Sprintf("%s:%d:%d", l.File, l.Line, l.Col)
}

// Error is a profile error at a position, naming the field.
type Error struct {
	Loc   Loc
	Field string
	Msg   string
}

func (e *Error) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%s: %s", e.Loc, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", e.Loc, e.Field, e.Msg)
}

// nodeDecoder is implemented by scalar types with their own syntax (sizes, GUIDs, hashes).
type nodeDecoder interface {
	decodeScalar(s string) error
}

// nodeUnmarshaler is implemented by types with more than one YAML shape,
// e.g. a firmware given as "component:role" or as {path, sha256}.
type nodeUnmarshaler interface {
	decodeNode(d *decoder, n *yaml.Node, path string) error
}

// decoder fills Go values from YAML nodes strictly: unknown keys, duplicate
// keys and wrong kinds are errors. yaml.v3's own decoder reports only a line
// without the file, and stops at custom-type errors without the field path.
type decoder struct {
	origin func(*yaml.Node) string
	locs   map[string]Loc
}

func (d *decoder) loc(n *yaml.Node) Loc {
	return Loc{File: d.origin(n), Line: n.Line, Col: n.Column}
}

func (d *decoder) errf(n *yaml.Node, path, format string, args ...any) error {
	return &Error{Loc: d.loc(n), Field: path, Msg: fmt.Sprintf(format, args...)}
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	case yaml.AliasNode:
		return "an alias"
	}
	return "nothing"
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (d *decoder) decode(n *yaml.Node, path string, v reflect.Value) error {
	if n.Kind == yaml.AliasNode {
		return d.errf(n, path, "YAML aliases are not supported in board profiles; write the value out")
	}
	d.locs[path] = d.loc(n)
	if v.CanAddr() {
		if nu, ok := v.Addr().Interface().(nodeUnmarshaler); ok {
			return nu.decodeNode(d, n, path)
		}
		if nd, ok := v.Addr().Interface().(nodeDecoder); ok {
			if n.Kind != yaml.ScalarNode {
				return d.errf(n, path, "want a single value, got %s", kindName(n))
			}
			if err := nd.decodeScalar(n.Value); err != nil {
				return d.errf(n, path, "%v", err)
			}
			return nil
		}
	}
	switch v.Kind() {
	case reflect.Pointer:
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			// An explicit null drops an optional section, e.g. a derived board without SPI.
			v.Set(reflect.Zero(v.Type()))
			return nil
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		return d.decode(n, path, v.Elem())
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return d.errf(n, path, "want a mapping of fields, got %s", kindName(n))
		}
		fields := structFields(v.Type())
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if seen[k.Value] {
				return d.errf(k, join(path, k.Value), "key appears twice")
			}
			seen[k.Value] = true
			idx, ok := fields[k.Value]
			if !ok {
				return d.errf(k, join(path, k.Value), "unknown field (known: %s)", strings.Join(knownKeys(v.Type()), ", "))
			}
			if err := d.decode(val, join(path, k.Value), v.Field(idx)); err != nil {
				return err
			}
		}
		return nil
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return d.errf(n, path, "want a list, got %s", kindName(n))
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			if err := d.decode(item, fmt.Sprintf("%s[%d]", path, i), s.Index(i)); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return d.errf(n, path, "want a mapping, got %s", kindName(n))
		}
		m := reflect.MakeMap(v.Type())
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			kv := reflect.ValueOf(k.Value).Convert(v.Type().Key())
			if m.MapIndex(kv).IsValid() {
				return d.errf(k, join(path, k.Value), "key appears twice")
			}
			ev := reflect.New(v.Type().Elem()).Elem()
			if err := d.decode(val, join(path, k.Value), ev); err != nil {
				return err
			}
			m.SetMapIndex(kv, ev)
		}
		v.Set(m)
		return nil
	}
	if n.Kind != yaml.ScalarNode {
		return d.errf(n, path, "want a single value, got %s", kindName(n))
	}
	switch v.Kind() {
	case reflect.String:
		if n.Tag == "!!null" {
			return d.errf(n, path, "empty value; give a string or remove the key")
		}
		v.SetString(n.Value)
	case reflect.Bool:
		b, err := strconv.ParseBool(n.Value)
		if err != nil || n.Tag != "!!bool" {
			return d.errf(n, path, "want true or false, got %q", n.Value)
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64, reflect.Int32:
		i, err := strconv.ParseInt(n.Value, 0, 64)
		if err != nil {
			return d.errf(n, path, "want a whole number, got %q", n.Value)
		}
		v.SetInt(i)
	default:
		return fmt.Errorf("boardcfg: internal: cannot decode into %s", v.Type())
	}
	return nil
}

func yamlName(f reflect.StructField) string {
	tag := f.Tag.Get("yaml")
	if name, _, _ := strings.Cut(tag, ","); name != "" {
		return name
	}
	return strings.ToLower(f.Name)
}

func structFields(t reflect.Type) map[string]int {
	m := map[string]int{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() || f.Tag.Get("yaml") == "-" {
			continue
		}
		m[yamlName(f)] = i
	}
	return m
}

func knownKeys(t reflect.Type) []string {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() || f.Tag.Get("yaml") == "-" {
			continue
		}
		keys = append(keys, yamlName(f))
	}
	return keys
}
