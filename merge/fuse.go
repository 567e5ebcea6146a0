package merge

// Fuse sets dst to the weighted sum of the parts, elementwise:
//
//	dst[i] = float32( Σ_k weights[k] · float64(parts[k][i]) )
//
// Each element is accumulated in float64 and rounded to float32 once, so the
// result does not depend on the number of parts beyond that one rounding.
// Each dst[i] is written after all parts[k][i] are read, so dst may be one
// of the parts. A nil weights means uniform weights 1/len(parts). Fuse does
// not require the weights to sum to 1 (a Plan's Layout does).
//
// Fuse is the hot loop of applying a Plan (a fused block's tensors are
// Fuse(dst, [θ_a, θ_b, …], [w_a, w_b, …]) from its Layout entry); this is
// the reference implementation for a SIMD kernel.
//
// Fuse panics if parts is empty, if weights is not nil and its length
// differs from len(parts), or if a part's length differs from len(dst).
func Fuse(dst []float32, parts [][]float32, weights []float64) {
	if len(parts) == 0 {
		panic("merge: Fuse with no parts")
	}
	if weights == nil {
		weights = make([]float64, len(parts))
		for k := range weights {
			weights[k] = 1 / float64(len(parts))
		}
	}
	if len(weights) != len(parts) {
		panic("merge: Fuse weights and parts length mismatch")
	}
	for _, p := range parts {
		if len(p) != len(dst) {
			panic("merge: Fuse part length mismatch")
		}
	}
	if len(parts) == 2 {
		fuse2(dst, parts[0], parts[1], weights[0], weights[1])
		return
	}
	// Hot loop.
	for i := range dst {
		var s float64
		for k, p := range parts {
			s += weights[k] * float64(p[i])
		}
		dst[i] = float32(s)
	}
}

// fuse2 is Fuse for two parts: dst[i] = float32(wa·a[i] + wb·b[i]).
//
// Hot loop: a candidate for a SIMD kernel.
func fuse2(dst, a, b []float32, wa, wb float64) {
	a = a[:len(dst)]
	b = b[:len(dst)]
	for i := range dst {
		dst[i] = float32(wa*float64(a[i]) + wb*float64(b[i]))
	}
}
