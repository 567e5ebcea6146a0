package simd

import (
	"math"
	"math/rand/v2"
	"testing"
)

// checkSum compares a float32 reduction with the float64 sum ref of terms
// whose magnitudes add to abs: |got-ref| <= (n+8)*2^-23*abs, or both NaN,
// or equal infinities.
func checkSum(t *testing.T, what string, n int, got float32, ref, abs float64) {
	t.Helper()
	g := float64(got)
	switch {
	case math.IsNaN(ref) || math.IsNaN(g):
		if !math.IsNaN(ref) || !math.IsNaN(g) {
			t.Fatalf("%s n=%d: got %g, want %g", what, n, got, ref)
		}
	case math.IsInf(ref, 0) || math.IsInf(g, 0):
		// A float32 sum may overflow where the float64 one does not.
		if math.IsInf(ref, 0) && g != ref || !math.IsInf(ref, 0) && math.Abs(ref) < 1e38 {
			t.Fatalf("%s n=%d: got %g, want %g", what, n, got, ref)
		}
	default:
		tol := float64(n+8) * 0x1p-23 * abs
		if d := math.Abs(g - ref); d > tol {
			t.Fatalf("%s n=%d: got %g, want %g (|diff| %g > tol %g)", what, n, got, ref, d, tol)
		}
	}
}

// refDot returns the float64 dot product and sum of |terms|.
func refDot(a, b []float32) (sum, abs float64) {
	for i := range a {
		p := float64(a[i]) * float64(b[i])
		sum += p
		abs += math.Abs(p)
	}
	return sum, abs
}

// refSqDist returns the float64 squared distance (of the float32-rounded
// differences, as SqDist defines) and the sum of |terms|.
func refSqDist(a, b []float32) (sum, abs float64) {
	for i := range a {
		d := float64(a[i] - b[i])
		sum += d * d
	}
	return sum, sum
}

func TestDotSqDist(t *testing.T) {
	forEachLevel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(8, 8))
		for _, n := range testLengths() {
			for _, o := range offsets(n) {
				a := randFinite(r, n+o[0])[o[0]:]
				b := randFinite(r, n+o[1])[o[1]:]
				ref, abs := refDot(a, b)
				checkSum(t, "Dot", n, Dot(a, b), ref, abs)
				checkSum(t, "Dot generic", n, dotGeneric(a, b), ref, abs)
				ref, abs = refSqDist(a, b)
				checkSum(t, "SqDist", n, SqDist(a, b), ref, abs)
				checkSum(t, "SqDist generic", n, sqDistGeneric(a, b), ref, abs)
			}
		}
	})
}

// TestDotExact uses small integers, whose sums are exact in float32 in any
// order, so every implementation must agree exactly.
func TestDotExact(t *testing.T) {
	forEachLevel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(6, 6))
		for _, n := range testLengths() {
			a, b := make([]float32, n), make([]float32, n)
			for i := range a {
				a[i], b[i] = float32(r.IntN(17)-8), float32(r.IntN(17)-8)
			}
			if g, w := Dot(a, b), dotGeneric(a, b); g != w {
				t.Fatalf("Dot n=%d = %g, want %g", n, g, w)
			}
			if g, w := SqDist(a, b), sqDistGeneric(a, b); g != w {
				t.Fatalf("SqDist n=%d = %g, want %g", n, g, w)
			}
		}
	})
}

// TestDotSpecial checks that NaN and Inf propagate through every lane and
// tail position.
func TestDotSpecial(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	forEachLevel(t, func(t *testing.T) {
		for _, n := range []int{1, 5, 8, 15, 16, 31, 63, 64, 65, 129, 1000} {
			for _, pos := range []int{0, n / 2, n - 1} {
				a, b := make([]float32, n), make([]float32, n)
				for i := range a {
					a[i], b[i] = 1, 2
				}
				a[pos] = nan
				if d := Dot(a, b); d == d {
					t.Fatalf("Dot with NaN at %d/%d = %g", pos, n, d)
				}
				if d := SqDist(a, b); d == d {
					t.Fatalf("SqDist with NaN at %d/%d = %g", pos, n, d)
				}
				a[pos] = inf
				if d := Dot(a, b); d != inf {
					t.Fatalf("Dot with +Inf at %d/%d = %g", pos, n, d)
				}
				if d := SqDist(a, b); d != inf {
					t.Fatalf("SqDist with +Inf at %d/%d = %g", pos, n, d)
				}
			}
		}
	})
}
