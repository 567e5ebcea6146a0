//go:build amd64 && !noasm && gc

package simd

// bf16ToF32AVX2 widens bfloat16 with VPMOVZXWD and a 16-bit shift:
//
//	for i := range dst {
//		dst[i] = math.Float32frombits(uint32(src[i]) << 16)
//	}
//
// Requires AVX2, len(dst) == len(src) and len(dst)%8 == 0.
//
//go:noescape
func bf16ToF32AVX2(dst []float32, src []uint16)

// f32ToBF16AVX2 narrows float32 to bfloat16 with integer arithmetic (the
// ggml rule, NaN lanes blended in), packing 16 results per iteration:
//
//	for i := range dst {
//		dst[i] = floatToBF16(src[i])
//	}
//
// Requires AVX2, len(dst) == len(src) and len(dst)%16 == 0.
//
//go:noescape
func f32ToBF16AVX2(dst []uint16, src []float32)

// bf16ToF32AVX512 is bf16ToF32AVX2 with zmm registers and a masked tail:
//
//	for i := range dst {
//		dst[i] = math.Float32frombits(uint32(src[i]) << 16)
//	}
//
// Requires AVX512F, AVX512BW, AVX512VL and len(dst) == len(src).
//
//go:noescape
func bf16ToF32AVX512(dst []float32, src []uint16)

// f32ToBF16AVX512 is f32ToBF16AVX2 with zmm registers, a NaN mask register,
// VPMOVDW narrowing and a masked tail:
//
//	for i := range dst {
//		dst[i] = floatToBF16(src[i])
//	}
//
// Requires AVX512F, AVX512BW, AVX512VL and len(dst) == len(src).
//
//go:noescape
func f32ToBF16AVX512(dst []uint16, src []float32)

// bf16ToF32AVX2Tail runs bf16ToF32AVX2 on the multiple-of-8 prefix and the
// generic code on the rest.
func bf16ToF32AVX2Tail(dst []float32, src []uint16) {
	m := len(dst) &^ 7
	if m > 0 {
		bf16ToF32AVX2(dst[:m], src[:m])
	}
	bf16ToF32Generic(dst[m:], src[m:])
}

// f32ToBF16AVX2Tail runs f32ToBF16AVX2 on the multiple-of-16 prefix and the
// generic code on the rest.
func f32ToBF16AVX2Tail(dst []uint16, src []float32) {
	m := len(dst) &^ 15
	if m > 0 {
		f32ToBF16AVX2(dst[:m], src[:m])
	}
	f32ToBF16Generic(dst[m:], src[m:])
}

func selectBF16(l level) {
	switch l {
	case levelAVX512:
		bf16ToF32Impl, f32ToBF16Impl = bf16ToF32AVX512, f32ToBF16AVX512
	case levelAVX2:
		bf16ToF32Impl, f32ToBF16Impl = bf16ToF32AVX2Tail, f32ToBF16AVX2Tail
	default:
		bf16ToF32Impl, f32ToBF16Impl = bf16ToF32Generic, f32ToBF16Generic
	}
	kernelImpl[kBF16ToF32] = l.String()
	kernelImpl[kF32ToBF16] = l.String()
}
