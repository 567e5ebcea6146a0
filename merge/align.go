package merge

import (
	"errors"
	"fmt"
	"math"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
	"gonum.org/v1/gonum/mat"
)

// ErrAlign means an alignment could not be computed (no tokens, a shape
// mismatch, or a singular system).
var ErrAlign = errors.New("merge: alignment")

// AlignStats accumulates, over calibration tokens, the normal equations of
// the least-squares alignment of a block that replaces a run of blocks
// (ReplaceMe, Shopkhoev et al. 2025, folded into the surviving block):
//
//	T = argmin_T ‖X T − Y‖²_F + ρ ‖T − I‖²_F,   Y = H − F
//
// where, per token (one row each, d = n_embd columns), F is the surviving
// block's residual stream before its FFN (llama.cpp's "ffn_inp-<i>"), X is
// its FFN output (l_out-<i> − ffn_inp-<i>) and H is the output the replaced
// blocks produced. Only XᵀX, XᵀY and ‖Y‖² are kept, so memory is O(d²)
// whatever the number of tokens: AlignStatsBytes(d) = 4d(d+1) + 4d² bytes.
// The products are computed per batch in float32 with gonum's blocked BLAS:
// XᵀX (Syrk, into a scratch that many AlignStats can share) is summed in
// float64, the upper triangle packed; XᵀY is summed in float32 by the
// BLAS itself (Gemm with β = 1: about 1e-6 relative after 64 batches, far
// below the sampling error of the fit).
type AlignStats struct {
	D int
	// XtX is the upper triangle of XᵀX packed by rows: row i holds
	// columns i..d−1 and starts at i·d − i(i−1)/2.
	XtX    []float64
	XtY    []float32 // d×d, row-major
	YtY    float64   // ‖Y‖²_F
	HH     float64   // ‖H‖²_F, the target's own norm (AddTargetNorm)
	Tokens int

	scratch *AlignScratch
}

// AlignScratch is the per-batch float32 work of Add (d×d products), which
// AlignStats used one at a time can share.
type AlignScratch struct {
	g, c []float32
	// Gram, when set, computes g = XᵀX and c = XᵀY for rows × d inputs
	// instead of gonum (cgo.Gram runs them on ggml's CPU device).
	Gram func(x, y []float32, rows, d int, g, c []float32) error
}

// NewAlignScratch returns a scratch for d columns.
func NewAlignScratch(d int) *AlignScratch { return &AlignScratch{g: make([]float32, d*d)} }

// AlignStatsBytes is the memory of one AlignStats of d columns, scratch
// excluded.
func AlignStatsBytes(d int) int64 { return int64(d*(d+1)/2)*8 + int64(d*d)*4 }

// NewAlignStats returns empty statistics for d columns that use sc (nil:
// their own) as the scratch of Add.
func NewAlignStats(d int, sc *AlignScratch) *AlignStats {
	return &AlignStats{D: d, XtX: make([]float64, d*(d+1)/2), XtY: make([]float32, d*d), scratch: sc}
}

// Reset empties the statistics for reuse.
func (s *AlignStats) Reset() {
	clear(s.XtX)
	clear(s.XtY)
	s.YtY, s.HH, s.Tokens = 0, 0, 0
}

// packed returns the index of XᵀX[i][k], i ≤ k, in XtX.
func (s *AlignStats) packed(i, k int) int { return i*s.D - i*(i-1)/2 + k - i }

// Add accumulates rows tokens: x and y hold rows×D values, row-major.
func (s *AlignStats) Add(x, y []float32, rows int) error {
	d := s.D
	if len(x) != rows*d || len(y) != rows*d {
		return fmt.Errorf("%w: %d and %d values for %d rows of %d", ErrAlign, len(x), len(y), rows, d)
	}
	if rows == 0 {
		return nil
	}
	if s.scratch == nil {
		s.scratch = NewAlignScratch(d)
	}
	if sc := s.scratch; sc.Gram != nil {
		if len(sc.c) != d*d {
			sc.c = make([]float32, d*d)
		}
		if err := sc.Gram(x, y, rows, d, sc.g, sc.c); err != nil {
			return fmt.Errorf("%w: %v", ErrAlign, err)
		}
		for i, v := range sc.c {
			s.XtY[i] += v
		}
	} else {
		X := blas32.General{Rows: rows, Cols: d, Stride: d, Data: x}
		Y := blas32.General{Rows: rows, Cols: d, Stride: d, Data: y}
		G := blas32.Symmetric{N: d, Stride: d, Uplo: blas.Upper, Data: sc.g}
		C := blas32.General{Rows: d, Cols: d, Stride: d, Data: s.XtY}
		blas32.Syrk(blas.Trans, 1, X, 0, G)
		blas32.Gemm(blas.Trans, blas.NoTrans, 1, X, Y, 1, C)
	}
	for i := 0; i < d; i++ {
		g := s.XtX[s.packed(i, i) : s.packed(i, i)+d-i]
		for k, v := range s.scratch.g[i*d+i : (i+1)*d] {
			g[k] += float64(v)
		}
	}
	var yy float64
	for _, v := range y {
		yy += float64(v) * float64(v)
	}
	s.YtY += yy
	s.Tokens += rows
	return nil
}

// AddTargetNorm adds ‖h‖² of target rows h (H itself, not H − F) to HH,
// which scales Alignment.Stream.
func (s *AlignStats) AddTargetNorm(h []float32) {
	var v float64
	for _, x := range h {
		v += float64(x) * float64(x)
	}
	s.HH += v
}

// Alignment is a solved alignment: the d×d matrix T and how well it fits.
type Alignment struct {
	D int
	// T is d×d, row-major: the surviving block's FFN output x becomes x T.
	// In GGUF's row convention the block's ffn_down W (d rows of n_ff) becomes
	// Tᵀ W (Fold). It is solved in float64 and kept in float32 (half
	// the memory; the weights it folds into are float32 at best).
	T []float32
	// Rho is the ridge ρ used (absolute: ρ_rel · tr(XᵀX)/d) and RhoRel
	// its ρ_rel (raised from 0 when XᵀX was singular).
	Rho, RhoRel float64
	// Residual is the in-sample relative residual ‖X T − Y‖² / ‖Y‖².
	Residual float64
	// Unaligned is the same with T = I: ‖X − Y‖² / ‖Y‖², the error of
	// simply dropping the replaced blocks.
	Unaligned float64
	// Stream and StreamUnaligned are the same errors relative to the
	// residual stream instead, ‖X T − Y‖² / ‖H‖² (0 when HH is unknown):
	// the size of the change the next block sees.
	Stream, StreamUnaligned float64
	// Tokens is the number of calibration tokens the fit used.
	Tokens int
	// Diagonal says that T is diagonal (SolveDiagonal): the alignment
	// then also folds into a vector of d weights by which a block's
	// output is multiplied (a post-norm's weight, w ← t ⊙ w).
	Diagonal bool
}

// Solve returns the alignment with ridge ρ = rhoRel · tr(XᵀX)/d (a scale-free
// ρ, so that one value fits every model), solving
//
//	(XᵀX + ρI) T = XᵀY + ρI
//
// by Cholesky in float64. rhoRel = 0 is the plain least-squares fit; a
// singular XᵀX is then regularised with the smallest ρ that makes it
// positive definite, in steps of 10× from 1e-9. The residuals use
//
//	‖X T − Y‖² = tr(Tᵀ XᵀX T) − 2 tr(Tᵀ XᵀY) + ‖Y‖²
//
// and XᵀX T = XᵀY + ρ(I − T), so no further d³ product is needed.
func (s *AlignStats) Solve(rhoRel float64) (*Alignment, error) {
	d := s.D
	if s.Tokens == 0 || s.YtY == 0 {
		return nil, fmt.Errorf("%w: no calibration tokens (or a zero target)", ErrAlign)
	}
	if rhoRel < 0 || math.IsNaN(rhoRel) {
		return nil, fmt.Errorf("%w: ridge %v < 0", ErrAlign, rhoRel)
	}
	var tr, trC float64
	for i := 0; i < d; i++ {
		tr += s.XtX[s.packed(i, i)]
		trC += float64(s.XtY[i*d+i])
	}
	scale := tr / float64(d)
	if scale == 0 {
		return nil, fmt.Errorf("%w: the surviving block's FFN output is zero", ErrAlign)
	}
	rel := rhoRel
	var chol mat.Cholesky
	var rho float64
	for {
		rho = rel * scale
		a := mat.NewSymDense(d, nil)
		for i := 0; i < d; i++ {
			for k := i; k < d; k++ {
				v := s.XtX[s.packed(i, k)]
				if i == k {
					v += rho
				}
				a.SetSym(i, k, v)
			}
		}
		if chol.Factorize(a) {
			break
		}
		switch {
		case rel == 0:
			rel = 1e-9
		case rel < 1:
			rel *= 10
		default:
			return nil, fmt.Errorf("%w: XᵀX is not positive definite even with ridge %g", ErrAlign, rel)
		}
	}
	b := mat.NewDense(d, d, nil)
	for i := 0; i < d; i++ {
		for k := 0; k < d; k++ {
			v := float64(s.XtY[i*d+k])
			if i == k {
				v += rho
			}
			b.Set(i, k, v)
		}
	}
	// The solution overwrites b's storage (no further d×d buffer).
	if err := cholSolve(&chol, b); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrAlign, err)
	}
	T := b.RawMatrix().Data
	// tr(Tᵀ G T) with G T = C + ρ(I − T); tr(Tᵀ C).
	var tGT, tC float64
	for i := 0; i < d; i++ {
		for k := 0; k < d; k++ {
			tik := T[i*d+k]
			c := float64(s.XtY[i*d+k])
			gt := c - rho*tik
			if i == k {
				gt += rho
			}
			tGT += tik * gt
			tC += tik * c
		}
	}
	res := (tGT - 2*tC + s.YtY) / s.YtY
	un := (tr - 2*trC + s.YtY) / s.YtY
	t32 := make([]float32, d*d)
	for i, v := range T {
		t32[i] = float32(v)
	}
	a := &Alignment{D: d, T: t32, Rho: rho, RhoRel: rel, Residual: math.Max(res, 0), Unaligned: math.Max(un, 0), Tokens: s.Tokens}
	if s.HH > 0 {
		a.Stream, a.StreamUnaligned = a.Residual*s.YtY/s.HH, a.Unaligned*s.YtY/s.HH
	}
	return a, nil
}

// SolveDiagonal returns the best diagonal alignment T = diag(t), the
// same fit as Solve restricted to diagonal T, in closed form per
// dimension from the diagonals of XᵀX and XᵀY:
//
//	t_i = (Σ x_i y_i + ρ) / (Σ x_i² + ρ),   ρ = rhoRel · tr(XᵀX)/d
//
// (the ridge pulls t towards 1, as Solve's pulls T towards I; rhoRel = 0
// leaves a dimension whose x is zero at t_i = 1). The residuals are
// exact: ‖X diag(t) − Y‖² = Σ_i (t_i² (XᵀX)_ii − 2 t_i (XᵀY)_ii) + ‖Y‖².
// A post-norm block (RMS norm after the FFN: X = w ⊙ z/rms(z)) can fold
// only such a T exactly (w ← t ⊙ w).
func (s *AlignStats) SolveDiagonal(rhoRel float64) (*Alignment, error) {
	d := s.D
	if s.Tokens == 0 || s.YtY == 0 {
		return nil, fmt.Errorf("%w: no calibration tokens (or a zero target)", ErrAlign)
	}
	if rhoRel < 0 || math.IsNaN(rhoRel) {
		return nil, fmt.Errorf("%w: ridge %v < 0", ErrAlign, rhoRel)
	}
	var tr float64
	for i := 0; i < d; i++ {
		tr += s.XtX[s.packed(i, i)]
	}
	if tr == 0 {
		return nil, fmt.Errorf("%w: the surviving block's FFN output is zero", ErrAlign)
	}
	rho := rhoRel * tr / float64(d)
	a := &Alignment{D: d, T: make([]float32, d*d), Rho: rho, RhoRel: rhoRel, Tokens: s.Tokens, Diagonal: true}
	var res, un float64
	for i := 0; i < d; i++ {
		g, c := s.XtX[s.packed(i, i)], float64(s.XtY[i*d+i])
		t := 1.0
		if g+rho > 0 {
			t = (c + rho) / (g + rho)
		}
		a.T[i*d+i] = float32(t)
		res += t*t*g - 2*t*c
		un += g - 2*c
	}
	a.Residual = math.Max((res+s.YtY)/s.YtY, 0)
	a.Unaligned = math.Max((un+s.YtY)/s.YtY, 0)
	if s.HH > 0 {
		a.Stream, a.StreamUnaligned = a.Residual*s.YtY/s.HH, a.Unaligned*s.YtY/s.HH
	}
	return a, nil
}

// Identity returns the alignment T = I of dimension d (no change).
func Identity(d int) *Alignment {
	t := make([]float32, d*d)
	for i := 0; i < d; i++ {
		t[i*d+i] = 1
	}
	return &Alignment{D: d, T: t, Diagonal: true}
}

// IsDiagonal reports whether every entry of T off the diagonal is zero.
func (a *Alignment) IsDiagonal() bool {
	for i, v := range a.T {
		if v != 0 && i/a.D != i%a.D {
			return false
		}
	}
	return true
}

// Then returns the alignment that applies a and then b: x ↦ (x Ta) Tb,
// T = Ta Tb (float32 product, no d×d temporary beyond the result).
// Residuals are b's.
func (a *Alignment) Then(b *Alignment) *Alignment {
	d := a.D
	out := *b
	out.T = make([]float32, d*d)
	A := blas32.General{Rows: d, Cols: d, Stride: d, Data: a.T}
	B := blas32.General{Rows: d, Cols: d, Stride: d, Data: b.T}
	C := blas32.General{Rows: d, Cols: d, Stride: d, Data: out.T}
	blas32.Gemm(blas.NoTrans, blas.NoTrans, 1, A, B, 0, C)
	out.Diagonal = a.Diagonal && b.Diagonal
	return &out
}

// MatMulTN computes c = aᵀ b for row-major a (rows × ca) and b (rows ×
// cb): c[i][j] = Σ_k a[k][i] b[k][j], ca × cb, row-major (for example
// cgo.Product.Compute on ggml's CPU device).
type MatMulTN func(a, b []float32, rows, ca, cb int, c []float32) error

// Fold applies the alignment to a weight stored in GGUF's row convention,
// in place: w holds d rows of perRow values (ffn_down: d = n_embd rows of
// n_ff), the layer computes y = W h, and the block's output y becomes Tᵀ y,
// so W becomes Tᵀ W:
//
//	W'[i][c] = Σ_k T[k][i] W[k][c]
//
// A bias of d values folds the same way as d rows of one value. The
// products Tᵀ W_block are computed by mm (nil: gonum's BLAS in Go), one
// block of 512 columns at a time (each column block of Tᵀ W depends only on
// the same columns of W), so that folding a large tensor needs two d × 512
// blocks of scratch instead of a second copy of it.
func (a *Alignment) Fold(w []float32, perRow int, mm MatMulTN) error {
	d := a.D
	if len(w) != d*perRow {
		return fmt.Errorf("%w: weight has %d values, want %d rows of %d", ErrAlign, len(w), d, perRow)
	}
	const cols = 512
	n0 := min(cols, perRow)
	in, out := make([]float32, d*n0), make([]float32, d*n0)
	T := blas32.General{Rows: d, Cols: d, Stride: d, Data: a.T}
	for c0 := 0; c0 < perRow; c0 += cols {
		n := min(cols, perRow-c0)
		for r := range d {
			copy(in[r*n:(r+1)*n], w[r*perRow+c0:r*perRow+c0+n])
		}
		if mm != nil {
			if err := mm(a.T, in[:d*n], d, d, n, out[:d*n]); err != nil {
				return fmt.Errorf("%w: %v", ErrAlign, err)
			}
		} else {
			W := blas32.General{Rows: d, Cols: n, Stride: n, Data: in}
			O := blas32.General{Rows: d, Cols: n, Stride: n, Data: out}
			blas32.Gemm(blas.Trans, blas.NoTrans, 1, T, W, 0, O)
		}
		for r := range d {
			copy(w[r*perRow+c0:r*perRow+c0+n], out[r*n:(r+1)*n])
		}
	}
	return nil
}
