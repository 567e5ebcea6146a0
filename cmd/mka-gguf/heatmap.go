package main

import (
	"fmt"
	"math"

	"gonum.org/v1/plot"
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

// writeHeatmap draws the NPIB matrix with labelled layer axes and a colour
// scale, as a PNG.
func writeHeatmap(path string, a *analysis.Analysis, title string) error {
	cm := moreland.SmoothBlueRed()
	lo := math.Inf(1)
	for _, row := range a.NPIB {
		for _, v := range row {
			lo = math.Min(lo, v)
		}
	}
	cm.SetMin(math.Min(lo, 0.999))
	cm.SetMax(1)

	p := plot.New()
	p.Title.Text = fmt.Sprintf("NPIB similarity between layers — %s", title)
	h := plotter.NewHeatMap(grid{a.NPIB}, cm.Palette(255))
	p.Add(h)
	p.X.Tick.Marker = layerTicks{names: a.Layers}
	p.Y.Tick.Marker = layerTicks{names: a.Layers, reverse: true}
	p.X.Tick.Label.Rotation = math.Pi / 4
	p.X.Tick.Label.XAlign = draw.XRight
	p.X.Label.Text = "layer (input = embeddings, blk.i = output of block i)"
	n := float64(len(a.Layers))
	p.X.Min, p.X.Max = -0.5, n-0.5
	p.Y.Min, p.Y.Max = -0.5, n-0.5

	bar := plot.New()
	bar.Title.Text = "NPIB"
	bar.HideX()
	bar.Add(&plotter.ColorBar{ColorMap: cm, Vertical: true})

	const w, hgt = 8 * vg.Inch, 6.5 * vg.Inch
	img := vgimg.NewWith(vgimg.UseWH(w, hgt), vgimg.UseDPI(120))
	dc := draw.New(img)
	left := draw.Crop(dc, 0, -1.2*vg.Inch, 0, 0)
	right := draw.Crop(dc, w-1.1*vg.Inch, 0, 0.5*vg.Inch, -0.4*vg.Inch)
	p.Draw(left)
	bar.Draw(right)

	af, err := createAtomic(path)
	if err != nil {
		return err
	}
	defer af.Abort()
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(af); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return af.Commit()
}
