package simd

import "math"

// f16ToF32Generic is the pure-Go F16ToF32. len(dst) == len(src).
func f16ToF32Generic(dst []float32, src []uint16) {
	src = src[:len(dst)]
	for i, h := range src {
		dst[i] = halfToFloat(h)
	}
}

// halfToFloat converts one binary16 bit pattern to float32 exactly.
func halfToFloat(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	em := uint32(h & 0x7fff)
	if em < 0x400 { // ±0 or subnormal em * 2^-24, exact in float32
		return math.Float32frombits(sign | math.Float32bits(float32(em)*0x1p-24))
	}
	r := em<<13 + (127-15)<<23 // normal: rebias the exponent
	if em >= 0x7c00 {          // Inf or NaN: exponent 255, NaN made quiet
		r += (128 - 16) << 23
		if em != 0x7c00 {
			r |= 0x400000
		}
	}
	return math.Float32frombits(sign | r)
}

// f32ToF16Generic is the pure-Go F32ToF16. len(dst) == len(src). The
// conversion is written out in the loop because it is too big for the
// inliner as a function.
func f32ToF16Generic(dst []uint16, src []float32) {
	src = src[:len(dst)]
	for i, f := range src {
		x := math.Float32bits(f)
		ax := x & 0x7fffffff
		var h uint32
		switch {
		case ax < 0x38800000:
			// |f| < 2^-14: adding 0.5 (ulp 2^-24, the half subnormal
			// step) rounds |f| to nearest even in the FPU, and the low
			// bits are then the half bits (0..0x400, the top one being the
			// smallest normal).
			h = math.Float32bits(math.Float32frombits(ax)+0.5) - 0x3f000000
		case ax <= 0x7f800000:
			// Normal half: rebias by 127-15, drop 13 bits rounding to
			// even. Clamping at 65520 makes every larger value, and Inf,
			// round to the Inf pattern 0x7c00.
			ax = min(ax, 0x477ff000) - (127-15)<<23
			h = (ax + 0xfff + (ax>>13)&1) >> 13
		default: // NaN: quiet, top 10 payload bits kept
			h = ax>>13&0x7fff | 0x200
		}
		dst[i] = uint16(x>>16&0x8000 | h)
	}
}

// floatToHalf converts one float32 to binary16 bits as F32ToF16 does.
func floatToHalf(f float32) uint16 {
	var h [1]uint16
	f32ToF16Generic(h[:], []float32{f})
	return h[0]
}
