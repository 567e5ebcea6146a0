package merge

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/mat"
)

// Ridge accumulates the normal equations of a token-weighted ridge
// regression of targets r (D values a row) on inputs x (P values a row),
// pulled towards a current solution B₀:
//
//	B = argmin_B Σ_t w_t ‖x_t B − r_t‖² + ρ ‖B − B₀‖²_F,  ρ = ρ_rel · tr(XᵀWX) / P
//
// solved as (XᵀWX + ρI) B = XᵀWR + ρB₀ by Cholesky in float64. The healing
// stage refits a block's ffn_down with it: x the FFN's hidden activations
// (ffn_down's input, P = n_ff), r the original model's residual stream
// minus the block's stream before its FFN, B = ffn_downᵀ. Memory: P² + P·D
// float64s, whatever the number of tokens (with Product, the same again in
// float32 for each call's products).
type Ridge struct {
	P, D int
	G    []float64 // XᵀWX, P×P row-major
	C    []float64 // XᵀWR, P×D row-major
	Rows int       // rows of nonzero weight added
	// Product, when set, computes each Add's XᵀY in float32 (rows × dx
	// and rows × dy inputs, dx × dy output) instead of gonum's float64
	// BLAS; the sums stay float64 (cgo.Product runs it on ggml's CPU
	// device, about 10× gonum's product at P = 4096).
	Product func(x, y []float32, rows, dx, dy int, c []float32) error

	xs, rs   []float64
	x32, r32 []float32
	g32, c32 []float32
}

// NewRidge returns empty statistics for P inputs and D targets.
func NewRidge(p, d int) *Ridge {
	return &Ridge{P: p, D: d, G: make([]float64, p*p), C: make([]float64, p*d)}
}

// Add adds rows rows: x holds rows×P values, r rows×D, w one weight per row
// (nil: all 1; rows of weight 0 are left out).
func (s *Ridge) Add(x, r []float32, w []float64, rows int) error {
	if len(x) != rows*s.P || len(r) != rows*s.D || (w != nil && len(w) != rows) {
		return fmt.Errorf("%w: ridge: %d rows, got %d inputs, %d targets, %d weights", ErrAlign, rows, len(x), len(r), len(w))
	}
	if s.Product != nil {
		return s.addProduct(x, r, w, rows)
	}
	var n int
	s.xs, s.rs, n = weighted(x, r, w, rows, s.P, s.D, s.xs, s.rs)
	if n == 0 {
		return nil
	}
	xm := blas64.General{Rows: n, Cols: s.P, Stride: s.P, Data: s.xs}
	rm := blas64.General{Rows: n, Cols: s.D, Stride: s.D, Data: s.rs}
	g := blas64.Symmetric{Uplo: blas.Upper, N: s.P, Stride: s.P, Data: s.G}
	blas64.Syrk(blas.Trans, 1, xm, 1, g)
	blas64.Gemm(blas.Trans, blas.NoTrans, 1, xm, rm, 1, blas64.General{Rows: s.P, Cols: s.D, Stride: s.D, Data: s.C})
	s.Rows += n
	return nil
}

// weighted returns in xs and rs (reused) the rows of x (p values a row)
// and r (d values) of positive weight, each times √w_t (w nil: all 1), and
// their number.
func weighted[T float32 | float64](x, r []float32, w []float64, rows, p, d int, xs, rs []T) ([]T, []T, int) {
	xs, rs = xs[:0], rs[:0]
	n := 0
	for t := range rows {
		wt := 1.0
		if w != nil {
			wt = w[t]
		}
		if !(wt > 0) {
			continue
		}
		sw := T(math.Sqrt(wt))
		for _, v := range x[t*p : (t+1)*p] {
			xs = append(xs, sw*T(v))
		}
		for _, v := range r[t*d : (t+1)*d] {
			rs = append(rs, sw*T(v))
		}
		n++
	}
	return xs, rs, n
}

// addProduct is Add with Ridge.Product.
func (s *Ridge) addProduct(x, r []float32, w []float64, rows int) error {
	var n int
	s.x32, s.r32, n = weighted(x, r, w, rows, s.P, s.D, s.x32, s.r32)
	if n == 0 {
		return nil
	}
	if s.g32 == nil {
		s.g32, s.c32 = make([]float32, s.P*s.P), make([]float32, s.P*s.D)
	}
	if err := s.Product(s.x32, s.x32, n, s.P, s.P, s.g32); err != nil {
		return fmt.Errorf("%w: ridge: %v", ErrAlign, err)
	}
	if err := s.Product(s.x32, s.r32, n, s.P, s.D, s.c32); err != nil {
		return fmt.Errorf("%w: ridge: %v", ErrAlign, err)
	}
	for i, v := range s.g32 {
		s.G[i] += float64(v)
	}
	for i, v := range s.c32 {
		s.C[i] += float64(v)
	}
	s.Rows += n
	return nil
}

// Solve returns B for ridge ρ_rel, with B₀ and the result in the layout of
// a GGUF weight that maps P inputs to D outputs: D rows of P values (Bᵀ).
func (s *Ridge) Solve(rhoRel float64, w0 []float32) ([]float32, error) {
	p, d := s.P, s.D
	if len(w0) != p*d {
		return nil, fmt.Errorf("%w: ridge: current weight has %d values, want %d×%d", ErrAlign, len(w0), d, p)
	}
	if s.Rows == 0 {
		return nil, fmt.Errorf("%w: ridge: no rows", ErrAlign)
	}
	var tr float64
	for i := range p {
		tr += s.G[i*p+i]
	}
	rho := rhoRel * tr / float64(p)
	a := mat.NewSymDense(p, nil)
	for i := range p {
		for k := i; k < p; k++ {
			v := s.G[i*p+k]
			if i == k {
				v += rho
			}
			a.SetSym(i, k, v)
		}
	}
	var chol mat.Cholesky
	if !chol.Factorize(a) {
		return nil, fmt.Errorf("%w: ridge: XᵀWX + ρI is not positive definite (ρ_rel %g)", ErrAlign, rhoRel)
	}
	b := mat.NewDense(p, d, nil)
	for i := range p {
		for k := range d {
			b.Set(i, k, s.C[i*d+k]+rho*float64(w0[k*p+i]))
		}
	}
	if err := cholSolve(&chol, b); err != nil {
		return nil, fmt.Errorf("%w: ridge: %v", ErrAlign, err)
	}
	out := make([]float32, d*p)
	for i := range p {
		for k := range d {
			out[k*p+i] = float32(b.At(i, k))
		}
	}
	return out, nil
}

// InverseNormWeights returns one weight per row of each chunk of h (rows
// of d values): 1/‖h_t‖², normalised to mean 1 over all rows of all
// chunks, then 0 for the first skip rows of each chunk (BOS). A zero row
// gets weight 0.
func InverseNormWeights(h [][]float32, d, skip int) [][]float64 {
	out := make([][]float64, len(h))
	var sum float64
	n := 0
	for c, ch := range h {
		w := make([]float64, len(ch)/d)
		for t := range w {
			var nn float64
			for _, v := range ch[t*d : (t+1)*d] {
				nn += float64(v) * float64(v)
			}
			if nn > 0 {
				w[t] = 1 / nn
			}
			sum += w[t]
		}
		out[c], n = w, n+len(w)
	}
	for _, w := range out {
		for t := range w {
			if sum > 0 {
				w[t] *= float64(n) / sum
			}
			if t < skip {
				w[t] = 0
			}
		}
	}
	return out
}
