package merge

import (
	"math"
	"math/rand/v2"
	"slices"
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
	s := NewAlignStats(d, nil)
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
		if math.Abs(float64(v)-t0[i]) > 1e-4 {
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
	s := NewAlignStats(d, nil)
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
					v += float64(x[i*d+j]) * float64(a.T[j*d+k])
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
func TestFold(t *testing.T) {
	const d, nff = 8, 20
	r := rand.New(rand.NewPCG(3, 3))
	w := make([]float32, d*nff)
	for i := range w {
		w[i] = float32(r.NormFloat64())
	}
	a := &Alignment{D: d, T: make([]float32, d*d)}
	for i := range a.T {
		a.T[i] = float32(r.NormFloat64())
	}
	h := make([]float64, nff)
	for i := range h {
		h[i] = r.NormFloat64()
	}
	w2 := slices.Clone(w)
	if err := a.Fold(w2, nff, nil); err != nil {
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
			want += y[i] * float64(a.T[i*d+k])
		}
		for c := 0; c < nff; c++ {
			got += float64(w2[k*nff+c]) * h[c]
		}
		if math.Abs(got-want) > 1e-3*math.Max(1, math.Abs(want)) {
			t.Fatalf("output %d: folded %v, want %v", k, got, want)
		}
	}
	if err := a.Fold(w[:5], nff, nil); err == nil {
		t.Error("Fold accepted a weight of the wrong size")
	}
	// Identity then a equals a, and a then b maps x to (x Ta) Tb.
	c := Identity(d).Then(a)
	for i := range c.T {
		if c.T[i] != a.T[i] {
			t.Fatal("Identity().Then(a) differs from a")
		}
	}
	b := &Alignment{D: d, T: make([]float32, d*d)}
	for i := range b.T {
		b.T[i] = float32(r.NormFloat64())
	}
	ab := a.Then(b)
	for k := 0; k < d; k++ {
		var want, got float64
		for i := 0; i < d; i++ {
			var xa float64 // (h Ta)_i with h = the first d values of h
			for j := 0; j < d; j++ {
				xa += h[j] * float64(a.T[j*d+i])
			}
			want += xa * float64(b.T[i*d+k])
			got += h[i] * float64(ab.T[i*d+k])
		}
		if math.Abs(got-want) > 1e-4*math.Max(1, math.Abs(want)) {
			t.Fatalf("a.Then(b), output %d: %v, want %v", k, got, want)
		}
	}
}

func TestAlignErrors(t *testing.T) {
	s := NewAlignStats(4, nil)
	if _, err := s.Solve(0); err == nil {
		t.Error("Solve with no tokens succeeded")
	}
	if err := s.Add(make([]float32, 3), make([]float32, 4), 1); err == nil {
		t.Error("Add accepted mismatched sizes")
	}
}

// TestFoldColumnBlocks: the fold equals Tᵀ W written out in float64,
// across several 512-column blocks and a partial last one, with gonum's
// product and with one passed in (MatMulTN).
func TestFoldColumnBlocks(t *testing.T) {
	const d, nff = 16, 1100
	r := rand.New(rand.NewPCG(5, 5))
	w := make([]float32, d*nff)
	for i := range w {
		w[i] = float32(r.NormFloat64())
	}
	a := &Alignment{D: d, T: make([]float32, d*d)}
	for i := range a.T {
		a.T[i] = float32(r.NormFloat64())
	}
	want := make([]float64, d*nff)
	for i := range d {
		for c := range nff {
			for k := range d {
				want[i*nff+c] += float64(a.T[k*d+i]) * float64(w[k*nff+c])
			}
		}
	}
	// A product written out directly, c = aᵀ b.
	naive := func(x, y []float32, rows, ca, cb int, c []float32) error {
		for i := range ca {
			for j := range cb {
				var v float64
				for k := range rows {
					v += float64(x[k*ca+i]) * float64(y[k*cb+j])
				}
				c[i*cb+j] = float32(v)
			}
		}
		return nil
	}
	orig := slices.Clone(w)
	for _, mm := range []MatMulTN{nil, naive} {
		copy(w, orig)
		if err := a.Fold(w, nff, mm); err != nil {
			t.Fatal(err)
		}
		for i := range w {
			if math.Abs(float64(w[i])-want[i]) > 1e-5*math.Max(1, math.Abs(want[i])) {
				t.Fatalf("product %v: value %d: folded %v, want %v", mm != nil, i, w[i], want[i])
			}
		}
	}
}

// The diagonal alignment is the per-dimension least-squares fit: it
// recovers a diagonal T0 exactly, its residual is the one measured
// directly, between the full alignment's and the unaligned one, and the
// ridge pulls it towards 1.
func TestSolveDiagonal(t *testing.T) {
	const rows, d = 500, 16
	r := rand.New(rand.NewPCG(3, 1))
	x := make([]float32, rows*d)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	t0 := make([]float64, d)
	for i := range t0 {
		t0[i] = 0.5 + r.Float64()
	}
	yDiag := make([]float32, rows*d)
	for i := range yDiag {
		yDiag[i] = float32(float64(x[i]) * t0[i%d])
	}
	_, yFull, _ := alignData(rows, d, 0.1, 4) // another X: only the shapes matter
	xFull, _, _ := alignData(rows, d, 0.1, 4)
	stats := func(x, y []float32) *AlignStats {
		s := NewAlignStats(d, nil)
		if err := s.Add(x, y, rows); err != nil {
			t.Fatal(err)
		}
		return s
	}
	a, err := stats(x, yDiag).SolveDiagonal(0)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Diagonal || !a.IsDiagonal() || a.Residual > 1e-6 {
		t.Fatalf("diagonal target: diagonal %v/%v, residual %g", a.Diagonal, a.IsDiagonal(), a.Residual)
	}
	for i := range d {
		if math.Abs(float64(a.T[i*d+i])-t0[i]) > 1e-5 {
			t.Errorf("t[%d] = %v, want %v", i, a.T[i*d+i], t0[i])
		}
	}
	s := stats(xFull, yFull)
	full, err := s.Solve(0)
	if err != nil {
		t.Fatal(err)
	}
	diag, err := s.SolveDiagonal(0)
	if err != nil {
		t.Fatal(err)
	}
	// ‖X diag(t) − Y‖² / ‖Y‖², measured.
	var res, yy float64
	for i := range yFull {
		e := float64(xFull[i])*float64(diag.T[(i%d)*d+i%d]) - float64(yFull[i])
		res += e * e
		yy += float64(yFull[i]) * float64(yFull[i])
	}
	if math.Abs(res/yy-diag.Residual) > 1e-5 {
		t.Errorf("diagonal residual %g, measured %g", diag.Residual, res/yy)
	}
	if !(full.Residual < diag.Residual && diag.Residual < diag.Unaligned) || math.Abs(diag.Unaligned-full.Unaligned) > 1e-12 {
		t.Errorf("residuals: full %g, diagonal %g, unaligned %g (full's %g)", full.Residual, diag.Residual, diag.Unaligned, full.Unaligned)
	}
	ridged, err := s.SolveDiagonal(1e6)
	if err != nil {
		t.Fatal(err)
	}
	for i := range d {
		if v := ridged.T[i*d+i]; math.Abs(float64(v)-1) > 1e-3 {
			t.Errorf("t[%d] = %v with a huge ridge, want 1", i, v)
		}
	}
	if a.Then(ridged).Diagonal != true || full.Then(a).Diagonal {
		t.Error("Then: a product of diagonal alignments is diagonal, one with a full one is not")
	}
}
