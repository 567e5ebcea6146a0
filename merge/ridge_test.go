package merge

import (
	"math"
	"math/rand/v2"
	"testing"
)

// A weighted ridge fit recovers the weight that generated noiseless data,
// ignores rows of weight 0 whatever they hold, and with a large ridge stays
// at the current weight.
func TestRidgeRecoversWeight(t *testing.T) {
	const p, d, rows = 6, 4, 200
	rng := rand.New(rand.NewPCG(1, 2))
	want := make([]float32, d*p) // D rows of P values
	for i := range want {
		want[i] = float32(rng.NormFloat64())
	}
	x := make([]float32, rows*p)
	r := make([]float32, rows*d)
	w := make([]float64, rows)
	for t := range rows {
		for i := range p {
			x[t*p+i] = float32(rng.NormFloat64())
		}
		for k := range d {
			var s float32
			for i := range p {
				s += x[t*p+i] * want[k*p+i]
			}
			r[t*d+k] = s
		}
		w[t] = 0.5 + rng.Float64()
		if t%10 == 0 { // garbage rows, weight 0
			w[t] = 0
			r[t*d] = 1e6
		}
	}
	// The same sums from float32 products (Ridge.Product, as cgo.Product
	// computes them).
	f32 := NewRidge(p, d)
	products := 0
	f32.Product = func(x, y []float32, rows, dx, dy int, c []float32) error {
		products++
		for i := range dx {
			for j := range dy {
				var v float32
				for k := range rows {
					v += x[k*dx+i] * y[k*dy+j]
				}
				c[i*dy+j] = v
			}
		}
		return nil
	}
	s := NewRidge(p, d)
	for _, s := range []*Ridge{s, f32} {
		if err := s.Add(x[:100*p], r[:100*d], w[:100], 100); err != nil {
			t.Fatal(err)
		}
		if err := s.Add(x[100*p:], r[100*d:], w[100:], 100); err != nil {
			t.Fatal(err)
		}
		if s.Rows != rows-rows/10 {
			t.Fatalf("rows %d, want %d", s.Rows, rows-rows/10)
		}
	}
	if products != 4 {
		t.Fatalf("%d float32 products, want 2 per Add", products)
	}
	fromF32, err := f32.Solve(1e-9, make([]float32, d*p))
	if err != nil {
		t.Fatal(err)
	}
	for i := range fromF32 {
		if math.Abs(float64(fromF32[i]-want[i])) > 1e-3 {
			t.Fatalf("float32 products: value %d: %g, want %g", i, fromF32[i], want[i])
		}
	}
	zero := make([]float32, d*p)
	got, err := s.Solve(1e-9, zero)
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if math.Abs(float64(got[i]-want[i])) > 1e-4 {
			t.Fatalf("value %d: %g, want %g", i, got[i], want[i])
		}
	}
	held, err := s.Solve(1e9, zero)
	if err != nil {
		t.Fatal(err)
	}
	for i := range held {
		if math.Abs(float64(held[i])) > 1e-6 {
			t.Fatalf("large ridge: value %d is %g, want the current weight 0", i, held[i])
		}
	}
}

func TestInverseNormWeights(t *testing.T) {
	h := [][]float32{{1, 0, 0, 2}, {3, 0, 0, 1}}
	w := InverseNormWeights(h, 2, 1)
	// 1/‖h‖² = 1, 1/4 | 1/9, 1 → mean 1 over the four rows → first rows dropped.
	s := (1 + 0.25 + 1.0/9 + 1) / 4
	if w[0][0] != 0 || w[1][0] != 0 || math.Abs(w[0][1]-0.25/s) > 1e-12 || math.Abs(w[1][1]-1/s) > 1e-12 {
		t.Fatalf("weights %v", w)
	}
}
