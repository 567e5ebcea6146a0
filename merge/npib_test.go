package merge

import (
	"math"
	"runtime"
	"testing"

	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/gonum/stat"
)

// noisyCopy returns a + s·noise.
func noisyCopy(r interface{ NormFloat64() float64 }, a *mat.Dense, s float64) *mat.Dense {
	n, k := a.Dims()
	b := mat.NewDense(n, k, nil)
	for i := 0; i < n; i++ {
		for j := 0; j < k; j++ {
			b.Set(i, j, a.At(i, j)+s*r.NormFloat64())
		}
	}
	return b
}

func TestNPIBBasicProperties(t *testing.T) {
	r := newRand(10)
	a := randDense(r, 200, 4)
	b := noisyCopy(r, a, 0.5)
	c := randDense(r, 200, 3)

	for _, m := range []*mat.Dense{a, b, c} {
		if got := NPIB(m, m); got != 1 {
			t.Errorf("NPIB(a, a) = %v, want exactly 1", got)
		}
		// A copy (different storage) is identical input too.
		if got := NPIB(m, mat.DenseCopyOf(m)); got != 1 {
			t.Errorf("NPIB(a, copy(a)) = %v, want exactly 1", got)
		}
	}
	for _, pr := range [][2]*mat.Dense{{a, b}, {a, c}, {b, c}} {
		s1, s2 := NPIB(pr[0], pr[1]), NPIB(pr[1], pr[0])
		if math.Abs(s1-s2) > 1e-12 {
			t.Errorf("NPIB not symmetric: %v vs %v", s1, s2)
		}
		if !(s1 >= 0 && s1 <= 1) {
			t.Errorf("NPIB = %v not in [0, 1]", s1)
		}
	}
}

func TestNPIBMonotoneInvariance(t *testing.T) {
	r := newRand(11)
	a := randDense(r, 300, 3)
	b := noisyCopy(r, a, 0.7)
	base := NPIB(a, b)
	// Strictly increasing transforms of single coordinates, and a
	// decreasing one (which flips a normal score's sign).
	a2 := mat.DenseCopyOf(a)
	b2 := mat.DenseCopyOf(b)
	for i := 0; i < 300; i++ {
		a2.Set(i, 0, math.Exp(a.At(i, 0)))
		a2.Set(i, 2, math.Pow(a.At(i, 2), 3)+5)
		b2.Set(i, 1, -math.Atan(b.At(i, 1)))
	}
	if got := NPIB(a2, b2); math.Abs(got-base) > 1e-12 {
		t.Errorf("NPIB after monotone transforms = %v, want %v", got, base)
	}
	// Scaling coordinates (as DiffusionOptions.T does) changes nothing.
	var a3 mat.Dense
	a3.Scale(0.001, a)
	if got := NPIB(&a3, b); math.Abs(got-base) > 1e-12 {
		t.Errorf("NPIB after scaling = %v, want %v", got, base)
	}
}

func TestNPIBIndependentAndNoisy(t *testing.T) {
	r := newRand(12)
	const n = 500
	a := randDense(r, n, 4)
	ind := randDense(r, n, 4)
	si := NPIB(a, ind)
	// E[I_δ] ≈ k²/(2N) = 0.016 nats against H_δ ≈ 4 × 1.97 nats.
	if si > 0.01 {
		t.Errorf("NPIB of independent data = %v, want < 0.01", si)
	}
	prev := 1.0
	for _, noise := range []float64{0.1, 0.5, 1, 2} {
		s := NPIB(a, noisyCopy(r, a, noise))
		if !(s > si && s < prev) {
			t.Errorf("NPIB(a, a + %v·noise) = %v, want in (%v, %v)", noise, s, si, prev)
		}
		prev = s
	}
	if s := NPIB(a, noisyCopy(r, a, 0.1)); s < 0.5 {
		t.Errorf("NPIB of a 10%% noisy copy = %v, want > 0.5", s)
	}
}

func TestGaussianMIBivariate(t *testing.T) {
	// For one coordinate each, with Pearson correlation r of the normal
	// scores:
	//   I_δ = ½ log((1+δ)² / ((1+δ)² - r²)),  H_δ = ½ log((1+δ)² / ((1+δ)² - 1)).
	r := newRand(13)
	a := randDense(r, 100, 1)
	b := noisyCopy(r, a, 0.8)
	za, _ := normalScores(a)
	zb, _ := normalScores(b)
	rho := stat.Correlation(za[0], zb[0], nil)
	const delta = 0.05
	d2 := (1 + delta) * (1 + delta)
	wantI := 0.5 * math.Log(d2/(d2-rho*rho))
	wantH := 0.5 * math.Log(d2/(d2-1))
	if got := gaussianMI(za, zb, delta); math.Abs(got-wantI) > 1e-12 {
		t.Errorf("I_δ = %v, want %v", got, wantI)
	}
	if got := gaussianMI(za, za, delta); math.Abs(got-wantH) > 1e-12 {
		t.Errorf("H_δ = %v, want %v", got, wantH)
	}
	if got, want := npib(a, b, delta), wantI/wantH; math.Abs(got-want) > 1e-12 {
		t.Errorf("NPIB = %v, want %v", got, want)
	}
}

func TestNormalScores(t *testing.T) {
	// Values 5, 1, 3, 3 → mid-ranks 4, 1, 2.5, 2.5 of N = 4.
	m := mat.NewDense(4, 2, []float64{5, 7, 1, 7, 3, 7, 3, 7})
	z, ok := normalScores(m)
	if !ok || len(z) != 1 {
		t.Fatalf("normalScores: ok=%v, %d columns, want 1 (second is constant)", ok, len(z))
	}
	phiInv := func(p float64) float64 { return math.Sqrt2 * math.Erfinv(2*p-1) }
	want := []float64{phiInv(4.0 / 5), phiInv(1.0 / 5), phiInv(2.5 / 5), phiInv(2.5 / 5)}
	for i := range want {
		if math.Abs(z[0][i]-want[i]) > 1e-15 {
			t.Errorf("z[%d] = %v, want %v", i, z[0][i], want[i])
		}
	}
	m.Set(0, 0, math.NaN())
	if _, ok := normalScores(m); ok {
		t.Error("normalScores accepted a NaN")
	}
}

func TestNPIBBound(t *testing.T) {
	// I_δ(A;B) ≤ sqrt(H_δ(A) H_δ(B)) for every sample, including inputs
	// that repeat the same coordinate (the noise then averages out across
	// copies, the hardest case for the bound).
	r := newRand(14)
	for trial := 0; trial < 200; trial++ {
		n := 20 + r.IntN(80)
		ka, kb := 1+r.IntN(5), 1+r.IntN(5)
		base := randDense(r, n, ka)
		b := mat.NewDense(n, kb, nil)
		for j := 0; j < kb; j++ {
			src := r.IntN(ka)
			noise := []float64{0, 0.01, 0.3, 3}[r.IntN(4)]
			for i := 0; i < n; i++ {
				b.Set(i, j, base.At(i, src)+noise*r.NormFloat64())
			}
		}
		delta := []float64{1e-4, 0.01, 0.5}[r.IntN(3)]
		za, _ := normalScores(base)
		zb, _ := normalScores(b)
		iab := gaussianMI(za, zb, delta)
		ha, hb := gaussianMI(za, za, delta), gaussianMI(zb, zb, delta)
		if iab > math.Sqrt(ha*hb)*(1+1e-12) {
			t.Errorf("trial %d (ka=%d kb=%d δ=%v): I = %v > sqrt(H_A H_B) = %v", trial, ka, kb, delta, iab, math.Sqrt(ha*hb))
		}
	}
}

func TestNPIBEdgeCases(t *testing.T) {
	r := newRand(15)
	a := randDense(r, 30, 2)
	konst := mat.NewDense(30, 2, nil)
	if got := NPIB(a, konst); got != 0 {
		t.Errorf("NPIB with a constant layer = %v, want 0", got)
	}
	// A constant column is dropped: [a0, const] behaves like [a0].
	withConst := mat.NewDense(30, 2, nil)
	only := mat.NewDense(30, 1, nil)
	for i := 0; i < 30; i++ {
		withConst.Set(i, 0, a.At(i, 0))
		withConst.Set(i, 1, 4)
		only.Set(i, 0, a.At(i, 0))
	}
	if g, w := NPIB(withConst, a), NPIB(only, a); g != w {
		t.Errorf("NPIB with a constant column = %v, want %v", g, w)
	}
	nan := mat.DenseCopyOf(a)
	nan.Set(3, 1, math.NaN())
	if got := NPIB(nan, a); !math.IsNaN(got) {
		t.Errorf("NPIB with NaN input = %v, want NaN", got)
	}
	mustPanic(t, "row mismatch", func() { NPIB(a, randDense(r, 29, 2)) })
	mustPanic(t, "one row", func() { NPIB(randDense(r, 1, 2), randDense(r, 1, 2)) })
}

func TestDefaultNoiseDocNumbers(t *testing.T) {
	// DefaultNoise's comment: for uncorrelated coordinates each with
	// canonical correlation ρ, NPIB = log(1 - ρ²/(1+δ)²) / log(1 - 1/(1+δ)²).
	// Check the closed form against the estimator on exact
	// construction: normal scores of two columns with correlation ρ.
	cases := []struct{ rho, want float64 }{{0.9, 0.40}, {0.99, 0.82}, {0.999, 0.975}}
	for _, c := range cases {
		d := 1 + DefaultNoise
		got := math.Log(1-c.rho*c.rho/(d*d)) / math.Log(1-1/(d*d))
		if math.Abs(got-c.want) > 0.006 {
			t.Errorf("ρ=%v: closed form %v, doc says %v", c.rho, got, c.want)
		}
		// The estimator, on two unit-variance zero-mean columns with exact
		// correlation ρ, gives the same number.
		x := []float64{1, -1, 1, -1}
		y := []float64{1, -1, -1, 1}
		za := [][]float64{x}
		zb := [][]float64{make([]float64, 4)}
		s := math.Sqrt(1 - c.rho*c.rho)
		for i := range x {
			zb[0][i] = c.rho*x[i] + s*y[i]
		}
		est := gaussianMI(za, zb, DefaultNoise) / math.Sqrt(gaussianMI(za, za, DefaultNoise)*gaussianMI(zb, zb, DefaultNoise))
		if math.Abs(est-got) > 1e-12 {
			t.Errorf("ρ=%v: estimator %v, closed form %v", c.rho, est, got)
		}
	}
}

func TestSimilarityMatrixDeterministic(t *testing.T) {
	r := newRand(16)
	coords := make([]*mat.Dense, 9)
	coords[0] = randDense(r, 64, 3)
	for i := 1; i < len(coords); i++ {
		coords[i] = noisyCopy(r, coords[i-1], 0.3)
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	runtime.GOMAXPROCS(1)
	serial := SimilarityMatrix(coords, NPIB)
	runtime.GOMAXPROCS(8)
	par := SimilarityMatrix(coords, NPIB)
	if !mat.Equal(serial, par) {
		t.Error("SimilarityMatrix depends on GOMAXPROCS")
	}
	for i := range coords {
		if par.At(i, i) != 1 {
			t.Errorf("S(%d,%d) = %v, want 1", i, i, par.At(i, i))
		}
		for j := i + 1; j < len(coords); j++ {
			if want := NPIB(coords[i], coords[j]); par.At(i, j) != want {
				t.Errorf("S(%d,%d) = %v, want NPIB = %v", i, j, par.At(i, j), want)
			}
		}
	}
	// A chain of noisy copies: neighbours are more similar than layers
	// far apart.
	if !(par.At(0, 1) > par.At(0, 8)) {
		t.Errorf("S(0,1) = %v not above S(0,8) = %v", par.At(0, 1), par.At(0, 8))
	}
	cka := SimilarityMatrix(coords, LinearCKA)
	if math.Abs(cka.At(2, 2)-1) > 1e-12 {
		t.Errorf("CKA diagonal = %v", cka.At(2, 2))
	}
	mustPanic(t, "no layers", func() { SimilarityMatrix(nil, NPIB) })
}

func mustPanic(t *testing.T, name string, fn func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s: no panic", name)
		}
	}()
	fn()
}
