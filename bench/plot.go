package main

import (
	"encoding/xml"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
)

// The sweep's plot: hand-written SVG, one line per contender and pinning,
// the median of each payload size with its min–max over the rounds as a
// whisker. Both axes are logarithmic: payload sizes are powers of 4, and
// MB/s spans two decades, from latency-bound small payloads to copy-bound
// large ones; on a log scale a ratio to the floor is the same distance at
// every height.

// point is one payload size of a series: its median and min–max.
type point struct {
	x                float64
	median, min, max float64
}

// series is one line of a chart, its points in increasing x.
type series struct {
	name   string
	color  string
	dashed bool
	points []point
}

// tick is a labelled position on an axis.
type tick struct {
	value float64
	label string
}

// chart is what the SVG shows.
type chart struct {
	title, subtitle string
	xLabel, yLabel  string
	xTicks          []tick // log2 scale
	series          []series
}

// The SVG's geometry, in pixels: the plot area and the margins around it
// (the legend is in the right one).
const (
	plotWidth, plotHeight    = 640, 400
	marginLeft, marginRight  = 80, 230
	marginTop, marginBottom  = 70, 60
	svgWidth, svgHeight      = marginLeft + plotWidth + marginRight, marginTop + plotHeight + marginBottom
	dodge                    = 5 // horizontal offset between series, so that whiskers do not hide each other
	whiskerCap, pointRadius  = 3, 3
	legendLine, legendHeight = 28, 20
)

// contenderColors are the series' colours by contender; others are grey.
var contenderColors = map[string]string{"floor": "#4c72b0", "pypool": "#dd8452"}

func colorOf(contender string) string {
	if c, ok := contenderColors[contender]; ok {
		return c
	}
	return "#777777"
}

// writePlot writes the sweep's results of r to path as SVG.
func writePlot(path string, r report) error {
	c := sweepChart(r)
	if len(c.series) == 0 {
		return fmt.Errorf("-plot %s: no sweep results to plot", path)
	}
	return os.WriteFile(path, []byte(c.svg()), 0o644)
}

// sweepChart makes the chart of r's sweep results: one series per
// contender and pinning, in the order they first appear.
func sweepChart(r report) chart {
	m := r.Machine
	c := chart{
		title:    "Bytes echo: MB/s by payload size, pypool against the floor",
		subtitle: fmt.Sprintf("%s, %d CPUs; Python %s (codec %s); %s%s", m.CPU, m.CPUs, m.Python, m.PyCodec, m.Go, floorPipeNote(m)),
		xLabel:   "payload size (log scale)",
		yLabel:   "MB/s: size / median round trip (log scale)",
	}
	index := map[string]int{}
	seen := map[int]bool{}
	for _, x := range r.Results {
		if x.Scenario != "sweep" {
			continue
		}
		name := x.Contender
		if x.Pinned {
			name += " (pinned)"
		}
		i, ok := index[name]
		if !ok {
			i, index[name] = len(c.series), len(c.series)
			c.series = append(c.series, series{name: name, color: colorOf(x.Contender), dashed: x.Pinned})
		}
		c.series[i].points = append(c.series[i].points, point{float64(x.Bytes), x.Median, x.Min, x.Max})
		if !seen[x.Bytes] {
			seen[x.Bytes] = true
			c.xTicks = append(c.xTicks, tick{float64(x.Bytes), sizeName(x.Bytes)})
		}
	}
	for _, sr := range c.series {
		sort.Slice(sr.points, func(i, j int) bool { return sr.points[i].x < sr.points[j].x })
	}
	sort.Slice(c.xTicks, func(i, j int) bool { return c.xTicks[i].value < c.xTicks[j].value })
	return c
}

// svg renders the chart.
func (c chart) svg() string {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		svgWidth, svgHeight, svgWidth, svgHeight)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", svgWidth, svgHeight)
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="16" font-weight="bold">%s</text>`+"\n", marginLeft, esc(c.title))
	fmt.Fprintf(&b, `<text x="%d" y="44" fill="#555">%s</text>`+"\n", marginLeft, esc(c.subtitle))
	s := c.scales()
	c.axes(&b, s)
	for i, sr := range c.series {
		sr.draw(&b, s, float64(i)-float64(len(c.series)-1)/2)
	}
	c.legend(&b)
	b.WriteString("</svg>\n")
	return b.String()
}

// scales maps data to pixels: log2 of x, log10 of y.
type scales struct {
	x0, x1 float64 // log2 of the x range
	y0, y1 float64 // log10 of the y range, whole decades
}

func (c chart) scales() scales {
	s := scales{x0: math.Inf(1), x1: math.Inf(-1), y0: math.Inf(1), y1: math.Inf(-1)}
	for _, sr := range c.series {
		for _, p := range sr.points {
			s.x0, s.x1 = math.Min(s.x0, math.Log2(p.x)), math.Max(s.x1, math.Log2(p.x))
			s.y0, s.y1 = math.Min(s.y0, math.Log10(p.min)), math.Max(s.y1, math.Log10(p.max))
		}
	}
	if math.IsInf(s.x0, 0) || math.IsInf(s.y0, 0) || math.IsNaN(s.y0) { // no points, or a figure of 0
		return scales{x0: 0, x1: 1, y0: 0, y1: 1}
	}
	s.x0, s.x1 = s.x0-0.5, s.x1+0.5 // room for the first and last whiskers
	s.y0, s.y1 = math.Floor(s.y0), math.Ceil(s.y1)
	if s.y1 == s.y0 {
		s.y1++
	}
	return s
}

func (s scales) px(x float64) float64 {
	return marginLeft + (math.Log2(x)-s.x0)/(s.x1-s.x0)*plotWidth
}

func (s scales) py(y float64) float64 {
	return marginTop + plotHeight - (math.Log10(y)-s.y0)/(s.y1-s.y0)*plotHeight
}

// yTicks are 1, 2 and 5 times each power of 10 in the y range.
func (s scales) yTicks() []float64 {
	var ts []float64
	for e := s.y0; e <= s.y1; e++ {
		for _, m := range []float64{1, 2, 5} {
			if v := m * math.Pow(10, e); math.Log10(v) <= s.y1+1e-9 {
				ts = append(ts, v)
			}
		}
	}
	return ts
}

// axes draws the frame, the grid, the ticks' labels and the axes' labels.
func (c chart) axes(b *strings.Builder, s scales) {
	left, right := float64(marginLeft), float64(marginLeft+plotWidth)
	top, bottom := float64(marginTop), float64(marginTop+plotHeight)
	for _, t := range c.xTicks {
		x := s.px(t.value)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e5e5e5"/>`+"\n", x, top, x, bottom)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x, bottom+18, esc(t.label))
	}
	for _, v := range s.yTicks() {
		y := s.py(v)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e5e5e5"/>`+"\n", left, y, right, y)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="end" dominant-baseline="middle">%s</text>`+"\n",
			left-6, y, strconv.FormatFloat(v, 'f', -1, 64))
	}
	fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%d" height="%d" fill="none" stroke="#333"/>`+"\n", left, top, plotWidth, plotHeight)
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", left+plotWidth/2, bottom+44, esc(c.xLabel))
	fmt.Fprintf(b, `<text transform="translate(%d %.1f) rotate(-90)" text-anchor="middle">%s</text>`+"\n",
		22, top+plotHeight/2, esc(c.yLabel))
}

// draw draws the series' line through its medians, a dot on each median
// and its min–max whisker, shifted by offset times dodge pixels.
func (sr series) draw(b *strings.Builder, s scales, offset float64) {
	dash := ""
	if sr.dashed {
		dash = ` stroke-dasharray="6 4"`
	}
	var pts []string
	for _, p := range sr.points {
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", s.px(p.x)+offset*dodge, s.py(p.median)))
	}
	fmt.Fprintf(b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s><title>%s</title></polyline>`+"\n",
		strings.Join(pts, " "), sr.color, dash, esc(sr.name))
	for _, p := range sr.points {
		x, lo, hi := s.px(p.x)+offset*dodge, s.py(p.min), s.py(p.max)
		fmt.Fprintf(b, `<path d="M%.1f %.1fV%.1fM%.1f %.1fh%dM%.1f %.1fh%d" stroke="%s" fill="none"/>`+"\n",
			x, lo, hi, x-whiskerCap, lo, 2*whiskerCap, x-whiskerCap, hi, 2*whiskerCap, sr.color)
		fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="%d" fill="%s"><title>%s %s: %s MB/s (%s–%s)</title></circle>`+"\n",
			x, s.py(p.median), pointRadius, sr.color, esc(sr.name), esc(sizeName(int(p.x))), num(p.median), num(p.min), num(p.max))
	}
}

// legend names the series in the right margin, with a sample of each line.
func (c chart) legend(b *strings.Builder) {
	x := float64(marginLeft + plotWidth + 16)
	for i, sr := range c.series {
		y := float64(marginTop + 10 + i*legendHeight)
		dash := ""
		if sr.dashed {
			dash = ` stroke-dasharray="6 4"`
		}
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"%s/>`+"\n",
			x, y, x+legendLine, y, sr.color, dash)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" dominant-baseline="middle">%s</text>`+"\n", x+legendLine+6, y, esc(sr.name))
	}
	y := float64(marginTop + 10 + len(c.series)*legendHeight + 10)
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" fill="#555">dots: median of the rounds</text>`+"\n", x, y)
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" fill="#555">whiskers: min–max</text>`+"\n", x, y+16)
}

// esc escapes text for SVG.
func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
