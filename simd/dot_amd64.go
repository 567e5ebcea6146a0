//go:build amd64 && !noasm && gc

package simd

// dotAVX2 returns the inner product with VFMADD231PS into four ymm
// accumulators (32 lanes), reduced at the end:
//
//	var s float32
//	for i := range a {
//		s += a[i] * b[i]
//	}
//	return s
//
// Requires AVX2, FMA3, len(a) == len(b) and len(a)%8 == 0.
//
//go:noescape
func dotAVX2(a, b []float32) float32

// sqDistAVX2 is dotAVX2 over the differences (VSUBPS, then VFMADD231PS):
//
//	var s float32
//	for i := range a {
//		d := a[i] - b[i]
//		s += d * d
//	}
//	return s
//
// Requires AVX2, FMA3, len(a) == len(b) and len(a)%8 == 0.
//
//go:noescape
func sqDistAVX2(a, b []float32) float32

// dotAVX512 is dotAVX2 with four zmm accumulators (64 lanes) and a masked
// tail:
//
//	var s float32
//	for i := range a {
//		s += a[i] * b[i]
//	}
//	return s
//
// Requires AVX512F, AVX512BW, AVX512VL and len(a) == len(b).
//
//go:noescape
func dotAVX512(a, b []float32) float32

// sqDistAVX512 is sqDistAVX2 with four zmm accumulators and a masked tail:
//
//	var s float32
//	for i := range a {
//		d := a[i] - b[i]
//		s += d * d
//	}
//	return s
//
// Requires AVX512F, AVX512BW, AVX512VL and len(a) == len(b).
//
//go:noescape
func sqDistAVX512(a, b []float32) float32

// dotAVX2Tail runs dotAVX2 on the multiple-of-8 prefix and adds the rest.
func dotAVX2Tail(a, b []float32) float32 {
	m := len(a) &^ 7
	var s float32
	if m > 0 {
		s = dotAVX2(a[:m], b[:m])
	}
	b = b[:len(a)]
	for i := m; i < len(a); i++ {
		s += a[i] * b[i]
	}
	return s
}

// sqDistAVX2Tail runs sqDistAVX2 on the multiple-of-8 prefix and adds the
// rest.
func sqDistAVX2Tail(a, b []float32) float32 {
	m := len(a) &^ 7
	var s float32
	if m > 0 {
		s = sqDistAVX2(a[:m], b[:m])
	}
	b = b[:len(a)]
	for i := m; i < len(a); i++ {
		d := a[i] - b[i]
		s += d * d
	}
	return s
}

func selectDot(l level) {
	switch l {
	case levelAVX512:
		dotImpl, sqDistImpl = dotAVX512, sqDistAVX512
	case levelAVX2:
		dotImpl, sqDistImpl = dotAVX2Tail, sqDistAVX2Tail
	default:
		dotImpl, sqDistImpl = dotGeneric, sqDistGeneric
	}
	kernelImpl[kDot] = l.String()
	kernelImpl[kSqDist] = l.String()
}
