package plots

import (
	"fmt"
	"image/color"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/palette"
	"gonum.org/v1/plot/palette/moreland"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/analysis"
)

// grid is a square matrix as a plotter.GridXYZ; row 0 is drawn at the top.
type grid struct{ m [][]float64 }

func (g grid) Dims() (c, r int)   { return len(g.m), len(g.m) }
func (g grid) Z(c, r int) float64 { return g.m[len(g.m)-1-r][c] }
func (g grid) X(c int) float64    { return float64(c) }
func (g grid) Y(r int) float64    { return float64(r) }

// layerTicks labels integer positions with layer names (reversed for the
// y axis, whose row 0 is at the top).
type layerTicks struct {
	names   []string
	reverse bool
}

func (t layerTicks) Ticks(min, max float64) []plot.Tick {
	var ticks []plot.Tick
	for i, n := range t.names {
		v := float64(i)
		if t.reverse {
			v = float64(len(t.names) - 1 - i)
		}
		ticks = append(ticks, plot.Tick{Value: v, Label: n})
	}
	return ticks
}

// heatmapCellValues is the largest matrix whose values are printed in its
// cells.
const heatmapCellValues = 16

// Heatmap draws the NPIB matrix with labelled layer axes and a colour
// scale, as a PNG. The colours span the off-diagonal values (the diagonal,
// always 1, is drawn grey), so that the similarities that decide a merge
// are told apart; matrices of up to heatmapCellValues layers have their
// values printed in the cells.
func Heatmap(path string, a *analysis.Analysis, title string) error {
	cm := moreland.SmoothBlueRed()
	lo, hi := offDiagonalRange(a.NPIB)
	cm.SetMin(lo)
	cm.SetMax(hi)

	p := plot.New()
	p.Title.Text = fmt.Sprintf("NPIB similarity between layers — %s", title)
	h := plotter.NewHeatMap(grid{a.NPIB}, cm.Palette(255))
	h.Min, h.Max = lo, hi
	h.Overflow, h.Underflow = color.Gray{Y: 200}, color.Gray{Y: 200}
	p.Add(h)
	n := len(a.NPIB)
	if n <= heatmapCellValues {
		labels, err := cellLabels(a.NPIB, cm, n)
		if err != nil {
			return err
		}
		p.Add(labels)
	}
	p.X.Tick.Marker = layerTicks{names: a.Layers}
	p.Y.Tick.Marker = layerTicks{names: a.Layers, reverse: true}
	p.X.Tick.Label.Rotation = math.Pi / 4
	p.X.Tick.Label.XAlign = draw.XRight
	p.X.Label.Text = "layer (input = embeddings, blk.i = output of block i; diagonal = 1, grey)"
	fn := float64(len(a.Layers))
	p.X.Min, p.X.Max = -0.5, fn-0.5
	p.Y.Min, p.Y.Max = -0.5, fn-0.5

	bar := plot.New()
	bar.Title.Text = "NPIB"
	bar.HideX()
	bar.Add(&plotter.ColorBar{ColorMap: cm, Vertical: true})
	bar.Y.Tick.Marker = niceLinTicks{}

	const w, hgt = 8 * vg.Inch, 6.5 * vg.Inch
	img := vgimg.NewWith(vgimg.UseWH(w, hgt), vgimg.UseDPI(120))
	dc := draw.Crop(draw.New(img), margin, -margin, margin, -margin)
	p.Title.Padding = vg.Points(6)
	left := draw.Crop(dc, 0, -1.2*vg.Inch, 0, 0)
	right := draw.Crop(dc, w-2*margin-1.1*vg.Inch, -0.2*vg.Inch, 0.5*vg.Inch, -0.4*vg.Inch)
	p.Draw(left)
	bar.Draw(right)
	return writePNG(img, path)
}

// offDiagonalRange returns the smallest and largest off-diagonal values of
// m (a little apart when they are equal, or [0, 1] without any).
func offDiagonalRange(m [][]float64) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for i, row := range m {
		for j, v := range row {
			if i != j && !math.IsNaN(v) {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	if lo > hi {
		return 0, 1
	}
	if hi-lo < 1e-6 {
		lo, hi = lo-0.005, hi+0.005
	}
	return lo, hi
}

// cellLabels prints every value of m, two decimals, at its cell (row 0 at
// the top), in black or white as the cell's colour needs.
func cellLabels(m [][]float64, cm palette.ColorMap, n int) (*plotter.Labels, error) {
	var xyl plotter.XYLabels
	for i, row := range m {
		for j, v := range row {
			xyl.XYs = append(xyl.XYs, plotter.XY{X: float64(j), Y: float64(n - 1 - i)})
			xyl.Labels = append(xyl.Labels, fmt.Sprintf("%.2f", v))
		}
	}
	labels, err := plotter.NewLabels(xyl)
	if err != nil {
		return nil, err
	}
	size := vg.Points(math.Max(6, math.Min(11, 110/float64(n))))
	for k := range labels.TextStyle {
		st := &labels.TextStyle[k]
		st.Font.Size = size
		st.XAlign, st.YAlign = draw.XCenter, draw.YCenter
		v := m[k/n][k%n]
		st.Color = color.Black
		if c, err := cm.At(v); err == nil && luminance(c) < 0.45 {
			st.Color = color.White
		}
	}
	return labels, nil
}

// luminance returns the relative brightness of c in [0, 1].
func luminance(c color.Color) float64 {
	r, g, b, _ := c.RGBA()
	return (0.2126*float64(r) + 0.7152*float64(g) + 0.0722*float64(b)) / 0xffff
}
