//go:build amd64 && !noasm && gc

package simd

// f16ToF32AVX2 converts halves to float32 with VCVTPH2PS, 8 per ymm:
//
//	for i := range dst {
//		dst[i] = halfToFloat(src[i])
//	}
//
// Requires AVX2 and F16C, len(dst) == len(src) and len(dst)%8 == 0.
//
//go:noescape
func f16ToF32AVX2(dst []float32, src []uint16)

// f32ToF16AVX2 converts float32 to halves with VCVTPS2PH imm8=0 (round to
// nearest even), 8 per ymm:
//
//	for i := range dst {
//		dst[i] = floatToHalf(src[i])
//	}
//
// Requires AVX2 and F16C, len(dst) == len(src) and len(dst)%8 == 0.
//
//go:noescape
func f32ToF16AVX2(dst []uint16, src []float32)

// f16ToF32AVX512 is f16ToF32AVX2 with zmm registers, 16 per vector, and a
// masked tail, so any length is allowed:
//
//	for i := range dst {
//		dst[i] = halfToFloat(src[i])
//	}
//
// Requires AVX512F, AVX512BW, AVX512VL and len(dst) == len(src).
//
//go:noescape
func f16ToF32AVX512(dst []float32, src []uint16)

// f32ToF16AVX512 is f32ToF16AVX2 with zmm registers and a masked tail:
//
//	for i := range dst {
//		dst[i] = floatToHalf(src[i])
//	}
//
// Requires AVX512F, AVX512BW, AVX512VL and len(dst) == len(src).
//
//go:noescape
func f32ToF16AVX512(dst []uint16, src []float32)

// f16ToF32AVX2Tail runs f16ToF32AVX2 on the multiple-of-8 prefix and the
// generic code on the rest.
func f16ToF32AVX2Tail(dst []float32, src []uint16) {
	m := len(dst) &^ 7
	if m > 0 {
		f16ToF32AVX2(dst[:m], src[:m])
	}
	f16ToF32Generic(dst[m:], src[m:])
}

// f32ToF16AVX2Tail runs f32ToF16AVX2 on the multiple-of-8 prefix and the
// generic code on the rest.
func f32ToF16AVX2Tail(dst []uint16, src []float32) {
	m := len(dst) &^ 7
	if m > 0 {
		f32ToF16AVX2(dst[:m], src[:m])
	}
	f32ToF16Generic(dst[m:], src[m:])
}

func selectHalf(l level) {
	switch l {
	case levelAVX512:
		f16ToF32Impl, f32ToF16Impl = f16ToF32AVX512, f32ToF16AVX512
	case levelAVX2:
		f16ToF32Impl, f32ToF16Impl = f16ToF32AVX2Tail, f32ToF16AVX2Tail
	default:
		f16ToF32Impl, f32ToF16Impl = f16ToF32Generic, f32ToF16Generic
	}
	kernelImpl[kF16ToF32] = l.String()
	kernelImpl[kF32ToF16] = l.String()
}
