package simd

// Lerp blends two vectors: dst[i] = lambda*a[i] + (1-lambda)*b[i], computed
// in float32 with exactly these roundings (no fused multiply-add):
//
//	mu := 1 - lambda // rounded to float32 once
//	dst[i] = float32(lambda*a[i]) + float32(mu*b[i])
//
// so lambda = 1 gives a and lambda = 0 gives b exactly (for finite inputs,
// up to the sign of a zero).
// Every implementation gives identical bits, except that which NaN payload a
// NaN result carries is unspecified. dst may be a or b itself but must not
// otherwise overlap them.
//
// Lerp panics with "simd: length mismatch" unless len(dst) == len(a) ==
// len(b).
func Lerp(dst, a, b []float32, lambda float32) {
	if len(dst) != len(a) || len(dst) != len(b) {
		panic(lengthMismatch)
	}
	lerpImpl(dst, a, b, lambda, 1-lambda)
}

// Axpy accumulates a scaled vector: dst[i] += alpha*x[i], computed in
// float32 as
//
//	dst[i] = dst[i] + float32(alpha*x[i])
//
// (two roundings, no fused multiply-add), so every implementation gives
// identical bits, except that which NaN payload a NaN result carries is
// unspecified. It is meant for accumulating weighted sums of several
// blocks. x may be dst itself but must not otherwise overlap it.
//
// Axpy panics with "simd: length mismatch" if len(dst) != len(x).
func Axpy(dst []float32, alpha float32, x []float32) {
	if len(dst) != len(x) {
		panic(lengthMismatch)
	}
	axpyImpl(dst, alpha, x)
}

var (
	lerpImpl = lerpGeneric
	axpyImpl = axpyGeneric
)
