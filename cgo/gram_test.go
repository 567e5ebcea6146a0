package cgo

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestGram checks XᵀX and XᵀY against a direct float64 computation, for
// row counts on and off the 16-row padding and two shapes in a row (the
// graph is rebuilt).
func TestGram(t *testing.T) {
	g, err := NewGram(2)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, sh := range [][2]int{{37, 48}, {64, 48}, {255, 64}, {3, 16}} {
		rows, d := sh[0], sh[1]
		x, y := make([]float32, rows*d), make([]float32, rows*d)
		for i := range x {
			x[i], y[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
		}
		gg, cc := make([]float32, d*d), make([]float32, d*d)
		if err := g.Compute(x, y, rows, d, gg, cc); err != nil {
			t.Fatal(err)
		}
		for i := range d {
			for k := range d {
				var wg, wc float64
				for r := range rows {
					wg += float64(x[r*d+i]) * float64(x[r*d+k])
					wc += float64(x[r*d+i]) * float64(y[r*d+k])
				}
				if math.Abs(float64(gg[i*d+k])-wg) > 1e-3*math.Sqrt(float64(rows)) || math.Abs(float64(cc[i*d+k])-wc) > 1e-3*math.Sqrt(float64(rows)) {
					t.Fatalf("%d×%d: [%d][%d]: XᵀX %g want %g, XᵀY %g want %g", rows, d, i, k, gg[i*d+k], wg, cc[i*d+k], wc)
				}
			}
		}
	}
	if err := g.Compute(make([]float32, 4), make([]float32, 4), 2, 3, make([]float32, 9), make([]float32, 9)); err == nil {
		t.Fatal("wrong input size accepted")
	}
}

// TestProduct checks XᵀY for X and Y of different widths against a direct
// float64 computation, on and off the row padding.
func TestProduct(t *testing.T) {
	p, err := NewProduct(2)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	rng := rand.New(rand.NewPCG(3, 4))
	for _, sh := range [][3]int{{48, 48, 100}, {37, 20, 64}, {64, 64, 512}} {
		rows, dx, dy := sh[0], sh[1], sh[2]
		x, y := make([]float32, rows*dx), make([]float32, rows*dy)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		for i := range y {
			y[i] = float32(rng.NormFloat64())
		}
		c := make([]float32, dx*dy)
		if err := p.Compute(x, y, rows, dx, dy, c); err != nil {
			t.Fatal(err)
		}
		for i := range dx {
			for j := range dy {
				var want float64
				for r := range rows {
					want += float64(x[r*dx+i]) * float64(y[r*dy+j])
				}
				if math.Abs(float64(c[i*dy+j])-want) > 1e-3*math.Sqrt(float64(rows)) {
					t.Fatalf("%d rows, %d×%d: [%d][%d] = %g, want %g", rows, dx, dy, i, j, c[i*dy+j], want)
				}
			}
		}
	}
	if err := p.Compute(make([]float32, 4), make([]float32, 6), 2, 2, 4, make([]float32, 7)); err == nil {
		t.Fatal("wrong output size accepted")
	}
}
