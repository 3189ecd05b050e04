package report

import (
	"bytes"
	"fmt"
	"html/template"
	"image/color"
	"math"
	"regexp"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Chart is one plot on a page: drawn by gonum.org/v1/plot, written as
// inline SVG that the page's style stretches to its full width.
type Chart struct {
	ID, Title string
	SVG       template.HTML
	// Lines holds each named series as drawn, in data units, for tests
	// and for the page's legend order.
	Lines map[string]plotter.XYs
	// Legend is written as HTML under the plot, where it can never hide
	// a line.
	Legend []LegendEntry
	plot   *plot.Plot
}

// LegendEntry names one series with its colour and dash.
type LegendEntry struct {
	Name, Color    string
	Dashed, Marked bool
}

// The series' colours, the same on every page.
var (
	blue   = color.RGBA{0x1f, 0x5f, 0xbf, 0xff}
	orange = color.RGBA{0xd9, 0x48, 0x0f, 0xff}
	grey   = color.RGBA{0x8a, 0x94, 0xa3, 0xff}
	green  = color.RGBA{0x2b, 0x8a, 0x3e, 0xff}
	red    = color.RGBA{0xc9, 0x2a, 0x2a, 0xff}
	violet = color.RGBA{0x70, 0x48, 0xe8, 0xff}
	grid   = color.RGBA{0xe6, 0xe9, 0xee, 0xff}
)

// Page plots are 720 × 300 points of SVG, scaled to the page's width
// (about 1,050 pixels), so 12-point text reads at about 17 pixels.
const chartWidth, chartHeight = 720, 300

var sans = font.Font{Typeface: "Liberation", Variant: "Sans"}

// newChart starts a plot with the house style: sans-serif text, a light
// grid, the legend top left.
func newChart(id, title, xLabel, yLabel string) *Chart {
	p := plot.New()
	for _, t := range []*draw.TextStyle{&p.X.Label.TextStyle, &p.Y.Label.TextStyle, &p.X.Tick.Label, &p.Y.Tick.Label} {
		t.Font = font.From(sans, t.Font.Size)
	}
	p.X.Label.Text, p.Y.Label.Text = xLabel, yLabel
	p.X.Label.TextStyle.Font.Size, p.Y.Label.TextStyle.Font.Size = 12, 12
	p.X.Tick.Label.Font.Size, p.Y.Tick.Label.Font.Size = 11, 11
	g := plotter.NewGrid()
	g.Vertical.Color, g.Horizontal.Color = grid, grid
	p.Add(g)
	return &Chart{ID: id, Title: title, Lines: map[string]plotter.XYs{}, plot: p}
}

// logX puts the x axis (users, replicas, cores) on a log scale with a
// labelled tick at each value measured, so 1, 2, 4 and 8 sit evenly
// apart instead of crowding the left edge.
func (c *Chart) logX(values []float64) {
	lo, hi := math.Inf(1), math.Inf(-1)
	var ticks plot.ConstantTicks
	seen := map[float64]bool{}
	for _, v := range values {
		if v <= 0 || seen[v] {
			continue
		}
		seen[v] = true
		lo, hi = math.Min(lo, v), math.Max(hi, v)
		ticks = append(ticks, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'g', 4, 64)})
	}
	if len(ticks) == 0 {
		return
	}
	if hi <= lo {
		lo, hi = lo/2, hi*2
	}
	c.plot.X.Scale = plot.LogScale{}
	c.plot.X.Tick.Marker = ticks
	c.plot.X.Min, c.plot.X.Max = lo/math.Pow(hi/lo, 0.03), hi*math.Pow(hi/lo, 0.03)
}

// percentY labels the y axis in percent; the values plotted are percent.
func (c *Chart) percentY(max float64) {
	c.plot.Y.Min, c.plot.Y.Max = 0, max
	c.plot.Y.Tick.Marker = suffixTicks{"%"}
}

// suffixTicks are plainTicks with a unit after each label.
type suffixTicks struct{ unit string }

func (s suffixTicks) Ticks(min, max float64) []plot.Tick {
	ticks := plainTicks{}.Ticks(min, max)
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label += s.unit
		}
	}
	return ticks
}

// plainTicks labels about five round values (1, 2 or 5 times a power of
// ten apart, never finer than Min) in full: "1500", not "1.5e+03" or
// "1.5k".
type plainTicks struct{ Min float64 }

func (t plainTicks) Ticks(min, max float64) []plot.Tick {
	if !(max > min) {
		return []plot.Tick{{Value: min, Label: strconv.FormatFloat(min, 'f', -1, 64)}}
	}
	raw := (max - min) / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := 10 * mag
	for _, m := range []float64{1, 2, 5} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	step = math.Max(step, t.Min)
	var ticks []plot.Tick
	for v := math.Ceil(min/step) * step; v <= max+step*1e-9; v += step {
		v = math.Round(v/step) * step // no 0.30000000000000004
		ticks = append(ticks, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'f', -1, 64)})
		// a minor tick half way, unlabelled
		if h := v + step/2; h <= max {
			ticks = append(ticks, plot.Tick{Value: h})
		}
	}
	return ticks
}

// fromZeroY starts the y axis at zero, with room above the highest value.
func (c *Chart) fromZeroY(max float64) {
	if !(max > 0) || math.IsInf(max, 0) {
		max = 1
	}
	c.plot.Y.Min, c.plot.Y.Max = 0, max*1.08
	c.plot.Y.Tick.Marker = plainTicks{}
}

// line adds a named series drawn as a line, with markers at its points
// when marked; points outside a log axis (zero, negative) are left out.
func (c *Chart) line(name string, pts plotter.XYs, col color.Color, dashed, marked bool) {
	pts = c.drawable(pts)
	if len(pts) == 0 {
		return
	}
	c.Lines[name] = pts
	l, err := plotter.NewLine(pts)
	if err != nil {
		return // NaN or infinite points: nothing sensible to draw
	}
	l.Color, l.Width = col, vg.Points(2)
	if dashed {
		l.Dashes, l.Width = []vg.Length{vg.Points(6), vg.Points(4)}, vg.Points(1.5)
	}
	c.plot.Add(l)
	r, g, b, _ := col.RGBA()
	c.Legend = append(c.Legend, LegendEntry{Name: name, Color: fmt.Sprintf("#%02x%02x%02x", r>>8, g>>8, b>>8), Dashed: dashed, Marked: marked})
	if !marked {
		return
	}
	s, err := plotter.NewScatter(pts)
	if err != nil {
		return
	}
	s.GlyphStyle = draw.GlyphStyle{Color: col, Radius: vg.Points(3.5), Shape: draw.CircleGlyph{}}
	c.plot.Add(s)
}

func (c *Chart) drawable(pts plotter.XYs) plotter.XYs {
	_, logX := c.plot.X.Scale.(plot.LogScale)
	_, logY := c.plot.Y.Scale.(plot.LogScale)
	var out plotter.XYs
	for _, p := range pts {
		if math.IsNaN(p.X) || math.IsNaN(p.Y) || math.IsInf(p.X, 0) || math.IsInf(p.Y, 0) || (logX && p.X <= 0) || (logY && p.Y <= 0) {
			continue
		}
		out = append(out, p)
	}
	return out
}

// curve samples f at n points spread evenly on a log scale from lo to hi.
func curve(lo, hi float64, n int, f func(float64) float64) plotter.XYs {
	pts := make(plotter.XYs, 0, n+1)
	for i := 0; i <= n; i++ {
		x := lo * math.Pow(hi/lo, float64(i)/float64(n))
		pts = append(pts, plotter.XY{X: x, Y: f(x)})
	}
	return pts
}

// svgPrelude is what vgsvg writes before the <svg> element: an XML
// declaration and a comment, neither of which belongs inside HTML.
var svgPrelude = regexp.MustCompile(`(?s)^.*?(<svg )`)

// render draws the chart as SVG for inline use.
func (c *Chart) render() error {
	wt, err := c.plot.WriterTo(chartWidth, chartHeight, "svg")
	if err != nil {
		return fmt.Errorf("plot %s: %w", c.ID, err)
	}
	var b bytes.Buffer
	if _, err := wt.WriteTo(&b); err != nil {
		return fmt.Errorf("plot %s: %w", c.ID, err)
	}
	svg := svgPrelude.ReplaceAllString(b.String(), `<svg class="plot" id="plot-`+c.ID+`" role="img" aria-label="`+template.HTMLEscapeString(c.Title)+`" preserveAspectRatio="xMinYMin meet" `)
	c.SVG = template.HTML(svg) // drawn by gonum/plot from numbers; text is escaped by its SVG writer
	return nil
}

// renderAll renders every chart, stopping at the first that fails.
func renderAll(charts ...*Chart) ([]*Chart, error) {
	for _, c := range charts {
		if err := c.render(); err != nil {
			return nil, err
		}
	}
	return charts, nil
}

// logY puts the y axis on a log scale from lo to hi, labelled at 1, 2 and
// 5 times a power of ten: a rate that grows in proportion to the x value
// is then a straight line across the whole plot.
func (c *Chart) logY(lo, hi float64) {
	if !(lo > 0) || !(hi > lo) {
		c.fromZeroY(hi)
		return
	}
	c.plot.Y.Scale = plot.LogScale{}
	c.plot.Y.Tick.Marker = logTicks{}
	c.plot.Y.Min, c.plot.Y.Max = lo/1.15, hi*1.15
}

// logTicks labels 1, 2 and 5 times each power of ten, and marks the
// other integers of each decade without a label; over less than a decade
// it labels every integer and 1.5 of each decade, so a short axis still
// has figures to read.
type logTicks struct{}

func (logTicks) Ticks(min, max float64) []plot.Tick {
	all := max/min < 10
	var ticks []plot.Tick
	for decade := math.Pow(10, math.Floor(math.Log10(min))); decade <= max; decade *= 10 {
		for _, m := range []float64{1, 1.5, 2, 3, 4, 5, 6, 7, 8, 9} {
			v := m * decade
			if v < min || v > max || (m == 1.5 && !all) {
				continue
			}
			t := plot.Tick{Value: v}
			if all || m == 1 || m == 2 || m == 5 {
				t.Label = strconv.FormatFloat(v, 'f', -1, 64)
			}
			ticks = append(ticks, t)
		}
	}
	return ticks
}
