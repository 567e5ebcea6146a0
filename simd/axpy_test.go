package simd

import (
	"math"
	"math/rand/v2"
	"testing"
)

var lambdas = []float32{0, 1, 0.5, 0.25, 0.3, 1.0 / 3, -0.5, 2, 1e-7}

func TestLerpVsGeneric(t *testing.T) {
	forEachLevel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(1, 2))
		for _, n := range testLengths() {
			for _, o := range offsets(n) {
				lambda := lambdas[r.IntN(len(lambdas))]
				a := randF32(r, n+o[1])[o[1]:]
				b := randF32(r, n+o[0])[o[0]:]
				buf := make([]float32, n+o[0]+5)
				for i := range buf {
					buf[i] = -7
				}
				dst := buf[o[0] : o[0]+n]
				ref := make([]float32, n)
				lerpGeneric(ref, a, b, lambda, 1-lambda)
				Lerp(dst, a, b, lambda)
				for i := range ref {
					if !sameOrNaN(dst[i], ref[i]) {
						t.Fatalf("n=%d off=%v i=%d lambda=%g a=%s b=%s: got %s, want %s", n, o, i, lambda,
							fmtVal(a[i]), fmtVal(b[i]), fmtVal(dst[i]), fmtVal(ref[i]))
					}
				}
				for i, v := range buf {
					if (i < o[0] || i >= o[0]+n) && v != -7 {
						t.Fatalf("n=%d off=%v: wrote outside dst at %d", n, o, i)
					}
				}
			}
		}
	})
}

// TestLerpEnds checks the definition: lambda 1 and 0 return a and b
// exactly, 0.5 is the rounded mean, and dst may alias an input.
func TestLerpEnds(t *testing.T) {
	forEachLevel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(9, 9))
		for _, n := range []int{1, 7, 8, 17, 64, 129, 1000} {
			a, b := randFinite(r, n), randFinite(r, n)
			d := make([]float32, n)
			Lerp(d, a, b, 1)
			for i := range d {
				if !sameF32(d[i], a[i]) && !(d[i] == 0 && a[i] == 0) {
					t.Fatalf("n=%d Lerp(lambda=1)[%d] = %g, want a = %g", n, i, d[i], a[i])
				}
			}
			Lerp(d, a, b, 0)
			for i := range d {
				if d[i] != b[i] {
					t.Fatalf("n=%d Lerp(lambda=0)[%d] = %g, want b = %g", n, i, d[i], b[i])
				}
			}
			ac := append([]float32(nil), a...)
			Lerp(ac, ac, b, 0.5) // dst aliases a
			for i := range ac {
				if want := float32(0.5*a[i]) + float32(0.5*b[i]); ac[i] != want {
					t.Fatalf("n=%d aliased Lerp(0.5)[%d] = %g, want %g", n, i, ac[i], want)
				}
			}
		}
	})
}

func TestAxpyVsGeneric(t *testing.T) {
	alphas := []float32{0, 1, -1, 0.5, 3.25, 1e-3, float32(math.Inf(1))}
	forEachLevel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(4, 2))
		for _, n := range testLengths() {
			for _, o := range offsets(n) {
				alpha := alphas[r.IntN(len(alphas))]
				x := randF32(r, n+o[1])[o[1]:]
				init := randF32(r, n)
				buf := make([]float32, n+o[0]+5)
				for i := range buf {
					buf[i] = -7
				}
				dst := buf[o[0] : o[0]+n]
				copy(dst, init)
				ref := append([]float32(nil), init...)
				axpyGeneric(ref, alpha, x)
				Axpy(dst, alpha, x)
				for i := range ref {
					if !sameOrNaN(dst[i], ref[i]) {
						t.Fatalf("n=%d off=%v i=%d alpha=%g x=%s dst0=%s: got %s, want %s", n, o, i, alpha,
							fmtVal(x[i]), fmtVal(init[i]), fmtVal(dst[i]), fmtVal(ref[i]))
					}
				}
				for i, v := range buf {
					if (i < o[0] || i >= o[0]+n) && v != -7 {
						t.Fatalf("n=%d off=%v: wrote outside dst at %d", n, o, i)
					}
				}
			}
		}
	})
}

// TestAxpyAlias checks dst += alpha*dst, i.e. x aliasing dst.
func TestAxpyAlias(t *testing.T) {
	forEachLevel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(5, 5))
		for _, n := range []int{3, 8, 16, 100, 1000} {
			d := randFinite(r, n)
			want := make([]float32, n)
			for i, v := range d {
				want[i] = v + float32(0.75*v)
			}
			Axpy(d, 0.75, d)
			for i := range d {
				if d[i] != want[i] {
					t.Fatalf("n=%d i=%d: got %g, want %g", n, i, d[i], want[i])
				}
			}
		}
	})
}
