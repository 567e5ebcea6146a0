package simd

// lerpGeneric is the pure-Go Lerp with mu = 1-lambda precomputed.
// len(dst) == len(a) == len(b). The explicit float32 conversions forbid
// the compiler from fusing into an FMA (Go spec, "Arithmetic operators").
func lerpGeneric(dst, a, b []float32, lambda, mu float32) {
	a = a[:len(dst)]
	b = b[:len(dst)]
	for i := range dst {
		dst[i] = float32(lambda*a[i]) + float32(mu*b[i])
	}
}

// axpyGeneric is the pure-Go Axpy. len(dst) == len(x).
func axpyGeneric(dst []float32, alpha float32, x []float32) {
	x = x[:len(dst)]
	for i := range dst {
		dst[i] += float32(alpha * x[i])
	}
}
