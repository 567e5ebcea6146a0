package merge

import (
	"math"
	"testing"

	"gonum.org/v1/gonum/mat"
)

func TestCosineSum(t *testing.T) {
	a := []float32{1, 0, 0, 0, 1, 1, 0, 0, 2, 0}
	b := []float32{0, 1, 0, 0, 2, 2, 3, 0, -1, 0}
	// Rows: ⊥ → 0; both zero → 1; parallel → 1; a zero → 0; opposite → -1.
	sum, rows := CosineSum(a, b, 2)
	if rows != 5 || math.Abs(sum-1) > 1e-15 {
		t.Errorf("CosineSum = %v, %d; want 1, 5", sum, rows)
	}
	// cos((3,4),(4,3)) = 24/25.
	sum, rows = CosineSum([]float32{3, 4}, []float32{4, 3}, 2)
	if rows != 1 || math.Abs(sum-24.0/25) > 1e-15 {
		t.Errorf("CosineSum = %v, want 0.96", sum)
	}
	if sum, rows := CosineSum(nil, nil, 4); sum != 0 || rows != 0 {
		t.Errorf("empty CosineSum = %v, %d", sum, rows)
	}
	mustPanic(t, "d=0", func() { CosineSum(a, b, 0) })
	mustPanic(t, "length mismatch", func() { CosineSum(a, b[:8], 2) })
	mustPanic(t, "not a multiple", func() { CosineSum(a, b, 3) })
}

func TestBlockInfluence(t *testing.T) {
	bi := BlockInfluence([]float64{3.6, 2, 0}, []int{4, 2, 0})
	want := []float64{0.1, 0, math.NaN()}
	for i := 0; i < 2; i++ {
		if math.Abs(bi[i]-want[i]) > 1e-15 {
			t.Errorf("BI[%d] = %v, want %v", i, bi[i], want[i])
		}
	}
	if !math.IsNaN(bi[2]) {
		t.Errorf("BI with count 0 = %v, want NaN", bi[2])
	}
	mustPanic(t, "length mismatch", func() { BlockInfluence([]float64{1}, nil) })
}

func TestAngular(t *testing.T) {
	x := mat.NewDense(5, 2, []float64{1, 0, 1, 0, 1, 0, 1, 1, 0, 0})
	y := mat.NewDense(5, 2, []float64{0, 1, 1, 0, -1, 0, 1, 0, 0, 0})
	// Angles/π: 1/2, 0, 1, 1/4, 0 (both zero) → mean 1.75/5.
	if got, want := AngularDistance(x, y), 1.75/5; math.Abs(got-want) > 1e-15 {
		t.Errorf("AngularDistance = %v, want %v", got, want)
	}
	r := newRand(30)
	layers := make([]*mat.Dense, 6)
	for i := range layers {
		layers[i] = randDense(r, 7, 5)
	}
	m := AngularMatrix(layers)
	for i := range layers {
		if m.At(i, i) != 0 {
			t.Errorf("ang(%d,%d) = %v, want 0", i, i, m.At(i, i))
		}
		for j := range layers {
			if i == j {
				continue
			}
			if want := AngularDistance(layers[i], layers[j]); math.Abs(m.At(i, j)-want) > 1e-15 {
				t.Errorf("ang(%d,%d) = %v, want %v", i, j, m.At(i, j), want)
			}
		}
	}
	mustPanic(t, "shape", func() { AngularDistance(x, randDense(r, 5, 3)) })
	mustPanic(t, "matrix shape", func() { AngularMatrix([]*mat.Dense{x, randDense(r, 4, 2)}) })
	mustPanic(t, "empty", func() { AngularMatrix(nil) })
}
