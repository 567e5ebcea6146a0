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
// whatever the number of tokens. The products are computed per batch in
// float32 with gonum's blocked BLAS (Syrk, Gemm) and summed in float64.
type AlignStats struct {
	D      int
	XtX    []float64 // d×d, row-major, symmetric (both triangles filled by Solve)
	XtY    []float64 // d×d, row-major
	YtY    float64   // ‖Y‖²_F
	HH     float64   // ‖H‖²_F, the target's own norm (AddTargetNorm)
	Tokens int

	g32, c32 []float32 // per-batch products
}

// NewAlignStats returns empty statistics for d columns.
func NewAlignStats(d int) *AlignStats {
	return &AlignStats{D: d, XtX: make([]float64, d*d), XtY: make([]float64, d*d)}
}

// Add accumulates rows tokens: x and y hold rows×D values, row-major.
func (s *AlignStats) Add(x, y []float32, rows int) error {
	d := s.D
	if len(x) != rows*d || len(y) != rows*d {
		return fmt.Errorf("%w: %d and %d values for %d rows of %d", ErrAlign, len(x), len(y), rows, d)
	}
	if rows == 0 {
		return nil
	}
	if s.g32 == nil {
		s.g32, s.c32 = make([]float32, d*d), make([]float32, d*d)
	}
	X := blas32.General{Rows: rows, Cols: d, Stride: d, Data: x}
	Y := blas32.General{Rows: rows, Cols: d, Stride: d, Data: y}
	G := blas32.Symmetric{N: d, Stride: d, Uplo: blas.Upper, Data: s.g32}
	C := blas32.General{Rows: d, Cols: d, Stride: d, Data: s.c32}
	blas32.Syrk(blas.Trans, 1, X, 0, G)
	blas32.Gemm(blas.Trans, blas.NoTrans, 1, X, Y, 0, C)
	for i := 0; i < d; i++ {
		g, gs := s.XtX[i*d+i:(i+1)*d], s.g32[i*d+i:(i+1)*d]
		for k, v := range gs {
			g[k] += float64(v)
		}
	}
	for i, v := range s.c32 {
		s.XtY[i] += float64(v)
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
	// Tᵀ W (FoldRows).
	T []float64
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
		tr += s.XtX[i*d+i]
		trC += s.XtY[i*d+i]
	}
	for i := 0; i < d; i++ { // mirror the upper triangle
		for k := i + 1; k < d; k++ {
			s.XtX[k*d+i] = s.XtX[i*d+k]
		}
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
				v := s.XtX[i*d+k]
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
			v := s.XtY[i*d+k]
			if i == k {
				v += rho
			}
			b.Set(i, k, v)
		}
	}
	var t mat.Dense
	if err := chol.SolveTo(&t, b); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrAlign, err)
	}
	T := make([]float64, d*d)
	for i := 0; i < d; i++ {
		for k := 0; k < d; k++ {
			T[i*d+k] = t.At(i, k)
		}
	}
	// tr(Tᵀ G T) with G T = C + ρ(I − T); tr(Tᵀ C).
	var tGT, tC float64
	for i := 0; i < d; i++ {
		for k := 0; k < d; k++ {
			tik := T[i*d+k]
			gt := s.XtY[i*d+k] - rho*tik
			if i == k {
				gt += rho
			}
			tGT += tik * gt
			tC += tik * s.XtY[i*d+k]
		}
	}
	res := (tGT - 2*tC + s.YtY) / s.YtY
	un := (tr - 2*trC + s.YtY) / s.YtY
	a := &Alignment{D: d, T: T, Rho: rho, RhoRel: rel, Residual: math.Max(res, 0), Unaligned: math.Max(un, 0), Tokens: s.Tokens}
	if s.HH > 0 {
		a.Stream, a.StreamUnaligned = a.Residual*s.YtY/s.HH, a.Unaligned*s.YtY/s.HH
	}
	return a, nil
}

// Identity returns the alignment T = I of dimension d (no change).
func Identity(d int) *Alignment {
	t := make([]float64, d*d)
	for i := 0; i < d; i++ {
		t[i*d+i] = 1
	}
	return &Alignment{D: d, T: t}
}

// Then returns the alignment that applies a and then b: x ↦ (x Ta) Tb,
// T = Ta Tb. Residuals are b's.
func (a *Alignment) Then(b *Alignment) *Alignment {
	d := a.D
	A := mat.NewDense(d, d, a.T)
	B := mat.NewDense(d, d, b.T)
	var c mat.Dense
	c.Mul(A, B)
	out := *b
	out.T = make([]float64, d*d)
	for i := 0; i < d; i++ {
		for k := 0; k < d; k++ {
			out.T[i*d+k] = c.At(i, k)
		}
	}
	return &out
}

// FoldRows applies the alignment to a weight stored in GGUF's row
// convention: w holds d rows of perRow values (ffn_down: d = n_embd rows of
// n_ff), the layer computes y = W h, and the block's output y becomes Tᵀ y,
// so W becomes Tᵀ W:
//
//	W'[i][c] = Σ_k T[k][i] W[k][c]
//
// It returns the new rows (w is not modified). A bias of d values (one row,
// perRow = 1 with d rows) folds the same way.
func (a *Alignment) FoldRows(w []float32, perRow int) ([]float32, error) {
	d := a.D
	if len(w) != d*perRow {
		return nil, fmt.Errorf("%w: weight has %d values, want %d rows of %d", ErrAlign, len(w), d, perRow)
	}
	t32 := make([]float32, d*d)
	for i, v := range a.T {
		t32[i] = float32(v)
	}
	out := make([]float32, len(w))
	T := blas32.General{Rows: d, Cols: d, Stride: d, Data: t32}
	W := blas32.General{Rows: d, Cols: perRow, Stride: perRow, Data: w}
	O := blas32.General{Rows: d, Cols: perRow, Stride: perRow, Data: out}
	blas32.Gemm(blas.Trans, blas.NoTrans, 1, T, W, 0, O)
	return out, nil
}
