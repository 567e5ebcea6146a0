package simd

import "math"

// bf16ToF32Generic is the pure-Go BF16ToF32. len(dst) == len(src).
func bf16ToF32Generic(dst []float32, src []uint16) {
	src = src[:len(dst)]
	for i, h := range src {
		dst[i] = math.Float32frombits(uint32(h) << 16)
	}
}

// f32ToBF16Generic is the pure-Go F32ToBF16. len(dst) == len(src).
func f32ToBF16Generic(dst []uint16, src []float32) {
	src = src[:len(dst)]
	for i, f := range src {
		dst[i] = floatToBF16(f)
	}
}

// floatToBF16 is ggml_compute_fp32_to_bf16.
func floatToBF16(f float32) uint16 {
	x := math.Float32bits(f)
	if x&0x7fffffff > 0x7f800000 {
		return uint16(x>>16) | 0x40
	}
	return uint16((x + 0x7fff + (x>>16)&1) >> 16)
}
