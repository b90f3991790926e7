package report

import (
	"html"
	"html/template"
	"math"
	"strconv"
	"strings"
)

// A chart is one SVG drawing, described as a list of elements that SVG
// writes. Coordinates are in the units of its viewBox, W × H; CSS scales
// it to the page's width.
type chart struct {
	ID    string // unique in the page; prefixes the ids of title and desc
	Kind  string // data-chart: what the chart shows (tests count them)
	Class string
	W, H  float64
	// Title and Desc are the text alternative: the title names the chart,
	// the description says what it shows in words.
	Title, Desc string
	// Note is a remark shown under the chart.
	Note string
	Els  []el
}

// el is one SVG element. K selects the element; the other fields are its
// attributes, pre-formatted.
type el struct {
	K              string // "path", "line", "rect", "circle", "text"
	X1, Y1, X2, Y2 string // line; rect (x, y, width, height); circle (cx, cy, r); text (x, y)
	D              string // path
	Class          string
	Anchor         string // text-anchor of a text
	Text           string // the text of a text
	Tip            string // a <title> child: the tooltip and accessible name of a mark
}

// SVG returns the chart as inline SVG markup. It is written here rather
// than by html/template, which took 50 ms for the ten thousand elements of
// a 20-metric report (reflection on every action): every string that is
// not a number or a class name of this package goes through html's
// EscapeString, in quoted attributes or text.
func (c *chart) SVG() template.HTML {
	var b strings.Builder
	b.Grow(256 + 80*len(c.Els))
	esc := html.EscapeString
	b.WriteString(`<svg class="chart `)
	b.WriteString(esc(c.Class))
	b.WriteString(`" viewBox="0 0 `)
	b.WriteString(f(c.W))
	b.WriteByte(' ')
	b.WriteString(f(c.H))
	b.WriteString(`" role="img" aria-labelledby="`)
	b.WriteString(esc(c.ID + "-t " + c.ID + "-d"))
	b.WriteString(`" data-chart="`)
	b.WriteString(esc(c.Kind))
	b.WriteString(`" xmlns="http://www.w3.org/2000/svg"><title id="`)
	b.WriteString(esc(c.ID + "-t"))
	b.WriteString(`">`)
	b.WriteString(esc(c.Title))
	b.WriteString(`</title><desc id="`)
	b.WriteString(esc(c.ID + "-d"))
	b.WriteString(`">`)
	b.WriteString(esc(c.Desc))
	b.WriteString(`</desc>`)
	attr := func(name, v string) {
		b.WriteByte(' ')
		b.WriteString(name)
		b.WriteString(`="`)
		b.WriteString(esc(v))
		b.WriteByte('"')
	}
	for i := range c.Els {
		e := &c.Els[i]
		switch e.K {
		case "line":
			b.WriteString("<line")
			attr("x1", e.X1)
			attr("y1", e.Y1)
			attr("x2", e.X2)
			attr("y2", e.Y2)
		case "path":
			b.WriteString("<path")
			attr("d", e.D)
		case "rect":
			b.WriteString("<rect")
			attr("x", e.X1)
			attr("y", e.Y1)
			attr("width", e.X2)
			attr("height", e.Y2)
		case "circle":
			b.WriteString("<circle")
			attr("cx", e.X1)
			attr("cy", e.Y1)
			attr("r", e.X2)
		default:
			b.WriteString("<text")
			attr("x", e.X1)
			attr("y", e.Y1)
			attr("text-anchor", e.Anchor)
		}
		attr("class", e.Class)
		switch {
		case e.K == "text":
			b.WriteByte('>')
			b.WriteString(esc(e.Text))
			b.WriteString("</text>")
		case e.Tip != "":
			b.WriteString("><title>")
			b.WriteString(esc(e.Tip))
			b.WriteString("</title></")
			b.WriteString(e.K)
			b.WriteByte('>')
		default:
			b.WriteString("/>")
		}
	}
	b.WriteString("</svg>")
	return template.HTML(b.String()) // #nosec G203 -- every value above is escaped
}

// f formats a coordinate with one decimal, the precision of a drawing.
func f(v float64) string {
	var buf [24]byte
	return string(appendCoord(buf[:0], v))
}

// appendCoord appends v rounded to one decimal ("12.3", "-4", "0"),
// without strconv's float formatting (a third of a report's rendering
// time before); NaN and ±Inf as 0.
func appendCoord(b []byte, v float64) []byte {
	r := math.Round(v * 10)
	if math.IsNaN(r) || math.IsInf(r, 0) || math.Abs(r) > 1e15 {
		return append(b, '0')
	}
	n := int64(r)
	if n < 0 {
		b = append(b, '-')
		n = -n
	}
	b = strconv.AppendInt(b, n/10, 10)
	if d := n % 10; d != 0 {
		b = append(b, '.', byte('0'+d))
	}
	return b
}

func (c *chart) line(x1, y1, x2, y2 float64, class string) {
	c.Els = append(c.Els, el{K: "line", X1: f(x1), Y1: f(y1), X2: f(x2), Y2: f(y2), Class: class})
}

func (c *chart) rect(x, y, w, h float64, class, tip string) {
	c.Els = append(c.Els, el{K: "rect", X1: f(x), Y1: f(y), X2: f(math.Max(0, w)), Y2: f(math.Max(0, h)), Class: class, Tip: tip})
}

func (c *chart) circle(x, y, r float64, class, tip string) {
	c.Els = append(c.Els, el{K: "circle", X1: f(x), Y1: f(y), X2: f(r), Class: class, Tip: tip})
}

func (c *chart) path(d, class, tip string) {
	if d == "" {
		return
	}
	c.Els = append(c.Els, el{K: "path", D: d, Class: class, Tip: tip})
}

func (c *chart) text(x, y float64, anchor, class, s string) {
	c.Els = append(c.Els, el{K: "text", X1: f(x), Y1: f(y), Anchor: anchor, Class: class, Text: s})
}

// marker draws the mark of a point: a circle, a square or a triangle
// (pointing up) or a diamond, so that the outcome is told by the shape as
// well as by the colour.
func (c *chart) marker(shape string, x, y, r float64, class, tip string) {
	var d string
	switch shape {
	case "square":
		d = "M" + f(x-r) + " " + f(y-r) + "h" + f(2*r) + "v" + f(2*r) + "h" + f(-2*r) + "z"
	case "triangle":
		d = "M" + f(x) + " " + f(y-1.2*r) + "L" + f(x+1.1*r) + " " + f(y+0.8*r) + "L" + f(x-1.1*r) + " " + f(y+0.8*r) + "z"
	case "diamond":
		d = "M" + f(x) + " " + f(y-1.3*r) + "L" + f(x+1.3*r) + " " + f(y) + "L" + f(x) + " " + f(y+1.3*r) + "L" + f(x-1.3*r) + " " + f(y) + "z"
	default:
		c.circle(x, y, r, class, tip)
		return
	}
	c.path(d, class, tip)
}

// pathBuilder writes the d attribute of a path.
type pathBuilder struct {
	b    []byte
	open bool
}

// to adds a point: a move after a gap (or at the start), a line after.
func (p *pathBuilder) to(x, y float64) {
	if p.open {
		p.b = append(p.b, 'L')
	} else {
		p.b = append(p.b, 'M')
		p.open = true
	}
	p.b = appendCoord(p.b, x)
	p.b = append(p.b, ' ')
	p.b = appendCoord(p.b, y)
}

// gap ends the current run of points: the next one starts a new one.
func (p *pathBuilder) gap() { p.open = false }

func (p *pathBuilder) close() { p.b = append(p.b, 'Z') }

func (p *pathBuilder) String() string { return string(p.b) }

// scale maps data values to a coordinate range, linearly or on a log
// scale.
type scale struct {
	lo, hi   float64 // data range (> 0 for a log scale)
	p0, p1   float64 // coordinate range
	log      bool
	llo, lhi float64 // logarithms of lo and hi
}

func newScale(lo, hi, p0, p1 float64, log bool) scale {
	if !(hi > lo) {
		if log {
			lo, hi = lo/1.2, hi*1.2
		} else {
			lo, hi = lo-1, hi+1
			if lo < 0 && hi-1 >= 0 {
				lo = 0
			}
		}
	}
	s := scale{lo: lo, hi: hi, p0: p0, p1: p1, log: log}
	if log {
		s.llo, s.lhi = math.Log(lo), math.Log(hi)
	}
	return s
}

// at returns the coordinate of v, clamped to the range.
func (s scale) at(v float64) float64 {
	var t float64
	if s.log {
		if !(v > 0) {
			return s.p0
		}
		t = (math.Log(v) - s.llo) / (s.lhi - s.llo)
	} else {
		t = (v - s.lo) / (s.hi - s.lo)
	}
	if math.IsNaN(t) {
		t = 0
	}
	t = math.Max(0, math.Min(1, t))
	return s.p0 + t*(s.p1-s.p0)
}

// in reports whether v lies within the data range.
func (s scale) in(v float64) bool { return v >= s.lo && v <= s.hi }

// ticks returns about n tick values within the range: 1-2-5 steps, per
// decade on a log scale that spans more than a decade.
func (s scale) ticks(n int) []float64 {
	if s.log && s.hi/s.lo > 3 {
		var out []float64
		for e := math.Floor(math.Log10(s.lo)); e <= math.Ceil(math.Log10(s.hi)); e++ {
			for _, m := range []float64{1, 2, 5} {
				v := m * math.Pow(10, e)
				if s.in(v) {
					out = append(out, v)
				}
			}
		}
		if len(out) > n+2 { // many decades: powers of ten only
			out = out[:0]
			for e := math.Ceil(math.Log10(s.lo)); e <= math.Floor(math.Log10(s.hi)); e++ {
				out = append(out, math.Pow(10, e))
			}
		}
		return thinTicks(out, n+2)
	}
	step := niceStep((s.hi - s.lo) / float64(max(1, n)))
	var out []float64
	for v := math.Ceil(s.lo/step) * step; v <= s.hi+step*1e-9; v += step {
		if math.Abs(v) < step*1e-9 {
			v = 0
		}
		out = append(out, v)
	}
	return out
}

// thinTicks keeps every k-th tick so that at most n remain.
func thinTicks(ts []float64, n int) []float64 {
	if len(ts) <= n {
		return ts
	}
	k := (len(ts) + n - 1) / n
	out := ts[:0:0]
	for i := 0; i < len(ts); i += k {
		out = append(out, ts[i])
	}
	return out
}

// niceStep rounds a step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if !(raw > 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

// num formats a value compactly: three significant digits, with k, M, G
// for thousands and up.
func num(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case math.IsInf(v, 1):
		return "∞"
	case math.IsInf(v, -1):
		return "−∞"
	}
	a := math.Abs(v)
	for _, u := range []struct {
		s string
		v float64
	}{{"G", 1e9}, {"M", 1e6}, {"k", 1e4}} {
		if a >= u.v {
			if u.s == "k" {
				return trimG(v/1e3, 3) + "k"
			}
			return trimG(v/u.v, 3) + u.s
		}
	}
	return trimG(v, 3)
}

// trimG formats v with at most digits significant digits, without an
// exponent for values from 1e-4 on.
func trimG(v float64, digits int) string {
	if v == 0 {
		return "0"
	}
	a := math.Abs(v)
	if a < 1e-4 {
		return strconv.FormatFloat(v, 'g', 2, 64)
	}
	dec := max(0, digits-1-int(math.Floor(math.Log10(a))))
	s := strconv.FormatFloat(v, 'f', dec, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// ratioText formats a ratio as "1.28×".
func ratioText(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case math.IsInf(v, 1):
		return "∞"
	}
	return trimG(v, 3) + "×"
}

// pctText formats a share as a percentage with three significant digits.
func pctText(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return trimG(v*100, 3) + "%"
}

// pText formats a p-value.
func pText(p float64) string {
	switch {
	case math.IsNaN(p):
		return "–"
	case p == 0:
		return "0"
	case p < 1e-4:
		return strconv.FormatFloat(p, 'e', 1, 64)
	}
	return trimG(p, 2)
}
