package closure

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
)

// AddModules adds kernel modules (paths inside the roots, under
// lib/modules/<release>/) and every module they depend on, found by name in
// the same release directory. It returns the in-image paths, dependencies
// first, the order finit_module needs.
func (t *Tree) AddModules(mods []string) ([]string, error) {
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	indexes := map[string]map[string]string{}

	var visit func(p, why string) error
	visit = func(p, why string) error {
		p = path.Clean("/" + p)
		switch state[p] {
		case 1:
			return fmt.Errorf("kernel module %s: dependency cycle (%s)", p, why)
		case 2:
			return nil
		}
		state[p] = 1
		if !strings.HasSuffix(p, ".ko") {
			return fmt.Errorf("kernel module %s (%s): only uncompressed .ko files are supported", p, why)
		}
		relDir, err := moduleRelease(p)
		if err != nil {
			return err
		}
		host, _, err := t.follow(p)
		if err != nil {
			return fmt.Errorf("kernel module %s (%s) is in none of the package roots (%s): %w", p, why, t.rootList(), err)
		}
		f, err := os.Open(host)
		if err != nil {
			return err
		}
		info, err := readModinfo(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("kernel module %s: %w", p, err)
		}
		if deps := info["depends"]; deps != "" {
			idx, ok := indexes[relDir]
			if !ok {
				if idx, err = t.moduleIndex(relDir); err != nil {
					return err
				}
				indexes[relDir] = idx
			}
			for _, d := range strings.Split(deps, ",") {
				dp, ok := idx[normModName(d)]
				if !ok {
					return fmt.Errorf("kernel module %s depends on %s, which is in no package root under %s", p, d, relDir)
				}
				if err := visit(dp, "needed by "+p); err != nil {
					return err
				}
			}
		}
		if err := t.Add(p, why); err != nil {
			return err
		}
		state[p] = 2
		order = append(order, p)
		return nil
	}
	for _, m := range mods {
		if err := visit(m, "wanted module"); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// moduleRelease returns the /lib/modules/<release> directory p is in.
func moduleRelease(p string) (string, error) {
	i := strings.Index(p, "/lib/modules/")
	if i < 0 {
		return "", fmt.Errorf("kernel module %s is not under lib/modules/<release>/", p)
	}
	rest := p[i+len("/lib/modules/"):]
	rel, _, ok := strings.Cut(rest, "/")
	if !ok || rel == "" {
		return "", fmt.Errorf("kernel module %s is not under lib/modules/<release>/", p)
	}
	return p[:i+len("/lib/modules/")] + rel, nil
}

// moduleIndex maps module names to paths under dir, across all roots.
func (t *Tree) moduleIndex(dir string) (map[string]string, error) {
	idx := map[string]string{}
	var walk func(d string) error
	walk = func(d string) error {
		names, err := t.readDir(d)
		if err != nil {
			return err
		}
		for _, n := range names {
			p := path.Join(d, n)
			_, fi, err := t.lstat(p)
			if err != nil {
				return err
			}
			switch {
			case fi.IsDir():
				if err := walk(p); err != nil {
					return err
				}
			case strings.HasSuffix(n, ".ko"):
				name := normModName(strings.TrimSuffix(n, ".ko"))
				if _, dup := idx[name]; !dup {
					idx[name] = p
				}
			}
		}
		return nil
	}
	return idx, walk(dir)
}

// normModName folds '-' to '_': the kernel treats them as the same.
func normModName(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "-", "_") }

// readModinfo returns the key=value pairs of a module's .modinfo section.
func readModinfo(r io.ReaderAt) (m map[string]string, err error) {
	defer func() {
		if p := recover(); p != nil {
			m, err = nil, fmt.Errorf("malformed ELF: %v", p)
		}
	}()
	f, err := elf.NewFile(r)
	if err != nil {
		return nil, err
	}
	s := f.Section(".modinfo")
	if s == nil {
		return nil, fmt.Errorf("no .modinfo section: not a kernel module")
	}
	if s.Size > 1<<20 {
		return nil, fmt.Errorf(".modinfo of %d bytes", s.Size)
	}
	b, err := s.Data()
	if err != nil {
		return nil, fmt.Errorf("read .modinfo: %w", err)
	}
	return parseModinfo(b), nil
}

// parseModinfo splits NUL-separated key=value strings; the first value of a
// key wins (keys like alias repeat).
func parseModinfo(b []byte) map[string]string {
	m := map[string]string{}
	for _, kv := range bytes.Split(b, []byte{0}) {
		k, v, ok := strings.Cut(string(kv), "=")
		if !ok || k == "" {
			continue
		}
		if _, dup := m[k]; !dup {
			m[k] = v
		}
	}
	return m
}
