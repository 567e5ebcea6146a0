package merge

import (
	"math"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// naiveCKA computes HSIC(K,L)/sqrt(HSIC(K,K)HSIC(L,L)) with K = XXᵀ,
// L = YYᵀ (uncentred) and HSIC(K,L) = tr(KHLH)/(N-1)², H = I - 11ᵀ/N, by
// plain loops.
func naiveCKA(x, y *mat.Dense) float64 {
	n, _ := x.Dims()
	gramOf := func(z *mat.Dense) [][]float64 {
		_, d := z.Dims()
		g := make([][]float64, n)
		for i := range g {
			g[i] = make([]float64, n)
			for j := range g[i] {
				for k := 0; k < d; k++ {
					g[i][j] += z.At(i, k) * z.At(j, k)
				}
			}
		}
		return g
	}
	h := func(i, j int) float64 {
		v := -1 / float64(n)
		if i == j {
			v++
		}
		return v
	}
	center := func(g [][]float64) [][]float64 { // H G H
		out := make([][]float64, n)
		for i := range out {
			out[i] = make([]float64, n)
			for j := range out[i] {
				for a := 0; a < n; a++ {
					for b := 0; b < n; b++ {
						out[i][j] += h(i, a) * g[a][b] * h(b, j)
					}
				}
			}
		}
		return out
	}
	hsic := func(kc, lc [][]float64) float64 { // tr(KHLH) = Σ_ij (HKH)_ij L_ji ... with both centred
		var s float64
		for i := range kc {
			for j := range kc {
				s += kc[i][j] * lc[j][i]
			}
		}
		return s / float64((n-1)*(n-1))
	}
	kc, lc := center(gramOf(x)), center(gramOf(y))
	return hsic(kc, lc) / math.Sqrt(hsic(kc, kc)*hsic(lc, lc))
}

func TestLinearCKA(t *testing.T) {
	r := newRand(20)
	for _, sz := range []struct{ n, dx, dy int }{
		{12, 30, 25}, // Gram form (N < dx+dy)
		{40, 5, 3},   // feature form
		{16, 8, 8},   // feature form at the boundary
	} {
		x := randDense(r, sz.n, sz.dx)
		y := noisyCopy(r, randDense(r, sz.n, sz.dy), 0)
		// Make y depend on x.
		for i := 0; i < sz.n; i++ {
			for j := 0; j < min(sz.dx, sz.dy); j++ {
				y.Set(i, j, y.At(i, j)+2*x.At(i, j))
			}
		}
		got, want := LinearCKA(x, y), naiveCKA(x, y)
		if math.Abs(got-want) > 1e-10 {
			t.Errorf("%v: LinearCKA = %v, naive HSIC = %v", sz, got, want)
		}
		if g := LinearCKA(x, x); math.Abs(g-1) > 1e-12 {
			t.Errorf("%v: CKA(X, X) = %v, want 1", sz, g)
		}
		// Orthogonal transform, isotropic scaling and a shift: still 1.
		var qr mat.QR
		qr.Factorize(randDense(r, sz.dx, sz.dx))
		var q, xq mat.Dense
		qr.QTo(&q)
		xq.Mul(x, &q)
		xq.Scale(3.7, &xq)
		for i := 0; i < sz.n; i++ {
			xq.Set(i, 0, xq.At(i, 0)+100)
		}
		if g := LinearCKA(x, &xq); math.Abs(g-1) > 1e-10 {
			t.Errorf("%v: CKA(X, 3.7·XQ + c) = %v, want 1", sz, g)
		}
		if g1, g2 := LinearCKA(x, y), LinearCKA(y, x); math.Abs(g1-g2) > 1e-12 {
			t.Errorf("%v: CKA not symmetric: %v vs %v", sz, g1, g2)
		}
	}
	konst := mat.NewDense(10, 3, nil)
	if g := LinearCKA(konst, randDense(r, 10, 3)); !math.IsNaN(g) {
		t.Errorf("CKA with a constant input = %v, want NaN", g)
	}
	mustPanic(t, "row mismatch", func() { LinearCKA(randDense(r, 5, 2), randDense(r, 6, 2)) })
}
