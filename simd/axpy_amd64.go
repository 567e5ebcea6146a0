//go:build amd64 && !noasm && gc

package simd

// lerpAVX2 blends with VMULPS, VMULPS, VADDPS (no FMA), 8 per ymm:
//
//	for i := range dst {
//		dst[i] = float32(lambda*a[i]) + float32(mu*b[i])
//	}
//
// Requires AVX2, len(dst) == len(a) == len(b) and len(dst)%8 == 0.
//
//go:noescape
func lerpAVX2(dst, a, b []float32, lambda, mu float32)

// axpyAVX2 accumulates with VMULPS, VADDPS (no FMA), 8 per ymm:
//
//	for i := range dst {
//		dst[i] = dst[i] + float32(alpha*x[i])
//	}
//
// Requires AVX2, len(dst) == len(x) and len(dst)%8 == 0.
//
//go:noescape
func axpyAVX2(dst []float32, alpha float32, x []float32)

// lerpAVX512 is lerpAVX2 with zmm registers and a masked tail:
//
//	for i := range dst {
//		dst[i] = float32(lambda*a[i]) + float32(mu*b[i])
//	}
//
// Requires AVX512F, AVX512BW, AVX512VL and len(dst) == len(a) == len(b).
//
//go:noescape
func lerpAVX512(dst, a, b []float32, lambda, mu float32)

// axpyAVX512 is axpyAVX2 with zmm registers and a masked tail:
//
//	for i := range dst {
//		dst[i] = dst[i] + float32(alpha*x[i])
//	}
//
// Requires AVX512F, AVX512BW, AVX512VL and len(dst) == len(x).
//
//go:noescape
func axpyAVX512(dst []float32, alpha float32, x []float32)

// lerpAVX2Tail runs lerpAVX2 on the multiple-of-8 prefix and the generic
// code on the rest.
func lerpAVX2Tail(dst, a, b []float32, lambda, mu float32) {
	m := len(dst) &^ 7
	if m > 0 {
		lerpAVX2(dst[:m], a[:m], b[:m], lambda, mu)
	}
	lerpGeneric(dst[m:], a[m:], b[m:], lambda, mu)
}

// axpyAVX2Tail runs axpyAVX2 on the multiple-of-8 prefix and the generic
// code on the rest.
func axpyAVX2Tail(dst []float32, alpha float32, x []float32) {
	m := len(dst) &^ 7
	if m > 0 {
		axpyAVX2(dst[:m], alpha, x[:m])
	}
	axpyGeneric(dst[m:], alpha, x[m:])
}

func selectAxpy(l level) {
	switch l {
	case levelAVX512:
		lerpImpl, axpyImpl = lerpAVX512, axpyAVX512
	case levelAVX2:
		lerpImpl, axpyImpl = lerpAVX2Tail, axpyAVX2Tail
	default:
		lerpImpl, axpyImpl = lerpGeneric, axpyGeneric
	}
	kernelImpl[kLerp] = l.String()
	kernelImpl[kAxpy] = l.String()
}
