package simd

// Dot returns the inner product of a and b,
//
//	sum_i a[i]*b[i]
//
// accumulated in float32 over several independent lanes (4 to 64 partial
// sums depending on the implementation, with fused multiply-add in the
// assembly versions) that are added at the end. The result therefore
// depends on the implementation in its last bits; the error is bounded by
// about n*eps*sum_i |a[i]*b[i]| with eps = 2^-24, and usually far less.
// Dot of empty slices is 0.
//
// Dot panics with "simd: length mismatch" if len(a) != len(b).
func Dot(a, b []float32) float32 {
	if len(a) != len(b) {
		panic(lengthMismatch)
	}
	return dotImpl(a, b)
}

// SqDist returns the squared Euclidean distance of a and b,
//
//	sum_i (a[i]-b[i])^2
//
// with each difference rounded to float32 and the squares accumulated as in
// [Dot], with the same error bound over the terms (a[i]-b[i])^2.
// SqDist of empty slices is 0.
//
// SqDist panics with "simd: length mismatch" if len(a) != len(b).
func SqDist(a, b []float32) float32 {
	if len(a) != len(b) {
		panic(lengthMismatch)
	}
	return sqDistImpl(a, b)
}

var (
	dotImpl    = dotGeneric
	sqDistImpl = sqDistGeneric
)
