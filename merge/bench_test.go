package merge

import (
	"testing"

	"gonum.org/v1/gonum/mat"
)

// syntheticLayers returns `layers` N×d activations that drift like a
// residual stream: a rank-8 signal plus a large common offset, with fresh
// noise added at every layer, so neighbouring layers are similar and far
// ones less so.
func syntheticLayers(n, d, layers int) []*mat.Dense {
	r := newRand(99)
	var x mat.Dense
	x.Mul(randDense(r, n, 8), randDense(r, 8, d))
	offset := make([]float64, d)
	for j := range offset {
		offset[j] = 20 * r.NormFloat64()
	}
	for i := 0; i < n; i++ {
		row := x.RawRowView(i)
		for j := range row {
			row[j] += offset[j]
		}
	}
	out := make([]*mat.Dense, layers)
	for l := range out {
		next := mat.DenseCopyOf(&x)
		data := next.RawMatrix().Data
		for i := range data {
			data[i] += 0.4 * r.NormFloat64()
		}
		out[l] = next
		x = *next
	}
	return out
}

// BenchmarkSimilarity is the calibration-side cost of MKA for a 32-block
// model: squared distances, diffusion maps (N=256 samples, d=4096) for 33
// layer representations, and the 33×33 NPIB matrix.
func BenchmarkSimilarity(b *testing.B) {
	const n, d, layers = 256, 4096, 33
	reps := syntheticLayers(n, d, layers)
	b.ResetTimer()
	for b.Loop() {
		coords, err := DiffusionMaps(reps, DiffusionOptions{})
		if err != nil {
			b.Fatal(err)
		}
		SimilarityMatrix(coords, NPIB)
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/op")
}

// BenchmarkSimilarityParts times the stages of BenchmarkSimilarity for one
// layer (distances, diffusion map) and for the NPIB matrix.
func BenchmarkSimilarityParts(b *testing.B) {
	const n, d, layers = 256, 4096, 33
	reps := syntheticLayers(n, d, 2)
	b.Run("distances", func(b *testing.B) {
		for b.Loop() {
			sqDistances(reps[0])
		}
	})
	b.Run("diffusion", func(b *testing.B) {
		for b.Loop() {
			if _, err := DiffusionMap(reps[0], DiffusionOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	coords := make([]*mat.Dense, layers)
	r := newRand(7)
	coords[0] = randDense(r, n, DefaultDims)
	for i := 1; i < layers; i++ {
		coords[i] = noisyCopy(r, coords[i-1], 0.3)
	}
	b.Run("npib-matrix", func(b *testing.B) {
		for b.Loop() {
			SimilarityMatrix(coords, NPIB)
		}
	})
}
