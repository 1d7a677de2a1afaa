package boardcfg

import (
	"strings"
	"testing"
)

func TestReleaseProfile(t *testing.T) {
	dir := t.TempDir()
	b, err := Load(writeProfile(t, dir, "t1.yaml", valid), dir)
	if err != nil {
		t.Fatal(err)
	}
	if v := b.ReleaseVersion().String(); v != DefaultVersion {
		t.Errorf("default version %s", v)
	}
	g := b.UpdateGUIDs()
	if len(g) != 1 || len(g[0]) != 36 || g[0][14] != '5' || g[0] != strings.ToLower(g[0]) {
		t.Errorf("derived GUIDs %v", g)
	}
	b2, err := Load(writeProfile(t, dir, "t2.yaml", valid+"version: 2.3.4\nupdate:\n  guids: [6F2A1C1E-3B8D-4E55-9A41-66776275696C]\n  min_version: 2.0.0\n  notes: fixes\n"), dir)
	if err != nil {
		t.Fatal(err)
	}
	if b2.ReleaseVersion().String() != "2.3.4" || b2.UpdateGUIDs()[0] != "6f2a1c1e-3b8d-4e55-9a41-66776275696c" {
		t.Errorf("version %s guids %v", b2.ReleaseVersion(), b2.UpdateGUIDs())
	}
}

func TestBadReleaseProfiles(t *testing.T) {
	for _, c := range []struct{ name, add, want string }{
		{"hash given", "version: 1.0.0+abc\n", `t1.yaml:40:10: version: "1.0.0+abc": give MAJOR.MINOR.PATCH`},
		{"not a triplet", "version: \"1.0\"\n", `version: update: version "1.0" is not MAJOR.MINOR.PATCH`},
		{"min above", "version: 1.0.0\nupdate: {min_version: 1.2.0}\n", "update.min_version: 1.2.0 is above the board's own version 1.0.0"},
		{"bad guid", "update: {guids: [not-a-guid]}\n", "update.guids[0]"},
		{"unknown key", "update: {gid: x}\n", "gid"},
	} {
		dir := t.TempDir()
		_, err := Load(writeProfile(t, dir, "t1.yaml", valid+c.add), dir)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.name, err, c.want)
		}
	}
}
