package calib

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestFold compares folder.fold with a direct float64 computation on
// random rows: 3 sequences of 70 tokens (not a multiple of foldRows), BOS
// row skipped, two blocks in a row.
func TestFold(t *testing.T) {
	const d, tok, count, skip = 24, 70, 3, 1
	r := rand.New(rand.NewPCG(1, 2))
	block := func() []float32 {
		v := make([]float32, count*tok*d)
		for i := range v {
			v[i] = float32(r.NormFloat64() * 10)
		}
		return v
	}
	a, b := block(), block()
	f := folder{d: d, t: tok, skip: skip}
	sums := make([]float64, count*d)
	if cs, n := f.fold(a, count, true, sums); cs != 0 || n != 0 {
		t.Fatalf("first block: cosine sum %g over %d rows, want none", cs, n)
	}
	check := func(data []float32) {
		for s := range count {
			for k := range d {
				var want float64
				for j := skip; j < tok; j++ {
					want += float64(data[(s*tok+j)*d+k])
				}
				if got := sums[s*d+k]; math.Abs(got-want) > 1e-4*(1+math.Abs(want)) {
					t.Fatalf("sum[%d][%d] = %g, want %g", s, k, got, want)
				}
			}
		}
	}
	check(a)
	cs, n := f.fold(b, count, false, sums)
	check(b)
	var want float64
	for s := range count {
		for j := skip; j < tok; j++ {
			var dot, na, nb float64
			for k := range d {
				x, y := float64(a[(s*tok+j)*d+k]), float64(b[(s*tok+j)*d+k])
				dot, na, nb = dot+x*y, na+x*x, nb+y*y
			}
			want += dot / math.Sqrt(na*nb)
		}
	}
	if n != count*(tok-skip) || math.Abs(cs-want) > 1e-4 {
		t.Fatalf("cosine sum %g over %d rows, want %g over %d", cs, n, want, count*(tok-skip))
	}
}
