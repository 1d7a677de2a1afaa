package image

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"math/bits"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// FlashMap is what FlashMapSVG draws: a chip, its layout regions and the
// firmware volumes in them.
type FlashMap struct {
	Board    string
	ChipSize uint64
	Regions  []MapRegion // flash layout regions; may nest ("payload" inside "bios")
	Volumes  []MapVolume // top-level firmware volumes, chip offsets
}

// MapRegion is one region of the chip's layout.
type MapRegion struct {
	Name        string
	Kind        string // "descriptor", "me", "bios", "payload", "guests", "unit", "preserved", "firmware", ...
	Start, Size uint64
	Used        int64  // bytes used from Start, -1 unknown
	Note        string // short text, e.g. "payload 7.8 MB, headroom 40%"
}

// MapVolume is a firmware volume at a chip offset.
type MapVolume struct {
	Name        string // GUID or UI name
	Start, Size uint64
	Free        uint64
	Changed     bool // fwbuild changed it (launcher inserted)
}

// Drawing geometry, in SVG user units (px). The bar is a fixed height so
// that every board's map has the same size and scale reads as "fraction
// of the chip".
const (
	mapTitleH   = 48.0
	mapAxisW    = 130.0 // offset labels left of the bar
	mapBarW     = 300.0
	mapBarH     = 960.0
	mapInset    = 14.0 // per nesting level, on each side
	mapMinBox   = 4.0  // smallest height drawn: a 4 KiB descriptor in 32 MiB is 0.1 px
	mapLeaderW  = 40.0
	mapLabelW   = 340.0
	mapLegendW  = 190.0
	mapLineH    = 13.0
	mapLabelGap = 4.0
	mapMarginB  = 24.0
)

// mapColors fill a region box by kind; an unknown kind gets mapOther.
var mapColors = map[string]string{
	"descriptor": "#9e9e9e",
	"me":         "#e57373",
	"gbe":        "#ffb74d",
	"ec":         "#ffb74d",
	"pd":         "#ffb74d",
	"bios":       "#64b5f6",
	"firmware":   "#4fc3f7",
	"payload":    "#81c784",
	"guests":     "#c5e1a5",
	"unit":       "#fff176",
	"preserved":  "#ba68c8",
}

const (
	mapOther   = "#cfd8dc"
	mapVolUsed = "#546e7a"
	mapVolFree = "#eceff1"
	mapChanged = "#ff6f00"
)

// mapItem is a region or volume placed on the drawing.
type mapItem struct {
	name, kind  string
	start, size uint64
	used        int64 // -1 unknown
	vol         bool
	changed     bool
	note        string
	order       int // input order, to break ties deterministically
	depth       int
	x, y, w, h  float64
	small       bool // drawn taller than to scale
	lines       []string
	labelY      float64
}

// end saturates: a bogus size must not wrap around to a small offset.
func (it *mapItem) end() uint64 {
	if e := it.start + it.size; e >= it.start {
		return e
	}
	return ^uint64(0)
}

func (it *mapItem) contains(o *mapItem) bool {
	return o.start >= it.start && o.end() <= it.end()
}

// FlashMapSVG renders m as a standalone SVG document: the chip as a
// vertical bar (offset 0 at the top, as spi.layout lists it), offsets on
// an axis, each region a box to scale with nested regions inside their
// parent, volumes inside with used and free space shaded, a label per
// box (name, start-end, size, used/free, note), and a legend. Boxes
// smaller than a few pixels are drawn at a minimum height; their label is
// outside like every other. All text is escaped: names come from firmware
// images. The same FlashMap gives the same bytes.
func FlashMapSVG(m FlashMap) []byte {
	items := mapItems(m)
	total := m.ChipSize
	for _, it := range items {
		if it.end() > total {
			total = it.end()
		}
	}
	// Without a chip size the bar ends where the layout does.
	chip := m.ChipSize
	chipText := fmt.Sprintf("chip %s (%s), offsets grow downwards", mapHex(chip), mapSize(chip))
	if chip == 0 {
		chip = total
		chipText = fmt.Sprintf("chip size not given: drawn to the layout's end %s", mapHex(chip))
	}
	scale := 0.0
	if total > 0 {
		scale = mapBarH / float64(total)
	}
	barX := mapAxisW
	barY := mapTitleH
	for _, it := range items {
		it.x = barX + float64(it.depth)*mapInset
		it.w = mapBarW - 2*float64(it.depth)*mapInset
		if it.w < mapInset {
			it.w = mapInset
		}
		it.y = barY + float64(it.start)*scale
		it.h = float64(it.size) * scale
		if it.h < mapMinBox {
			it.h, it.small = mapMinBox, true
		}
		it.lines = mapLabel(it, m.ChipSize)
	}
	labelBottom := mapPlaceLabels(items, barY, barY+mapBarH)

	legendX := barX + mapBarW + mapLeaderW + mapLabelW
	width := legendX + mapLegendW
	height := barY + mapBarH + mapMarginB
	if labelBottom+mapMarginB > height {
		height = labelBottom + mapMarginB
	}
	if h := barY + mapLegendHeight() + mapMarginB; h > height {
		height = h
	}

	var b bytes.Buffer
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%s" height="%s" viewBox="0 0 %s %s" font-family="sans-serif" font-size="11">`+"\n",
		svgNum(width), svgNum(height), svgNum(width), svgNum(height))
	title := "flash map"
	if m.Board != "" {
		title = m.Board + " flash map"
	}
	p("<title>%s</title>\n", svgEscape(title))
	p(`<defs><pattern id="fwbuild-free" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">`+
		`<rect width="6" height="6" fill="%s"/><line x1="0" y1="0" x2="0" y2="6" stroke="#b0bec5" stroke-width="2"/></pattern></defs>`+"\n", mapVolFree)
	p(`<rect width="100%%" height="100%%" fill="#ffffff"/>` + "\n")
	p(`<text x="%s" y="24" font-size="16" font-weight="bold">%s</text>`+"\n", svgNum(barX), svgEscape(title))
	p(`<text x="%s" y="40" fill="#455a64">%s</text>`+"\n", svgNum(barX), svgEscape(chipText))

	// Axis: ticks at a power-of-two step giving 8-16 intervals.
	p(`<g class="axis" stroke="#455a64">` + "\n")
	p(`<line x1="%s" y1="%s" x2="%s" y2="%s"/>`+"\n", svgNum(barX-8), svgNum(barY), svgNum(barX-8), svgNum(barY+float64(chip)*scale))
	if step := mapAxisStep(chip); step > 0 {
		for i := uint64(0); i <= chip/step; i++ { // counted: off += step could wrap
			off := i * step
			y := barY + float64(off)*scale
			p(`<line x1="%s" y1="%s" x2="%s" y2="%s"/>`, svgNum(barX-14), svgNum(y), svgNum(barX-8), svgNum(y))
			p(`<text x="%s" y="%s" text-anchor="end" stroke="none" fill="#263238" font-size="10">%s</text>`+"\n",
				svgNum(barX-18), svgNum(y+3.5), svgEscape(mapHex(off)))
		}
	}
	p("</g>\n")

	// The chip itself, then boxes parents first so children paint over
	// them, larger before smaller so a minimum-height box stays visible.
	p(`<rect class="chip" x="%s" y="%s" width="%s" height="%s" fill="#fafafa" stroke="#263238" stroke-width="1.5"><title>%s</title></rect>`+"\n",
		svgNum(barX), svgNum(barY), svgNum(mapBarW), svgNum(float64(chip)*scale), svgEscape("chip "+mapSize(chip)))
	draw := append([]*mapItem(nil), items...)
	sort.SliceStable(draw, func(i, j int) bool {
		if draw[i].depth != draw[j].depth {
			return draw[i].depth < draw[j].depth
		}
		return draw[i].size > draw[j].size
	})
	for _, it := range draw {
		mapWriteBox(&b, it, scale, items)
	}
	for _, it := range items {
		mapWriteLabel(&b, it, barX+mapBarW+mapLeaderW)
	}
	mapWriteLegend(&b, legendX, barY)
	p("</svg>\n")
	return b.Bytes()
}

// mapItems turns m's regions and volumes into items sorted by start, each
// with its nesting depth: one more than the smallest region containing it.
func mapItems(m FlashMap) []*mapItem {
	var items []*mapItem
	for i, r := range m.Regions {
		items = append(items, &mapItem{name: r.Name, kind: r.Kind, start: r.Start, size: r.Size, used: r.Used, note: r.Note, order: i})
	}
	for i, v := range m.Volumes {
		used := int64(-1)
		if v.Free <= v.Size {
			used = int64(v.Size - v.Free)
		}
		items = append(items, &mapItem{name: v.Name, kind: "volume", start: v.Start, size: v.Size, used: used, vol: true, changed: v.Changed, order: len(m.Regions) + i})
	}
	sort.SliceStable(items, func(i, j int) bool {
		a, b := items[i], items[j]
		if a.start != b.start {
			return a.start < b.start
		}
		if a.size != b.size {
			return a.size > b.size // the container first
		}
		if a.vol != b.vol {
			return !a.vol // a region holds a volume of its size, not the reverse
		}
		return a.order < b.order
	})
	// Sorted so, every possible parent of an item comes before it; the
	// innermost is the last one before it that contains it. A volume can
	// be a parent too: a payload region laid out inside the volume that
	// holds it is drawn inside that volume.
	for i, it := range items {
		for j := i - 1; j >= 0; j-- {
			if p := items[j]; p.contains(it) && p.size > 0 {
				it.depth = p.depth + 1
				break
			}
		}
	}
	return items
}

// mapLabel is the text beside a box: name and kind, extent, use, note.
func mapLabel(it *mapItem, chipSize uint64) []string {
	head := mapClip(it.name, 48)
	if it.vol {
		head = "volume " + head
	} else if it.kind != "" && it.kind != it.name {
		head += " (" + mapClip(it.kind, 16) + ")"
	}
	lines := []string{head}
	ext := fmt.Sprintf("%s-%s, %s", mapHex(it.start), mapHex(it.end()-1), mapSize(it.size))
	if it.size == 0 {
		ext = mapHex(it.start) + ", empty"
	}
	lines = append(lines, ext)
	if it.used >= 0 && it.size > 0 {
		used := uint64(it.used)
		free := uint64(0)
		if used < it.size {
			free = it.size - used
		}
		lines = append(lines, fmt.Sprintf("used %s (%d%%), free %s", mapSize(used), used*100/it.size, mapSize(free)))
	}
	if it.changed {
		lines = append(lines, "changed by fwbuild")
	}
	if it.note != "" {
		lines = append(lines, mapClip(it.note, 56))
	}
	if chipSize > 0 && it.end() > chipSize {
		lines = append(lines, "past the end of the chip!")
	}
	return lines
}

// mapPlaceLabels stacks the labels beside their boxes without overlap:
// each as close to its box's middle as the ones above allow, pulled back
// up if the stack runs below bottom. It returns the lowest label's end.
func mapPlaceLabels(items []*mapItem, top, bottom float64) float64 {
	order := append([]*mapItem(nil), items...)
	sort.SliceStable(order, func(i, j int) bool {
		ci, cj := order[i].y+order[i].h/2, order[j].y+order[j].h/2
		if ci != cj {
			return ci < cj
		}
		return order[i].depth < order[j].depth
	})
	height := func(it *mapItem) float64 { return float64(len(it.lines))*mapLineH + mapLabelGap }
	prev := top
	for _, it := range order {
		it.labelY = it.y + it.h/2 - height(it)/2
		if it.labelY < prev {
			it.labelY = prev
		}
		prev = it.labelY + height(it)
	}
	next := bottom
	for i := len(order) - 1; i >= 0; i-- {
		it := order[i]
		if it.labelY+height(it) > next {
			it.labelY = next - height(it)
		}
		next = it.labelY
	}
	prev = top
	for _, it := range order {
		if it.labelY < prev {
			it.labelY = prev
		}
		prev = it.labelY + height(it)
	}
	return prev
}

func mapWriteBox(b *bytes.Buffer, it *mapItem, scale float64, items []*mapItem) {
	fill, stroke, width := mapColors[it.kind], "#37474f", "1"
	if fill == "" {
		fill = mapOther
	}
	class := "region"
	if it.vol {
		class, fill = "volume", "url(#fwbuild-free)"
	}
	if it.used >= 0 && !it.vol {
		fill = mapPale(fill) // the free part; the used part is drawn over it in full colour
	}
	if it.changed {
		stroke, width = mapChanged, "2.5"
	}
	fmt.Fprintf(b, `<g class="%s" data-kind="%s" data-start="%d" data-size="%d">`, class, svgEscape(it.kind), it.start, it.size)
	fmt.Fprintf(b, "<title>%s</title>", svgEscape(strings.Join(it.lines, "; ")))
	fmt.Fprintf(b, `<rect class="box" x="%s" y="%s" width="%s" height="%s" fill="%s" stroke="%s" stroke-width="%s"/>`,
		svgNum(it.x), svgNum(it.y), svgNum(it.w), svgNum(it.h), fill, stroke, width)
	if it.used > 0 && it.size > 0 {
		used := uint64(it.used)
		if used > it.size {
			used = it.size
		}
		h := float64(used) * scale
		if it.small {
			h = it.h * float64(used) / float64(it.size)
		}
		c := mapColors[it.kind]
		if it.vol {
			c = mapVolUsed
		} else if c == "" {
			c = mapOther
		}
		fmt.Fprintf(b, `<rect class="used" x="%s" y="%s" width="%s" height="%s" fill="%s" stroke="none"/>`,
			svgNum(it.x+0.5), svgNum(it.y+0.5), svgNum(it.w-1), svgNum(mapMax(h-1, 0)), c)
	}
	// The name inside the box too, when it fits above whatever is nested
	// in it: the whiteboard look, readable without the leader lines.
	room := it.h
	for _, o := range items {
		if o != it && o.depth > it.depth && it.contains(o) && o.y-it.y < room {
			room = o.y - it.y
		}
	}
	if room >= 16 && it.w > 40 {
		color := "#263238"
		if it.vol && it.used > 0 {
			color = "#ffffff"
		}
		fmt.Fprintf(b, `<text x="%s" y="%s" fill="%s" font-weight="bold">%s</text>`,
			svgNum(it.x+4), svgNum(it.y+12), color, svgEscape(mapClip(it.name, int((it.w-8)/6.5))))
	}
	b.WriteString("</g>\n")
}

func mapWriteLabel(b *bytes.Buffer, it *mapItem, x float64) {
	cy := it.y + it.h/2
	ty := it.labelY + mapLineH/2 + 2
	fmt.Fprintf(b, `<g class="label"><polyline points="%s,%s %s,%s %s,%s" fill="none" stroke="#90a4ae"/>`,
		svgNum(it.x+it.w), svgNum(cy), svgNum(x-mapLeaderW/2), svgNum(cy), svgNum(x-4), svgNum(ty))
	fmt.Fprintf(b, `<text x="%s" y="%s">`, svgNum(x), svgNum(it.labelY+mapLineH-2))
	for i, l := range it.lines {
		dy, weight := "0", ` font-weight="bold"`
		if i > 0 {
			dy, weight = svgNum(mapLineH), ""
		}
		fmt.Fprintf(b, `<tspan x="%s" dy="%s"%s>%s</tspan>`, svgNum(x), dy, weight, svgEscape(l))
	}
	b.WriteString("</text></g>\n")
}

// mapLegend lists the swatches in the legend, in this order.
var mapLegend = []struct{ label, fill, stroke string }{
	{"descriptor", mapColors["descriptor"], ""},
	{"ME", mapColors["me"], ""},
	{"GbE / EC / PD", mapColors["gbe"], ""},
	{"BIOS", mapColors["bios"], ""},
	{"firmware", mapColors["firmware"], ""},
	{"payload", mapColors["payload"], ""},
	{"guests", mapColors["guests"], ""},
	{"unit (per-unit record)", mapColors["unit"], ""},
	{"preserved", mapColors["preserved"], ""},
	{"other region", mapOther, ""},
	{"region: free part (pale)", mapPale(mapColors["payload"]), ""},
	{"volume: used", mapVolUsed, ""},
	{"volume: free", "url(#fwbuild-free)", ""},
	{"changed by fwbuild", "none", mapChanged},
}

func mapLegendHeight() float64 { return 24 + float64(len(mapLegend))*18 }

func mapWriteLegend(b *bytes.Buffer, x, y float64) {
	fmt.Fprintf(b, `<g class="legend"><text x="%s" y="%s" font-weight="bold">legend</text>`, svgNum(x), svgNum(y+10))
	for i, e := range mapLegend {
		ey := y + 24 + float64(i)*18
		stroke, width := "#37474f", "1"
		if e.stroke != "" {
			stroke, width = e.stroke, "2.5"
		}
		fmt.Fprintf(b, `<rect x="%s" y="%s" width="22" height="12" fill="%s" stroke="%s" stroke-width="%s"/><text x="%s" y="%s">%s</text>`,
			svgNum(x), svgNum(ey), e.fill, stroke, width, svgNum(x+30), svgNum(ey+10), svgEscape(e.label))
	}
	b.WriteString("</g>\n")
}

// mapPale mixes a "#rrggbb" colour with 70% white: opaque, so a nested
// box's free part does not show its parent through.
func mapPale(c string) string {
	v, err := strconv.ParseUint(strings.TrimPrefix(c, "#"), 16, 32)
	if err != nil || len(c) != 7 {
		return c
	}
	mix := func(shift uint) uint64 { return (3*(v>>shift&0xFF) + 7*0xFF) / 10 }
	return fmt.Sprintf("#%02x%02x%02x", mix(16), mix(8), mix(0))
}

// mapAxisStep is the power of two that cuts size into 8 to 16 intervals.
func mapAxisStep(size uint64) uint64 {
	if size < 16 {
		return 0
	}
	step := uint64(1) << (63 - bits.LeadingZeros64(size/16))
	for size/step > 16 {
		step <<= 1
	}
	return step
}

// svgEscape escapes s for XML text and attribute values; encoding/xml also
// replaces characters XML cannot hold (NUL, other control bytes, bad
// UTF-8) with U+FFFD, which names read from a firmware image may carry.
func svgEscape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// mapClip shortens s to at most n runes, marking the cut.
func mapClip(s string, n int) string {
	if n < 2 {
		n = 2
	}
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

func mapHex(v uint64) string { return fmt.Sprintf("0x%08x", v) }

// mapSize is v in binary units (flash parts come in powers of two).
func mapSize(v uint64) string {
	units := []string{"B", "KiB", "MiB", "GiB"}
	f, u := float64(v), 0
	for f >= 1024 && u < len(units)-1 {
		f /= 1024
		u++
	}
	if u == 0 {
		return strconv.FormatUint(v, 10) + " B"
	}
	s := strconv.FormatFloat(f, 'f', 2, 64)
	s = strings.TrimSuffix(strings.TrimRight(s, "0"), ".")
	return s + " " + units[u]
}

// svgNum formats a coordinate with two decimals at most: stable bytes.
func svgNum(f float64) string {
	s := strconv.FormatFloat(f, 'f', 2, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimSuffix(strings.TrimRight(s, "0"), ".")
	}
	if s == "-0" {
		s = "0"
	}
	return s
}

func mapMax(a, b float64) float64 {
	if a > b {
		return a
	}
	return b
}
