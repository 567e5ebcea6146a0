package merge

import (
	"math"
	"testing"
)

func TestFuse(t *testing.T) {
	a := []float32{1, 2, 3, -4}
	b := []float32{5, 6, 7, 8}
	c := []float32{0, 0, 1, 1}
	dst := make([]float32, 4)

	Fuse(dst, [][]float32{a, b}, []float64{0.25, 0.75})
	for i, want := range []float32{4, 5, 6, 5} {
		if dst[i] != want {
			t.Errorf("2 parts: dst[%d] = %v, want %v", i, dst[i], want)
		}
	}
	Fuse(dst, [][]float32{a, b, c}, []float64{0.5, 0.25, 0.25})
	for i, want := range []float32{1.75, 2.5, 3.5, 0.25} {
		if dst[i] != want {
			t.Errorf("3 parts: dst[%d] = %v, want %v", i, dst[i], want)
		}
	}
	// nil weights: uniform.
	Fuse(dst, [][]float32{a, b}, nil)
	for i, want := range []float32{3, 4, 5, 2} {
		if dst[i] != want {
			t.Errorf("uniform: dst[%d] = %v, want %v", i, dst[i], want)
		}
	}
	// One rounding only: 0.1·x + 0.9·x = x for values where float32 sums
	// would drift.
	x := []float32{1.1, 3.3, 1e-3, 12345.678}
	Fuse(dst, [][]float32{x, x, x}, []float64{0.1, 0.6, 0.3})
	for i := range x {
		if math.Abs(float64(dst[i]-x[i])) > 0 {
			t.Errorf("convex combination of equal parts: %v, want %v", dst[i], x[i])
		}
	}
	// dst may alias a part.
	al := []float32{1, 2, 3, 4}
	Fuse(al, [][]float32{al, b}, []float64{0.5, 0.5})
	for i, want := range []float32{3, 4, 5, 6} {
		if al[i] != want {
			t.Errorf("aliased: dst[%d] = %v, want %v", i, al[i], want)
		}
	}
	mustPanic(t, "no parts", func() { Fuse(dst, nil, nil) })
	mustPanic(t, "weights", func() { Fuse(dst, [][]float32{a}, []float64{1, 2}) })
	mustPanic(t, "lengths", func() { Fuse(dst, [][]float32{a, b[:3]}, nil) })
}
