package plots

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

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
		Original: compare.Row{Method: "original", PPL: 6.24, StdErr: 0.09, Figures: compare.Figures{SameTop: 100, AccNorm: 52, AccNormErr: 2.8}}}
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
