package merge

import (
	"math"
	"math/rand/v2"
	"testing"
)

// alignData returns rows×d random X, a random d×d T0 and Y = X T0 + noise·N.
func alignData(rows, d int, noise float64, seed uint64) (x, y []float32, t0 []float64) {
	r := rand.New(rand.NewPCG(seed, 1))
	x = make([]float32, rows*d)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	t0 = make([]float64, d*d)
	for i := range t0 {
		t0[i] = r.NormFloat64() / math.Sqrt(float64(d))
	}
	y = make([]float32, rows*d)
	for i := 0; i < rows; i++ {
		for k := 0; k < d; k++ {
			var s float64
			for j := 0; j < d; j++ {
				s += float64(x[i*d+j]) * t0[j*d+k]
			}
			y[i*d+k] = float32(s + noise*r.NormFloat64())
		}
	}
	return
}

// A target that is exactly linear in X is reproduced to rounding, in batches.
func TestAlignExactLinear(t *testing.T) {
	const rows, d = 600, 24
	x, y, t0 := alignData(rows, d, 0, 1)
	s := NewAlignStats(d)
	for r0 := 0; r0 < rows; r0 += 128 { // several batches, as the capture hook feeds them
		r1 := min(rows, r0+128)
		if err := s.Add(x[r0*d:r1*d], y[r0*d:r1*d], r1-r0); err != nil {
			t.Fatal(err)
		}
	}
	a, err := s.Solve(0)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range a.T {
		if math.Abs(v-t0[i]) > 1e-4 {
			t.Fatalf("T[%d] = %v, want %v", i, v, t0[i])
		}
	}
	if a.Residual > 1e-8 {
		t.Errorf("residual %g, want ~0", a.Residual)
	}
	if a.Unaligned < 0.1 {
		t.Errorf("unaligned residual %g is implausibly small", a.Unaligned)
	}
	if a.Tokens != rows {
		t.Errorf("tokens %d, want %d", a.Tokens, rows)
	}
}

// With noise and any ridge, the aligned residual is never above the
// unaligned one, it grows with ρ, and it equals a direct computation.
func TestAlignResidualProperties(t *testing.T) {
	const rows, d = 300, 16
	x, y, _ := alignData(rows, d, 0.5, 2)
	s := NewAlignStats(d)
	if err := s.Add(x, y, rows); err != nil {
		t.Fatal(err)
	}
	s.AddTargetNorm(y) // H = Y here (F = 0)
	s.AddTargetNorm(y)
	prev := -1.0
	for _, rho := range []float64{0, 1e-3, 0.1, 1, 10} {
		a, err := s.Solve(rho)
		if err != nil {
			t.Fatal(err)
		}
		if a.Residual > a.Unaligned+1e-12 {
			t.Errorf("ρ=%g: aligned residual %g above unaligned %g", rho, a.Residual, a.Unaligned)
		}
		if a.Residual < prev-1e-9 {
			t.Errorf("ρ=%g: residual %g fell below the smaller ridge's %g", rho, a.Residual, prev)
		}
		prev = a.Residual
		// ‖H‖² was added twice: the stream residual is half the relative one.
		if math.Abs(a.Stream-a.Residual/2) > 1e-12 || math.Abs(a.StreamUnaligned-a.Unaligned/2) > 1e-12 {
			t.Errorf("ρ=%g: stream residuals %g, %g; want half of %g, %g", rho, a.Stream, a.StreamUnaligned, a.Residual, a.Unaligned)
		}
		// Direct ‖XT − Y‖² / ‖Y‖².
		var num, den float64
		for i := 0; i < rows; i++ {
			for k := 0; k < d; k++ {
				var v float64
				for j := 0; j < d; j++ {
					v += float64(x[i*d+j]) * a.T[j*d+k]
				}
				e := v - float64(y[i*d+k])
				num += e * e
				den += float64(y[i*d+k]) * float64(y[i*d+k])
			}
		}
		if got := num / den; math.Abs(got-a.Residual) > 1e-6*math.Max(1, got) {
			t.Errorf("ρ=%g: closed-form residual %g, direct %g", rho, a.Residual, got)
		}
	}
}

// Folding T into ffn_down rows (W ← Tᵀ W) gives the same output as
// transforming the layer's output: (W h)ᵀ T = ((Tᵀ W) h)ᵀ.
func TestFoldRows(t *testing.T) {
	const d, nff = 8, 20
	r := rand.New(rand.NewPCG(3, 3))
	w := make([]float32, d*nff)
	for i := range w {
		w[i] = float32(r.NormFloat64())
	}
	a := &Alignment{D: d, T: make([]float64, d*d)}
	for i := range a.T {
		a.T[i] = r.NormFloat64()
	}
	h := make([]float64, nff)
	for i := range h {
		h[i] = r.NormFloat64()
	}
	w2, err := a.FoldRows(w, nff)
	if err != nil {
		t.Fatal(err)
	}
	y := make([]float64, d)
	for i := 0; i < d; i++ {
		for c := 0; c < nff; c++ {
			y[i] += float64(w[i*nff+c]) * h[c]
		}
	}
	for k := 0; k < d; k++ {
		var want, got float64
		for i := 0; i < d; i++ {
			want += y[i] * a.T[i*d+k]
		}
		for c := 0; c < nff; c++ {
			got += float64(w2[k*nff+c]) * h[c]
		}
		if math.Abs(got-want) > 1e-3*math.Max(1, math.Abs(want)) {
			t.Fatalf("output %d: folded %v, want %v", k, got, want)
		}
	}
	if _, err := a.FoldRows(w[:5], nff); err == nil {
		t.Error("FoldRows accepted a weight of the wrong size")
	}
	// Identity then a equals a.
	c := Identity(d).Then(a)
	for i := range c.T {
		if math.Abs(c.T[i]-a.T[i]) > 1e-12 {
			t.Fatal("Identity().Then(a) differs from a")
		}
	}
}

func TestAlignErrors(t *testing.T) {
	s := NewAlignStats(4)
	if _, err := s.Solve(0); err == nil {
		t.Error("Solve with no tokens succeeded")
	}
	if err := s.Add(make([]float32, 3), make([]float32, 4), 1); err == nil {
		t.Error("Add accepted mismatched sizes")
	}
}

// TestFoldRowsInPlace: the in-place fold equals FoldRows, across several
// 256-column blocks and a partial last one.
func TestFoldRowsInPlace(t *testing.T) {
	const d, nff = 16, 600
	r := rand.New(rand.NewPCG(5, 5))
	w := make([]float32, d*nff)
	for i := range w {
		w[i] = float32(r.NormFloat64())
	}
	a := &Alignment{D: d, T: make([]float64, d*d)}
	for i := range a.T {
		a.T[i] = r.NormFloat64()
	}
	want, err := a.FoldRows(w, nff)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.FoldRowsInPlace(w, nff); err != nil {
		t.Fatal(err)
	}
	for i := range w {
		if math.Abs(float64(w[i]-want[i])) > 1e-5*math.Max(1, math.Abs(float64(want[i]))) {
			t.Fatalf("value %d: in place %v, FoldRows %v", i, w[i], want[i])
		}
	}
	if err := a.FoldRowsInPlace(w[:7], nff); err == nil {
		t.Error("FoldRowsInPlace accepted a weight of the wrong size")
	}
}
