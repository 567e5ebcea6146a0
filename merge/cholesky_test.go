package merge

import (
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// The blocked substitution gives gonum's solution: several row blocks, the
// last one short, and right-hand sides split among goroutines.
func TestCholSolve(t *testing.T) {
	for _, sz := range [][2]int{{solveBlock*2 + 77, 150}, {40, 3}} {
		p, d := sz[0], sz[1]
		r := rand.New(rand.NewPCG(7, uint64(p)))
		x := mat.NewDense(p+10, p, nil)
		for i := range p + 10 {
			for k := range p {
				x.Set(i, k, r.NormFloat64())
			}
		}
		a := mat.NewSymDense(p, nil)
		a.SymOuterK(1, x.T())
		var chol mat.Cholesky
		if !chol.Factorize(a) {
			t.Fatal("not positive definite")
		}
		b := mat.NewDense(p, d, nil)
		for i := range p {
			for k := range d {
				b.Set(i, k, r.NormFloat64())
			}
		}
		var want mat.Dense
		if err := chol.SolveTo(&want, b); err != nil {
			t.Fatal(err)
		}
		if err := cholSolve(&chol, b); err != nil {
			t.Fatal(err)
		}
		if !mat.EqualApprox(b, &want, 1e-8) {
			t.Errorf("%d unknowns, %d right-hand sides: the solution differs from gonum's", p, d)
		}
	}
}
