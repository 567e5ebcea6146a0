package merge

import (
	"math"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/lapack/gonum"
)

// topEigenSym returns all eigenvalues of the symmetric n×n matrix a
// (row-major, both triangles or the lower one; a is overwritten) in
// descending order, and the orthonormal eigenvectors of the largest k as the
// columns of an n×k row-major matrix.
//
// A full symmetric eigendecomposition spends most of its time accumulating
// the QL rotations into all n eigenvectors (about 6n³ flops, unvectorised).
// Diffusion maps need only a few, so this uses the LAPACK dstein route:
//
//	A = Q T Qᵀ                      Householder tridiagonalisation (Dsytrd, 4/3 n³)
//	λ = eig(T)                      root-free QL (Dsterf, O(n²))
//	(T - λ_j 1) y = x, repeated     inverse iteration on T (O(n) per solve),
//	                                re-orthogonalised inside clusters of close λ
//	z_j = Q y_j                     apply the reflectors (Dormqr, 2n²k)
//
// ok is false if the eigenvalue iteration fails or an inverse iteration does
// not converge; the caller then falls back to a full decomposition.
func topEigenSym(a []float64, n, k int) (vals []float64, vecs blas64.General, ok bool) {
	impl := gonum.Implementation{}
	d := make([]float64, n)
	e := make([]float64, max(n-1, 1))
	tau := make([]float64, max(n-1, 1))
	work := []float64{0}
	impl.Dsytrd(blas.Lower, n, a, n, d, e, tau, work, -1)
	work = make([]float64, int(work[0]))
	impl.Dsytrd(blas.Lower, n, a, n, d, e, tau, work, len(work))

	vals = make([]float64, n)
	copy(vals, d)
	ee := make([]float64, len(e))
	copy(ee, e)
	if !impl.Dsterf(n, vals, ee) {
		return nil, vecs, false
	}
	for i, j := 0, n-1; i < j; i, j = i+1, j-1 {
		vals[i], vals[j] = vals[j], vals[i]
	}

	// ‖T‖∞ sets the scale of the tolerances.
	var tnorm float64
	for i := 0; i < n; i++ {
		s := math.Abs(d[i])
		if i > 0 {
			s += math.Abs(e[i-1])
		}
		if i < n-1 {
			s += math.Abs(e[i])
		}
		tnorm = max(tnorm, s)
	}
	if tnorm == 0 {
		tnorm = 1
	}
	const eps = 0x1p-52
	clusterTol := 1e-3 * tnorm
	resTol := 100 * float64(n) * eps * tnorm

	y := make([]float64, n*k) // row-major n×k
	col := make([][]float64, k)
	lu := newTridiagLU(n)
	x := make([]float64, n)
	tz := make([]float64, n)
	seed := uint64(0x2545f4914f6cdd1d)
	first := 0 // first member of the current cluster
	for j := 0; j < k; j++ {
		lam := vals[j]
		if j > 0 && vals[j-1]-lam > clusterTol {
			first = j
		}
		lu.factor(d, e, lam, eps*tnorm)
		// Deterministic start vector in [-1, 1).
		for i := range x {
			seed ^= seed << 13
			seed ^= seed >> 7
			seed ^= seed << 17
			x[i] = float64(seed>>11)*0x1p-52 - 1
		}
		normalize(x)
		converged := false
		for it := 0; it < 10; it++ {
			lu.solve(x)
			for c := first; c < j; c++ {
				axpy(-dot(col[c], x), col[c], x)
			}
			if !normalize(x) {
				break
			}
			// Residual ‖T x - λ x‖∞.
			tridiagMul(tz, d, e, x)
			var r float64
			for i := range x {
				r = max(r, math.Abs(tz[i]-lam*x[i]))
			}
			if r <= resTol {
				converged = true
				break
			}
		}
		if !converged {
			return nil, vecs, false
		}
		col[j] = append([]float64(nil), x...)
		for i := 0; i < n; i++ {
			y[i*k+j] = x[i]
		}
	}

	// z = Q y. With the lower triangle, Q = H_0 ⋯ H_{n-2} acts on rows
	// 1 … n-1 as the Q of a QR factorisation stored in A[1:n, 0:n-1].
	vecs = blas64.General{Rows: n, Cols: k, Stride: k, Data: y}
	if n > 1 {
		qa := blas64.General{Rows: n - 1, Cols: n - 1, Stride: n, Data: a[n:]}
		c := blas64.General{Rows: n - 1, Cols: k, Stride: k, Data: y[k:]}
		work = []float64{0}
		impl.Dormqr(blas.Left, blas.NoTrans, c.Rows, c.Cols, n-1, qa.Data, qa.Stride, tau[:n-1], c.Data, c.Stride, work, -1)
		work = make([]float64, int(work[0]))
		impl.Dormqr(blas.Left, blas.NoTrans, c.Rows, c.Cols, n-1, qa.Data, qa.Stride, tau[:n-1], c.Data, c.Stride, work, len(work))
	}
	return vals, vecs, true
}

// tridiagLU is an LU factorisation with partial pivoting of T - σ1 for a
// symmetric tridiagonal T: P(T - σ1) = LU, with U upper triangular with two
// superdiagonals (u0, u1, u2), L unit lower bidiagonal (multipliers l), and
// swap[i] telling whether rows i and i+1 were exchanged at step i.
type tridiagLU struct {
	u0, u1, u2, l []float64
	swap          []bool
}

func newTridiagLU(n int) *tridiagLU {
	return &tridiagLU{
		u0: make([]float64, n), u1: make([]float64, n), u2: make([]float64, n),
		l: make([]float64, n), swap: make([]bool, n),
	}
}

// factor factors T - σ1, with T given by its diagonal d and off-diagonal e.
// Pivots smaller in magnitude than tiny are replaced by ±tiny, so that the
// factorisation exists when σ is an eigenvalue (inverse iteration wants the
// large solution that results).
func (f *tridiagLU) factor(d, e []float64, sigma, tiny float64) {
	n := len(d)
	alpha := d[0] - sigma // current row i: alpha at column i, beta at i+1
	beta := 0.0
	if n > 1 {
		beta = e[0]
	}
	for i := 0; i < n-1; i++ {
		c := e[i]            // row i+1, column i
		dn := d[i+1] - sigma // row i+1, column i+1
		en := 0.0            // row i+1, column i+2
		if i+2 < n {
			en = e[i+1]
		}
		if math.Abs(alpha) >= math.Abs(c) {
			f.swap[i] = false
			if alpha == 0 { // both zero
				alpha = tiny
			}
			f.u0[i], f.u1[i], f.u2[i] = alpha, beta, 0
			m := c / alpha
			f.l[i] = m
			alpha, beta = dn-m*beta, en
		} else {
			f.swap[i] = true
			f.u0[i], f.u1[i], f.u2[i] = c, dn, en
			m := alpha / c
			f.l[i] = m
			alpha, beta = beta-m*dn, -m*en
		}
		if math.Abs(f.u0[i]) < tiny {
			f.u0[i] = math.Copysign(tiny, f.u0[i])
		}
	}
	if math.Abs(alpha) < tiny {
		alpha = math.Copysign(tiny, alpha)
	}
	f.u0[n-1] = alpha
}

// solve overwrites x with the solution of (T - σ1) y = x.
func (f *tridiagLU) solve(x []float64) {
	n := len(x)
	for i := 0; i < n-1; i++ {
		if f.swap[i] {
			x[i], x[i+1] = x[i+1], x[i]
		}
		x[i+1] -= f.l[i] * x[i]
	}
	x[n-1] /= f.u0[n-1]
	if n > 1 {
		x[n-2] = (x[n-2] - f.u1[n-2]*x[n-1]) / f.u0[n-2]
	}
	for i := n - 3; i >= 0; i-- {
		x[i] = (x[i] - f.u1[i]*x[i+1] - f.u2[i]*x[i+2]) / f.u0[i]
	}
}

// tridiagMul sets dst = T x.
func tridiagMul(dst, d, e, x []float64) {
	n := len(d)
	for i := 0; i < n; i++ {
		s := d[i] * x[i]
		if i > 0 {
			s += e[i-1] * x[i-1]
		}
		if i < n-1 {
			s += e[i] * x[i+1]
		}
		dst[i] = s
	}
}

func dot(a, b []float64) float64 {
	return blas64.Implementation().Ddot(len(a), a, 1, b, 1)
}

func axpy(alpha float64, x, y []float64) {
	blas64.Implementation().Daxpy(len(x), alpha, x, 1, y, 1)
}

// normalize scales x to unit Euclidean norm and reports whether it could
// (x is finite and nonzero).
func normalize(x []float64) bool {
	nrm := blas64.Implementation().Dnrm2(len(x), x, 1)
	if !(nrm > 0) || math.IsInf(nrm, 0) {
		return false
	}
	blas64.Implementation().Dscal(len(x), 1/nrm, x, 1)
	return true
}
