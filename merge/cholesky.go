package merge

import (
	"fmt"
	"runtime"
	"sync"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/mat"
)

// solveBlock is the row block of cholSolve's substitutions.
const solveBlock = 512

// cholSolve overwrites b (p × d) with A⁻¹ b for A = UᵀU, chol's factor,
// by blocked substitution: Uᵀ Y = B, then U X = Y, one block of rows at a
// time, each block's update from the rows already solved one matrix
// product (gonum's Gemm, blocked and on every core) and its own triangle a
// small triangular solve. gonum's own solve (Cholesky.SolveTo) runs its
// triangular solves row by row on one core, bound by memory: 4–5× slower
// for thousands of unknowns.
func cholSolve(chol *mat.Cholesky, b *mat.Dense) error {
	var u mat.TriDense
	chol.UTo(&u)
	U := u.RawTriangular()
	B := b.RawMatrix()
	p := U.N
	if B.Rows != p {
		return fmt.Errorf("cholesky solve: %d × %d factor, %d right-hand-side rows", p, p, B.Rows)
	}
	rows := func(i0, n int) blas64.General {
		return blas64.General{Rows: n, Cols: B.Cols, Stride: B.Stride, Data: B.Data[i0*B.Stride:]}
	}
	panel := func(i0, n, j0, m int) blas64.General { // U[i0:i0+n, j0:j0+m]
		return blas64.General{Rows: n, Cols: m, Stride: U.Stride, Data: U.Data[i0*U.Stride+j0:]}
	}
	diag := func(i0, n int) blas64.Triangular {
		return blas64.Triangular{Uplo: blas.Upper, Diag: blas.NonUnit, N: n, Stride: U.Stride, Data: U.Data[i0*U.Stride+i0:]}
	}
	// Uᵀ Y = B: rows i0 … i0+n−1 of Y from those before them.
	for i0 := 0; i0 < p; i0 += solveBlock {
		n := min(solveBlock, p-i0)
		if i0 > 0 {
			blas64.Gemm(blas.Trans, blas.NoTrans, -1, panel(0, i0, i0, n), rows(0, i0), 1, rows(i0, n))
		}
		trsm(blas.Trans, diag(i0, n), rows(i0, n))
	}
	// U X = Y: from the last block of rows up.
	for i0 := (p - 1) / solveBlock * solveBlock; i0 >= 0; i0 -= solveBlock {
		n := min(solveBlock, p-i0)
		if i0+n < p {
			blas64.Gemm(blas.NoTrans, blas.NoTrans, -1, panel(i0, n, i0+n, p-i0-n), rows(i0+n, p-i0-n), 1, rows(i0, n))
		}
		trsm(blas.NoTrans, diag(i0, n), rows(i0, n))
	}
	return nil
}

// trsm overwrites b with op(t)⁻¹ b, b's columns split among GOMAXPROCS
// goroutines (gonum's Trsm runs on one core).
func trsm(op blas.Transpose, t blas64.Triangular, b blas64.General) {
	n := max(1, min(runtime.GOMAXPROCS(0), b.Cols/64))
	var wg sync.WaitGroup
	for w := range n {
		c0, c1 := w*b.Cols/n, (w+1)*b.Cols/n
		part := blas64.General{Rows: b.Rows, Cols: c1 - c0, Stride: b.Stride, Data: b.Data[c0:]}
		wg.Go(func() { blas64.Trsm(blas.Left, op, 1, t, part) })
	}
	wg.Wait()
}
