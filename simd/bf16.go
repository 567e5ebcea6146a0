package simd

// BF16ToF32 widens bfloat16 bit patterns to float32: dst[i] is the float32
// whose bits are uint32(src[i]) << 16. It is exact, NaN payloads included.
// Every implementation gives identical bits.
//
// BF16ToF32 panics with "simd: length mismatch" if len(dst) != len(src).
func BF16ToF32(dst []float32, src []uint16) {
	if len(dst) != len(src) {
		panic(lengthMismatch)
	}
	bf16ToF32Impl(dst, src)
}

// F32ToBF16 narrows float32 to bfloat16 bit patterns exactly as ggml's
// GGML_FP32_TO_BF16 (ggml_compute_fp32_to_bf16) does, with x the float32
// bits:
//
//	if x&0x7fffffff > 0x7f800000 { // NaN: keep sign and top payload, force quiet
//		dst[i] = uint16(x>>16) | 0x40
//	} else { // round to nearest even; overflow gives ±Inf, subnormals kept
//		dst[i] = uint16((x + 0x7fff + (x>>16)&1) >> 16)
//	}
//
// The AVX-512 BF16 instruction VCVTNEPS2BF16 is not used: it flushes
// subnormal inputs and outputs to zero, which this definition does not.
// Every implementation gives identical bits.
//
// F32ToBF16 panics with "simd: length mismatch" if len(dst) != len(src).
func F32ToBF16(dst []uint16, src []float32) {
	if len(dst) != len(src) {
		panic(lengthMismatch)
	}
	f32ToBF16Impl(dst, src)
}

var (
	bf16ToF32Impl = bf16ToF32Generic
	f32ToBF16Impl = f32ToBF16Generic
)
