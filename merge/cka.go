package merge

import (
	"math"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/mat"
)

// LinearCKA returns the linear centred kernel alignment (Kornblith et al.
// 2019) between two representations of the same N samples, x (N×d_x) and
// y (N×d_y):
//
//	CKA(X, Y) = ||Y_cᵀ X_c||²_F / (||X_cᵀ X_c||_F ||Y_cᵀ Y_c||_F)
//	          = <K_c, L_c>_F / (||K_c||_F ||L_c||_F),  K_c = X_c X_cᵀ, L_c = Y_c Y_cᵀ
//
// where X_c and Y_c have their column means removed. It equals
// HSIC(K, L)/sqrt(HSIC(K, K) HSIC(L, L)) with linear kernels and lies in
// [0, 1]. It is invariant to orthogonal transforms and isotropic scaling of
// either input, but not to arbitrary invertible linear maps.
//
// The feature form costs about N·(d_x + d_y)² flops and the Gram form
// N²·(d_x + d_y); LinearCKA uses the Gram form when N < d_x + d_y.
//
// LinearCKA returns NaN if either input is constant (zero variance). It
// panics if x and y have different numbers of rows.
func LinearCKA(x, y *mat.Dense) float64 {
	n, dx := x.Dims()
	ny, dy := y.Dims()
	if n != ny {
		panic("merge: LinearCKA row count mismatch")
	}
	xc := centerColumns(x)
	yc := centerColumns(y)
	var num, nx, nyy float64
	if n < dx+dy {
		k := gram(xc)
		l := gram(yc)
		num = frobDot(k, l)
		nx = frobDot(k, k)
		nyy = frobDot(l, l)
	} else {
		// Y_cᵀ X_c is d_y×d_x.
		c := blas64.General{Rows: dy, Cols: dx, Stride: dx, Data: make([]float64, dx*dy)}
		blas64.Gemm(blas.Trans, blas.NoTrans, 1, yc, xc, 0, c)
		for _, v := range c.Data {
			num += v * v
		}
		k := cov(xc)
		l := cov(yc)
		nx = frobDot(k, k)
		nyy = frobDot(l, l)
	}
	if nx == 0 || nyy == 0 {
		return math.NaN()
	}
	return min(num/math.Sqrt(nx*nyy), 1)
}

// gram returns the full (both triangles) N×N matrix X Xᵀ.
func gram(x blas64.General) blas64.General {
	s := blas64.Symmetric{N: x.Rows, Stride: x.Rows, Data: make([]float64, x.Rows*x.Rows), Uplo: blas.Upper}
	blas64.Syrk(blas.NoTrans, 1, x, 0, s)
	return fillLower(s)
}

// cov returns the full (both triangles) d×d matrix Xᵀ X.
func cov(x blas64.General) blas64.General {
	s := blas64.Symmetric{N: x.Cols, Stride: x.Cols, Data: make([]float64, x.Cols*x.Cols), Uplo: blas.Upper}
	blas64.Syrk(blas.Trans, 1, x, 0, s)
	return fillLower(s)
}

func fillLower(s blas64.Symmetric) blas64.General {
	n := s.N
	for i := 0; i < n; i++ {
		for j := i + 1; j < n; j++ {
			s.Data[j*n+i] = s.Data[i*n+j]
		}
	}
	return blas64.General{Rows: n, Cols: n, Stride: n, Data: s.Data}
}

// frobDot returns the Frobenius inner product Σ_ij a_ij b_ij of two dense
// matrices of the same shape with Stride == Cols.
func frobDot(a, b blas64.General) float64 {
	return blas64.Implementation().Ddot(len(a.Data), a.Data, 1, b.Data, 1)
}
