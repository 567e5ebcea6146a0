package plots

import (
	"bytes"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/analysis"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/compare"
)

// TestNiceLogTicks: the range of the issue (5.8–91, where the old plot
// labelled only "10") gets at least four labels, all inside the range.
func TestNiceLogTicks(t *testing.T) {
	for _, r := range [][2]float64{{5.8, 91}, {6.2, 9.9}, {1.01, 1.2}, {3, 3000}, {0.02, 0.5}} {
		var labels []float64
		for _, tk := range (niceLogTicks{}).Ticks(r[0], r[1]) {
			if tk.Value < r[0] || tk.Value > r[1] {
				t.Fatalf("range %v: tick %g outside", r, tk.Value)
			}
			if tk.Label != "" {
				labels = append(labels, tk.Value)
			}
		}
		if len(labels) < 4 && r[1]/r[0] > 1.3 {
			t.Fatalf("range %v: labels %v", r, labels)
		}
		if len(labels) < 2 {
			t.Fatalf("range %v: labels %v", r, labels)
		}
	}
	for _, r := range [][2]float64{{0, 2.9}, {22, 47}, {-0.1, 0.004}} {
		n := 0
		for _, tk := range (niceLinTicks{}).Ticks(r[0], r[1]) {
			if tk.Label != "" {
				n++
			}
		}
		if n < 4 || n > 12 {
			t.Fatalf("linear range %v: %d labels", r, n)
		}
	}
}

// TestComparePlots draws the three plots from results; MKA_TEST_PLOTS
// names a folder to keep them in for a look.
func TestComparePlots(t *testing.T) {
	dir := os.Getenv("MKA_TEST_PLOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	res := compare.Results{Text: "heldout.txt", Choices: "cloze.jsonl",
		Original: compare.Row{Method: "original", PPL: 6.24, StdErr: 0.09, Figures: compare.Figures{SameTop: 100, AccNorm: 52, AccNormErr: 2.8, Chance: 25}}}
	ppl := map[string][]float64{"mka": {7.31, 9.94, 15.05, 37.55}, "prune-bi": {7.31, 9.94, 17.91, 61.41}, "prune-reverse": {10.8, 16.36, 24.96, 91.2}}
	for m, v := range ppl {
		for i, p := range v {
			n := []int{1, 2, 3, 5}[i]
			res.Rows = append(res.Rows, compare.Row{Method: m, Removed: n, PPL: p, StdErr: p / 60,
				Figures: compare.Figures{KLD: p / 20, KLDErr: p / 800, SameTop: 100 - 6*p/10, AccNorm: 52 - p/2, AccNormErr: 2.8}})
		}
	}
	paths := map[string]string{}
	for _, f := range []string{"ppl.png", "kld.png", "accuracy.png"} {
		paths[f] = filepath.Join(dir, f)
	}
	if err := Compare(paths, &res, []string{"mka", "prune-reverse", "prune-bi"}, "test"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ppl.png", "kld.png", "accuracy.png"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
			t.Fatalf("%s: %v", f, err)
		}
	}
}

// TestPictureLayout: every picture keeps a blank margin (titles and the
// colour bar do not touch the edges), the reference lines stay inside the
// axes, and the accuracy picture has the chance line.
func TestPictureLayout(t *testing.T) {
	dir := t.TempDir()
	res := compare.Results{Choices: "cloze.jsonl",
		Original: compare.Row{Method: "original", PPL: 6.24, StdErr: 0.09, Figures: compare.Figures{AccNorm: 52, AccNormErr: 2.8, Chance: 25}},
		Rows:     []compare.Row{{Method: "mka", Removed: 1, PPL: 7.3, StdErr: 0.1, Figures: compare.Figures{KLD: 0.3, KLDErr: 0.01, AccNorm: 48, AccNormErr: 2.8}}}}
	paths := map[string]string{}
	for _, f := range []string{"ppl.png", "kld.png", "accuracy.png"} {
		paths[f] = filepath.Join(dir, f)
	}
	if err := Compare(paths, &res, []string{"mka"}, "test"); err != nil {
		t.Fatal(err)
	}
	a := &analysis.Analysis{Blocks: 2, Layers: []string{"input", "blk.0", "blk.1"}, NPIB: [][]float64{{1, 0.3, 0.2}, {0.3, 1, 0.5}, {0.2, 0.5, 1}}}
	paths["heatmap.png"] = filepath.Join(dir, "heatmap.png")
	if err := Heatmap(paths["heatmap.png"], a, "test"); err != nil {
		t.Fatal(err)
	}
	for name, path := range paths {
		img := readPNG(t, path)
		b := img.Bounds()
		border := 8 // pixels: margin is 0.15 inch, 14 px at 96 dpi
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				inner := x >= border && x < b.Max.X-border && y >= border && y < b.Max.Y-border
				if r, g, bl, _ := img.At(x, y).RGBA(); !inner && (r != 0xffff || g != 0xffff || bl != 0xffff) {
					t.Fatalf("%s: pixel (%d, %d) in the %d-pixel margin is not blank", name, x, y, border)
				}
			}
		}
		if name == "heatmap.png" {
			continue
		}
		// The x axis is the lowest row dark over a third of the width; the
		// reference lines are the rows grey over a quarter of it, and
		// their grey pixels lie within the x axis's ends.
		axisLeft, axisRight := -1, -1
		for y := b.Max.Y - 1; y >= b.Min.Y && axisLeft < 0; y-- {
			if l, r, n := run(img, y, func(r, g, b uint32) bool { return r < 0xc000 && g < 0xc000 && b < 0xc000 }); n > b.Dx()/3 {
				axisLeft, axisRight = l, r
			}
		}
		refLeft, refRight := b.Max.X, -1
		for y := b.Min.Y; y < b.Max.Y; y++ {
			if l, r, n := run(img, y, func(r, g, b uint32) bool { return r>>8 == 90 && g>>8 == 90 && b>>8 == 90 }); n > b.Dx()/4 {
				refLeft, refRight = min(refLeft, l), max(refRight, r)
			}
		}
		if axisLeft < 0 || refRight < 0 || refLeft < axisLeft || refRight > axisRight {
			t.Errorf("%s: reference line over columns %d to %d, x axis over %d to %d: want it inside", name, refLeft, refRight, axisLeft, axisRight)
		}
	}
	var chance bool
	for _, m := range metrics(&res) {
		for _, r := range m.refs {
			chance = chance || (m.file == "accuracy.png" && r.y == 25 && strings.HasPrefix(r.label, "chance"))
		}
	}
	if !chance {
		t.Errorf("accuracy.png has no chance line at 25 %%")
	}
}

// run returns the first and last column of row y whose pixel is, and how
// many are.
func run(img image.Image, y int, is func(r, g, b uint32) bool) (first, last, n int) {
	first, last = -1, -1
	for x := img.Bounds().Min.X; x < img.Bounds().Max.X; x++ {
		if r, g, b, _ := img.At(x, y).RGBA(); is(r, g, b) {
			if first < 0 {
				first = x
			}
			last, n = x, n+1
		}
	}
	return first, last, n
}

func readPNG(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return img
}
