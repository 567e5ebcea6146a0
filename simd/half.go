package simd

// F16ToF32 converts IEEE 754 binary16 (half) values, given as their bit
// patterns, to float32: dst[i] = float32(src[i]). The conversion is exact.
// A NaN stays a NaN with the same sign and its payload shifted into the top
// of the float32 mantissa, made quiet (a signalling NaN gets the quiet bit,
// as VCVTPH2PS does). Every implementation gives identical bits.
//
// F16ToF32 panics with "simd: length mismatch" if len(dst) != len(src).
func F16ToF32(dst []float32, src []uint16) {
	if len(dst) != len(src) {
		panic(lengthMismatch)
	}
	f16ToF32Impl(dst, src)
}

// F32ToF16 converts float32 values to IEEE 754 binary16 bit patterns,
// rounding to nearest, ties to even: dst[i] = half(src[i]). Magnitudes of
// 65520 and above (and ±Inf) become ±Inf; magnitudes below 2^-14 become
// half subnormals, and those of 2^-25 or less become ±0 (signed zero kept).
// A NaN becomes a quiet half NaN with the same sign and the top 10 bits of
// its payload (sign | 0x7e00 | mantissa>>13), as VCVTPS2PH does. Every
// implementation gives identical bits.
//
// F32ToF16 panics with "simd: length mismatch" if len(dst) != len(src).
func F32ToF16(dst []uint16, src []float32) {
	if len(dst) != len(src) {
		panic(lengthMismatch)
	}
	f32ToF16Impl(dst, src)
}

var (
	f16ToF32Impl = f16ToF32Generic
	f32ToF16Impl = f32ToF16Generic
)
