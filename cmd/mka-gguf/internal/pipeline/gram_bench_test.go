package pipeline

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/mka-gguf/mka-gguf/merge"
)

// BenchmarkAlignAdd times one batch of alignment statistics (510 rows, as a
// decode of two 256-token chunks gives, d = 1024) with the products on
// ggml's CPU device against gonum's pure-Go BLAS, and reports the ratio.
func BenchmarkAlignAdd(b *testing.B) {
	const rows, d = 510, 1024
	rng := rand.New(rand.NewPCG(1, 2))
	x, y := make([]float32, rows*d), make([]float32, rows*d)
	for i := range x {
		x[i], y[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
	}
	timeOf := func(st *merge.AlignStats, n int) time.Duration {
		t0 := time.Now()
		for range n {
			if err := st.Add(x, y, rows); err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(t0) / time.Duration(n)
	}
	sc, g := newScratch(d, 2)
	defer g.Close()
	if g == nil {
		b.Skip("no ggml CPU device")
	}
	ggml := merge.NewAlignStats(d, sc)
	gonum := merge.NewAlignStats(d, nil)
	timeOf(ggml, 1)
	base := timeOf(gonum, 3)
	b.ResetTimer()
	per := timeOf(ggml, max(b.N, 3))
	b.ReportMetric(base.Seconds()/per.Seconds(), "speedup_vs_gonum")
	b.Logf("AlignStats.Add %d×%d: ggml %v, gonum %v (%.1f× faster)", rows, d, per, base, base.Seconds()/per.Seconds())
}
