package simd

import (
	"math"
	"math/rand/v2"
	"testing"
)

// sumExpRef is SumExp's definition, with math.Exp.
func sumExpRef(x []float32, m float64) float64 {
	var s float64
	for _, v := range x {
		s += math.Exp(float64(v) - m)
	}
	return s
}

// sameF64 reports whether a and b have the same bits or are both NaN.
func sameF64(a, b float64) bool {
	return math.Float64bits(a) == math.Float64bits(b) || a != a && b != b
}

// TestSumExpMatchesMathExp checks SumExp bit for bit against the math.Exp
// loop at every level: logit-like rows below their maximum at every length
// and offset, rows mixing values outside the fast range (infinities, NaNs,
// subnormal and overflowing results) with ordinary ones, and rows of four
// equal values, whose sum moves with any one-ulp error of the exponential.
func TestSumExpMatchesMathExp(t *testing.T) {
	forEachLevel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(3, 5))
		check := func(x []float32, m float64) {
			t.Helper()
			if got, want := SumExp(x, m), sumExpRef(x, m); !sameF64(got, want) {
				t.Fatalf("SumExp(%d values, m %g) = %v (%#016x), math.Exp loop %v (%#016x); values %v",
					len(x), m, got, math.Float64bits(got), want, math.Float64bits(want), x[:min(len(x), 8)])
			}
		}
		for _, n := range testLengths() {
			for _, o := range offsets(n) {
				buf := randFinite(r, n+o[1])
				x := buf[o[1]:]
				m := 0.0
				for _, v := range x {
					m = max(m, float64(v))
				}
				check(x, m)
				check(x, m-3) // some arguments above 0
			}
		}
		edges := []float32{-708, 708, -708.0001, 708.0001, -709, 709.7, 709.8, 710, -745, -746, -800, -1e30, 1e30,
			float32(math.Inf(-1)), float32(math.Inf(1)), float32(math.NaN()), 0, -0.5}
		for range 2000 {
			x := randFinite(r, 1+r.IntN(40))
			for i := range x {
				if r.IntN(4) == 0 {
					x[i] = edges[r.IntN(len(edges))]
				}
			}
			check(x, 0)
		}
		for range 200000 {
			v := float32(r.Float64()*1416 - 708)
			if r.IntN(2) == 0 {
				v = float32(r.NormFloat64() * 8)
			}
			check([]float32{v, v, v, v}, 0)
		}
	})
}
