// Package plots draws the PNG pictures of the results: compare's metrics
// against blocks removed and analyze's NPIB heatmap.
package plots

import (
	"fmt"
	"image/color"
	"math"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/compare"
	"github.com/mka-gguf/mka-gguf/gguf"
)

// Compare draws each metric against blocks removed: ppl.png
// (log axis), kld.png and, with --choices, accuracy.png (with the chance
// level), each with the original as a reference line and standard errors
// as error bars. paths maps each file name to the path it is written to
// (a declared output's temporary file); names not in it are not drawn.
func Compare(paths map[string]string, res *compare.Results, ms []string, title string) error {
	o := res.Original
	for _, mt := range metrics(res) {
		path, ok := paths[mt.file]
		if !ok {
			continue
		}
		ref, refErr := mt.value(o)
		var series []metricSeries
		for _, m := range ms {
			// Every line starts at the original, 0 blocks removed.
			s := metricSeries{name: m, x: []float64{0}, y: []float64{ref}, err: []float64{refErr}}
			for _, r := range res.Rows {
				if r.Method == m {
					v, e := mt.value(r)
					s.x, s.y, s.err = append(s.x, float64(r.Removed)), append(s.y, v), append(s.err, e)
				}
			}
			series = append(series, s)
		}
		p, err := metricPlot(mt.title+" — "+title, mt.axis, mt.log, series, mt.refs)
		if err != nil {
			return err
		}
		if err := savePNG(p, path, 7*vg.Inch, 4.5*vg.Inch); err != nil {
			return err
		}
	}
	return nil
}

// metric is one of compare's pictures.
type metric struct {
	file, title, axis string
	log               bool
	value             func(r compare.Row) (v, err float64)
	refs              []reference // the original's value first
}

// reference is a horizontal line across the axes: the original's value,
// or the chance level of a multiple-choice test.
type reference struct {
	y     float64
	label string
	style []vg.Length // dashes
}

var (
	dashed = []vg.Length{vg.Points(5), vg.Points(3)}
	dotted = []vg.Length{vg.Points(1.5), vg.Points(2.5)}
)

// metrics are the pictures of res: perplexity, KL divergence and, with
// --choices, accuracy.
func metrics(res *compare.Results) []metric {
	o := res.Original
	ms := []metric{
		{"ppl.png", "Perplexity", "perplexity (held-out text)", true,
			func(r compare.Row) (float64, float64) { return r.PPL, r.StdErr },
			[]reference{{o.PPL, fmt.Sprintf("original (%.2f)", o.PPL), dashed}}},
		{"kld.png", "Mean KL divergence from the original", "mean KLD (nats per token)", false,
			func(r compare.Row) (float64, float64) { return r.KLD, r.KLDErr },
			[]reference{{0, "original (0)", dashed}}},
	}
	if res.Choices != "" {
		refs := []reference{{o.AccNorm, fmt.Sprintf("original (%.1f %%)", o.AccNorm), dashed}}
		if o.Chance > 0 {
			refs = append(refs, reference{o.Chance, fmt.Sprintf("chance (%.1f %%)", o.Chance), dotted})
		}
		ms = append(ms, metric{"accuracy.png", "Cloze accuracy (per-token mean)", "accuracy, %", false,
			func(r compare.Row) (float64, float64) { return r.AccNorm, r.AccNormErr }, refs})
	}
	return ms
}

// metricSeries is one method's values (with standard errors) against
// blocks removed.
type metricSeries struct {
	name      string
	x, y, err []float64
}

// metricPlot draws series as lines with points and error bars (each
// series shifted a little sideways so that bars at one x do not hide each
// other), the reference lines from the left axis to the right end of the
// x axis, integer x ticks and a y axis with several labelled ticks (log
// with log); both axes leave room around every point, and the top leaves
// room for the legend.
func metricPlot(title, yLabel string, log bool, series []metricSeries, refs []reference) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.Title.Padding = vg.Points(6)
	p.X.Label.Text = "blocks removed"
	p.Y.Label.Text = yLabel
	lo, hi, xmax := refs[0].y, refs[0].y, 1.0
	for _, r := range refs {
		lo, hi = math.Min(lo, r.y), math.Max(hi, r.y)
	}
	for _, s := range series {
		for i := range s.y {
			lo, hi = math.Min(lo, s.y[i]-s.err[i]), math.Max(hi, s.y[i]+s.err[i])
			xmax = math.Max(xmax, s.x[i])
		}
	}
	p.X.Min, p.X.Max = -0.3, xmax+0.3
	for _, r := range refs {
		ln, err := plotter.NewLine(plotter.XYs{{X: p.X.Min, Y: r.y}, {X: p.X.Max, Y: r.y}})
		if err != nil {
			return nil, err
		}
		ln.Dashes, ln.Color, ln.Width = r.style, color.Gray{Y: 90}, vg.Points(1.2)
		p.Add(ln)
		p.Legend.Add(r.label, ln)
	}
	for i, s := range series {
		pts := make(plotter.XYs, len(s.x))
		errs := make(plotter.YErrors, len(s.x))
		dx := 0.04 * (float64(i) - float64(len(series)-1)/2)
		for k := range s.x {
			pts[k] = plotter.XY{X: s.x[k] + dx, Y: s.y[k]}
			errs[k].Low, errs[k].High = s.err[k], s.err[k]
		}
		l, sc, err := plotter.NewLinePoints(pts)
		if err != nil {
			return nil, err
		}
		l.Color, sc.Color = plotutil.Color(i), plotutil.Color(i)
		sc.Shape = plotutil.Shape(i)
		l.Width = vg.Points(1.5)
		eb, err := plotter.NewYErrorBars(struct {
			plotter.XYs
			plotter.YErrors
		}{pts, errs})
		if err != nil {
			return nil, err
		}
		eb.Color = plotutil.Color(i)
		eb.CapWidth = vg.Points(5)
		p.Add(l, sc, eb)
		p.Legend.Add(s.name, l, sc)
	}
	p.X.Tick.Marker = intTicks{}
	legendRoom := 0.06 + 0.07*float64(len(series)+len(refs)) // of the axis, for the legend lines
	if log {
		lo = math.Max(lo, hi*1e-6)
		r := hi / lo
		p.Y.Min, p.Y.Max = lo/math.Pow(r, 0.06), hi*math.Pow(r, legendRoom)
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = niceLogTicks{}
	} else {
		span := math.Max(hi-lo, 1e-9)
		p.Y.Min, p.Y.Max = lo-0.06*span, hi+legendRoom*span
		if lo >= 0 && p.Y.Min < 0 {
			p.Y.Min = -0.03 * span
		}
		p.Y.Tick.Marker = niceLinTicks{}
	}
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.XOffs, p.Legend.YOffs = vg.Points(8), -vg.Points(6)
	return p, nil
}

// intTicks labels every whole number in the range (every other one past 12).
type intTicks struct{}

// Ticks implements plot.Ticker.
func (intTicks) Ticks(lo, hi float64) []plot.Tick {
	step := 1
	if hi-lo > 12 {
		step = int(math.Ceil((hi - lo) / 12))
	}
	var t []plot.Tick
	for v := int(math.Ceil(lo)); float64(v) <= hi; v++ {
		if v%step == 0 {
			t = append(t, plot.Tick{Value: float64(v), Label: strconv.Itoa(v)})
		} else {
			t = append(t, plot.Tick{Value: float64(v)})
		}
	}
	return t
}

// niceLinTicks labels a linear axis every 1, 2, 2.5 or 5 × 10^k, the
// step that gives 5 to 12 labels.
type niceLinTicks struct{}

// Ticks implements plot.Ticker.
func (niceLinTicks) Ticks(lo, hi float64) []plot.Tick {
	if !(hi > lo) {
		return nil
	}
	raw := (hi - lo) / 8
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := 10 * mag
	for _, m := range []float64{1, 2, 2.5, 5} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var t []plot.Tick
	for v := math.Ceil(lo/step) * step; v <= hi+step*1e-9; v += step {
		if math.Abs(v) < step*1e-9 {
			v = 0
		}
		t = append(t, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'g', 6, 64)})
		if minor := v + step/2; minor < hi {
			t = append(t, plot.Tick{Value: minor})
		}
	}
	return t
}

// niceLogTicks labels a log axis at 1-2-5 steps of each decade, or finer
// (1, 1.5, 2, 3, 5, 7; then 1, 1.2, 1.5, 2, 2.5, 3 … 9) until at least four
// labels fall in the range, or at linear steps in a range too narrow for
// that; minor ticks mark every integer mantissa.
type niceLogTicks struct{}

// Ticks implements plot.Ticker.
func (niceLogTicks) Ticks(lo, hi float64) []plot.Tick {
	if !(lo > 0) || !(hi > lo) {
		return nil
	}
	sets := [][]float64{{1, 2, 5}, {1, 1.5, 2, 3, 5, 7}, {1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9}}
	d0, d1 := int(math.Floor(math.Log10(lo))), int(math.Ceil(math.Log10(hi)))
	var major []float64
	for _, set := range sets {
		major = major[:0]
		for d := d0; d <= d1; d++ {
			for _, m := range set {
				if v := m * math.Pow(10, float64(d)); v >= lo && v <= hi {
					major = append(major, v)
				}
			}
		}
		if len(major) >= 4 {
			break
		}
	}
	if len(major) < 4 { // under a factor of about 2: linear steps read better
		return niceLinTicks{}.Ticks(lo, hi)
	}
	var t []plot.Tick
	for _, v := range major {
		t = append(t, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'g', 4, 64)})
	}
	for d := d0; d <= d1; d++ {
		for m := 1; m <= 9; m++ {
			if v := float64(m) * math.Pow(10, float64(d)); v >= lo && v <= hi {
				t = append(t, plot.Tick{Value: v})
			}
		}
	}
	return t
}

// margin is the blank border around every picture.
const margin = 0.15 * vg.Inch

// savePNG writes p as a w×h PNG with a blank margin around it, atomically.
func savePNG(p *plot.Plot, path string, w, h vg.Length) error {
	img := vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(96))
	dc := draw.New(img)
	p.Draw(draw.Crop(dc, margin, -margin, margin, -margin))
	return writePNG(img, path)
}

// writePNG writes the picture img to path, atomically.
func writePNG(img *vgimg.Canvas, path string) error {
	af, err := gguf.CreateAtomic(path)
	if err != nil {
		return err
	}
	defer af.Abort()
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(af); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return af.Commit()
}
