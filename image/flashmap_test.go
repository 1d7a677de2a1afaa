package image

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// svgNode is a parsed SVG element: enough of a DOM for the tests.
type svgNode struct {
	name     string
	attr     map[string]string
	text     string // character data directly inside
	children []*svgNode
}

// svgParse parses doc strictly with encoding/xml and returns its root.
func svgParse(t *testing.T, doc []byte) *svgNode {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(doc))
	d.Strict = true
	var stack []*svgNode
	var root *svgNode
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG does not parse as XML: %v\n%s", err, doc)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			n := &svgNode{name: tok.Name.Local, attr: map[string]string{}}
			for _, a := range tok.Attr {
				n.attr[a.Name.Local] = a.Value
			}
			if len(stack) == 0 {
				if root != nil {
					t.Fatal("SVG has two root elements")
				}
				root = n
				if tok.Name.Space != "http://www.w3.org/2000/svg" {
					t.Errorf("root element namespace %q, want the SVG namespace", tok.Name.Space)
				}
			} else {
				p := stack[len(stack)-1]
				p.children = append(p.children, n)
			}
			stack = append(stack, n)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) > 0 {
				stack[len(stack)-1].text += string(tok)
			}
		}
	}
	if root == nil || root.name != "svg" {
		t.Fatalf("root element is not <svg>: %+v", root)
	}
	return root
}

// walk calls fn on n and every element below it.
func (n *svgNode) walk(fn func(*svgNode)) {
	fn(n)
	for _, c := range n.children {
		c.walk(fn)
	}
}

// child returns n's first child element called name with class (if not "").
func (n *svgNode) child(name, class string) *svgNode {
	for _, c := range n.children {
		if c.name == name && (class == "" || c.attr["class"] == class) {
			return c
		}
	}
	return nil
}

// svgAllText is every <text>, <tspan> and <title> string in the document.
func svgAllText(root *svgNode) []string {
	var out []string
	root.walk(func(n *svgNode) {
		if n.name == "text" || n.name == "tspan" || n.name == "title" {
			out = append(out, n.text)
		}
	})
	return out
}

func svgAttrFloat(t *testing.T, n *svgNode, key string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(n.attr[key], 64)
	if err != nil {
		t.Fatalf("<%s> attribute %s=%q: %v", n.name, key, n.attr[key], err)
	}
	return v
}

// drawnBox is a region or volume as the SVG draws it.
type drawnBox struct {
	class, title      string
	start, size       uint64
	x, y, w, h, usedH float64
	hasUsed           bool
}

func svgDrawnBoxes(t *testing.T, root *svgNode) []drawnBox {
	t.Helper()
	var out []drawnBox
	root.walk(func(n *svgNode) {
		if n.name != "g" || (n.attr["class"] != "region" && n.attr["class"] != "volume") {
			return
		}
		b := drawnBox{class: n.attr["class"]}
		b.start, _ = strconv.ParseUint(n.attr["data-start"], 10, 64)
		b.size, _ = strconv.ParseUint(n.attr["data-size"], 10, 64)
		if title := n.child("title", ""); title != nil {
			b.title = title.text
		}
		r := n.child("rect", "box")
		if r == nil {
			t.Fatalf("%s group %q has no box rect", b.class, b.title)
		}
		b.x, b.y, b.w, b.h = svgAttrFloat(t, r, "x"), svgAttrFloat(t, r, "y"), svgAttrFloat(t, r, "width"), svgAttrFloat(t, r, "height")
		if u := n.child("rect", "used"); u != nil {
			b.usedH, b.hasUsed = svgAttrFloat(t, u, "height"), true
		}
		out = append(out, b)
	})
	return out
}

// flashMapQ35 is a 32 MiB chip the way a build of a descriptor board lays it
// out: descriptor (tiny at this scale), ME, a preserved region and a BIOS
// region holding guests, OVMF's two volumes and the payload.
func flashMapQ35() FlashMap {
	return FlashMap{
		Board:    "qemu-q35",
		ChipSize: 32 << 20,
		Regions: []MapRegion{
			{Name: "descriptor", Kind: "descriptor", Start: 0, Size: 0x1000, Used: -1},
			{Name: "me", Kind: "me", Start: 0x1000, Size: 0x5FF000, Used: -1},
			{Name: "vpd", Kind: "preserved", Start: 0x600000, Size: 0x10000, Used: -1},
			{Name: "bios", Kind: "bios", Start: 0x610000, Size: 0x19F0000, Used: -1},
			{Name: "guests", Kind: "guests", Start: 0x610000, Size: 0x800000, Used: 0x2A0000, Note: "3 guests"},
			{Name: "payload", Kind: "payload", Start: 0x1400000, Size: 0x800000, Used: 0x7CE000, Note: "payload 7.8 MB, headroom 2%"},
		},
		Volumes: []MapVolume{
			{Name: growGUID, Start: 0xE10000, Size: 0x11BC000, Free: 0x280000, Changed: true},
			{Name: "763BED0D-DE9F-48F5-81F1-3E90E1B1A015", Start: 0x1FCC000, Size: 0x34000, Free: 0x1000},
		},
	}
}

func TestFlashMapSVGDocument(t *testing.T) {
	m := flashMapQ35()
	doc := FlashMapSVG(m)
	root := svgParse(t, doc)
	if root.attr["viewBox"] == "" || root.attr["width"] == "" {
		t.Errorf("<svg> lacks a size: %v", root.attr)
	}
	texts := strings.Join(svgAllText(root), "\n")
	for _, r := range m.Regions {
		if !strings.Contains(texts, r.Name) {
			t.Errorf("region %q appears in no <text> or <title>", r.Name)
		}
		if r.Note != "" && !strings.Contains(texts, r.Note) {
			t.Errorf("note %q of region %q not shown", r.Note, r.Name)
		}
	}
	for _, v := range m.Volumes {
		if !strings.Contains(texts, v.Name) {
			t.Errorf("volume %q appears in no <text> or <title>", v.Name)
		}
	}
	for _, want := range []string{
		"qemu-q35 flash map",
		"0x00610000-0x01ffffff",              // bios start-end
		"used 2.62 MiB (32%), free 5.38 MiB", // guests
		"used 15.23 MiB (85%), free 2.5 MiB", // the grown volume
		"changed by fwbuild",
		"legend",
		"0x01000000", // an axis tick
	} {
		if !strings.Contains(texts, want) {
			t.Errorf("no text %q in the map:\n%s", want, texts)
		}
	}
	if n := len(svgDrawnBoxes(t, root)); n != len(m.Regions)+len(m.Volumes) {
		t.Errorf("%d boxes drawn, want one per region and volume (%d)", n, len(m.Regions)+len(m.Volumes))
	}
}

func TestFlashMapSVGToScale(t *testing.T) {
	m := flashMapQ35()
	root := svgParse(t, FlashMapSVG(m))
	var chip *svgNode
	root.walk(func(n *svgNode) {
		if n.name == "rect" && n.attr["class"] == "chip" {
			chip = n
		}
	})
	if chip == nil {
		t.Fatal("no chip rect")
	}
	y0, k := svgAttrFloat(t, chip, "y"), svgAttrFloat(t, chip, "height")/float64(m.ChipSize) // px per byte
	chipX, chipW := svgAttrFloat(t, chip, "x"), svgAttrFloat(t, chip, "width")
	const tol = 0.02 // px: coordinates are written with two decimals
	boxes := svgDrawnBoxes(t, root)
	byName := map[string]drawnBox{}
	for _, b := range boxes {
		if math.Abs(b.y-(y0+float64(b.start)*k)) > tol {
			t.Errorf("%s: y=%v, want %v (offset %#x to scale)", b.title, b.y, y0+float64(b.start)*k, b.start)
		}
		want := float64(b.size) * k
		if want >= mapMinBox {
			if math.Abs(b.h-want) > tol {
				t.Errorf("%s: height %v, want %v (size %#x to scale)", b.title, b.h, want, b.size)
			}
		} else if b.h != mapMinBox {
			t.Errorf("%s: %v px to scale, drawn %v px; want the minimum %v", b.title, want, b.h, mapMinBox)
		}
		if b.x < chipX || b.x+b.w > chipX+chipW {
			t.Errorf("%s: box x %v..%v outside the chip bar %v..%v", b.title, b.x, b.x+b.w, chipX, chipX+chipW)
		}
		byName[strings.SplitN(b.title, ";", 2)[0]] = b
	}
	// Heights proportional to sizes, compared pairwise as a person would.
	me, bios := byName["me"], byName["bios"]
	if r, want := bios.h/me.h, float64(bios.size)/float64(me.size); math.Abs(r-want)/want > 0.001 {
		t.Errorf("bios/me height ratio %v, size ratio %v", r, want)
	}
	// Nesting: guests and payload inside bios, payload inside the volume.
	vol := byName["volume "+growGUID]
	inside := func(in, out drawnBox) bool {
		return in.x > out.x && in.x+in.w < out.x+out.w && in.y >= out.y-tol && in.y+in.h <= out.y+out.h+tol
	}
	for _, c := range []struct {
		in, out string
	}{{"guests", "bios"}, {"payload", "bios"}, {"payload", "volume " + growGUID}, {"volume " + growGUID, "bios"}} {
		if !inside(byName[c.in], byName[c.out]) {
			t.Errorf("%s (%+v) is not drawn inside %s (%+v)", c.in, byName[c.in], c.out, byName[c.out])
		}
	}
	// Used shading to scale.
	for _, c := range []struct {
		name string
		used uint64
	}{{"guests", 0x2A0000}, {"payload", 0x7CE000}, {"volume " + growGUID, vol.size - 0x280000}} {
		b := byName[c.name]
		if !b.hasUsed || math.Abs(b.usedH-(float64(c.used)*k-1)) > tol {
			t.Errorf("%s: used part %v px, want %v (used %#x to scale, less the 1 px border)", c.name, b.usedH, float64(c.used)*k-1, c.used)
		}
	}
	if b := byName["me"]; b.hasUsed {
		t.Error("me: used part drawn for a region whose use is unknown")
	}
}

func TestFlashMapSVGDeterministic(t *testing.T) {
	m := flashMapQ35()
	a, b := FlashMapSVG(m), FlashMapSVG(m)
	if !bytes.Equal(a, b) {
		t.Fatal("two renderings of the same map differ")
	}
	// The input order does not matter when no two entries share a range.
	r := flashMapQ35()
	for i, j := 0, len(r.Regions)-1; i < j; i, j = i+1, j-1 {
		r.Regions[i], r.Regions[j] = r.Regions[j], r.Regions[i]
	}
	r.Volumes[0], r.Volumes[1] = r.Volumes[1], r.Volumes[0]
	if !bytes.Equal(a, FlashMapSVG(r)) {
		t.Error("reordering the regions changed the SVG")
	}
}

func TestFlashMapSVGHostileNames(t *testing.T) {
	hostile := []string{
		`<script>alert(1)</script>`,
		`a & b "quoted" 'single'`,
		`]]><!-- x -->`,
		"nul\x00byte\x1b[31m",
		"bad\xffutf8",
	}
	m := FlashMap{Board: `<board onload="x()">`, ChipSize: 1 << 20}
	for i, h := range hostile {
		m.Regions = append(m.Regions, MapRegion{Name: h, Kind: h, Start: uint64(i) * 0x10000, Size: 0x10000, Used: -1, Note: h})
	}
	m.Volumes = []MapVolume{{Name: `<svg onload="alert(1)">`, Start: 0x80000, Size: 0x10000, Free: 0x100}}
	doc := FlashMapSVG(m)
	root := svgParse(t, doc) // strict: a raw < or & or NUL would fail here
	for _, raw := range []string{"<script", "<!--", "onload=\"", "\x00", "\x1b"} {
		if bytes.Contains(doc, []byte(raw)) {
			t.Errorf("raw %q in the SVG", raw)
		}
	}
	var elems []string
	root.walk(func(n *svgNode) { elems = append(elems, n.name) })
	for _, e := range elems {
		switch e {
		case "svg", "title", "defs", "pattern", "rect", "line", "text", "tspan", "g", "polyline":
		default:
			t.Errorf("unexpected element <%s>: a name got out of its text", e)
		}
	}
	texts := strings.Join(svgAllText(root), "\n")
	for _, want := range []string{`<script>alert(1)</script>`, `a & b "quoted" 'single'`, `]]><!-- x -->`, `<svg onload="alert(1)">`, `<board onload="x()">`} {
		if !strings.Contains(texts, want) {
			t.Errorf("name %q not shown as text", want)
		}
	}
}

func TestFlashMapSVGSmallRegions(t *testing.T) {
	// Twenty 4 KiB regions at the start of a 64 MiB chip: each 0.06 px to
	// scale. Every one gets a box and a label, and no two labels overlap.
	m := FlashMap{ChipSize: 64 << 20}
	for i := 0; i < 20; i++ {
		m.Regions = append(m.Regions, MapRegion{Name: fmt.Sprintf("r%02d", i), Kind: "firmware", Start: uint64(i) * 0x1000, Size: 0x1000, Used: -1})
	}
	m.Regions = append(m.Regions, MapRegion{Name: "bios", Kind: "bios", Start: 0x14000, Size: 64<<20 - 0x14000, Used: -1})
	root := svgParse(t, FlashMapSVG(m))
	boxes := svgDrawnBoxes(t, root)
	if len(boxes) != 21 {
		t.Fatalf("%d boxes, want 21", len(boxes))
	}
	for _, b := range boxes[:20] {
		if b.h < mapMinBox {
			t.Errorf("%s: %v px high, below the minimum", b.title, b.h)
		}
	}
	type span struct{ top, bottom float64 }
	var labels []span
	root.walk(func(n *svgNode) {
		if n.name != "g" || n.attr["class"] != "label" {
			return
		}
		txt := n.child("text", "")
		y := svgAttrFloat(t, txt, "y")
		labels = append(labels, span{y - mapLineH, y + float64(len(txt.children)-1)*mapLineH})
	})
	if len(labels) != 21 {
		t.Fatalf("%d labels, want 21", len(labels))
	}
	sort.Slice(labels, func(i, j int) bool { return labels[i].top < labels[j].top })
	for i := 1; i < len(labels); i++ {
		if labels[i].top < labels[i-1].bottom {
			t.Errorf("labels overlap: %v and %v", labels[i-1], labels[i])
		}
	}
	h := svgAttrFloat(t, root, "height")
	if last := labels[len(labels)-1]; last.bottom > h {
		t.Errorf("last label ends at %v, below the document's height %v", last.bottom, h)
	}
}

func TestFlashMapSVGOddInput(t *testing.T) {
	for name, m := range map[string]FlashMap{
		"empty":       {},
		"no-chip":     {Regions: []MapRegion{{Name: "bios", Start: 0, Size: 0x1000, Used: -1}}},
		"zero-size":   {ChipSize: 1 << 20, Regions: []MapRegion{{Name: "empty", Start: 0x1000, Used: 0}}},
		"past-end":    {ChipSize: 1 << 20, Regions: []MapRegion{{Name: "bios", Start: 0x80000, Size: 0x100000, Used: -1}}},
		"overfull":    {ChipSize: 1 << 20, Regions: []MapRegion{{Name: "payload", Kind: "payload", Start: 0, Size: 0x1000, Used: 0x2000}}},
		"free>size":   {ChipSize: 1 << 20, Volumes: []MapVolume{{Name: "fv", Start: 0, Size: 0x1000, Free: 0x2000}}},
		"unknownkind": {ChipSize: 1 << 20, Regions: []MapRegion{{Name: "x", Kind: "weird", Start: 0, Size: 0x1000, Used: -1}}},
		"huge":        {ChipSize: ^uint64(0), Regions: []MapRegion{{Name: "wraps", Start: ^uint64(0) - 10, Size: 100, Used: 50}}},
	} {
		t.Run(name, func(t *testing.T) {
			root := svgParse(t, FlashMapSVG(m))
			texts := strings.Join(svgAllText(root), "\n")
			for _, r := range m.Regions {
				if !strings.Contains(texts, r.Name) {
					t.Errorf("region %q not shown", r.Name)
				}
			}
			if name == "past-end" && !strings.Contains(texts, "past the end of the chip") {
				t.Error("a region past the chip's end is not flagged")
			}
			if name == "no-chip" && !strings.Contains(texts, "chip size not given") {
				t.Error("a map without a chip size does not say so")
			}
		})
	}
}
