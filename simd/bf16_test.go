package simd

import (
	"math"
	"testing"
)

func TestBF16ToF32VsGeneric(t *testing.T) {
	forEachLevel(t, func(t *testing.T) {
		checkUnary(t, BF16ToF32, bf16ToF32Generic, randU16, sameF32, float32(-7))
	})
}

func TestF32ToBF16VsGeneric(t *testing.T) {
	forEachLevel(t, func(t *testing.T) {
		checkUnary(t, F32ToBF16, f32ToBF16Generic, randF32, func(a, b uint16) bool { return a == b }, 0xdead)
	})
}

// TestF32ToBF16Vectors pins the ggml rule on hand-checked cases.
func TestF32ToBF16Vectors(t *testing.T) {
	cases := []struct {
		in   uint32
		want uint16
	}{
		{0x3f800000, 0x3f80}, // 1
		{0x3f808000, 0x3f80}, // tie, even stays
		{0x3f818000, 0x3f82}, // tie, odd rounds up
		{0x3f808001, 0x3f81}, // above tie
		{0x3f807fff, 0x3f80}, // below tie
		{0xbf818000, 0xbf82}, // negative tie
		{0x7f7fffff, 0x7f80}, // max float rounds to +Inf
		{0x7f7f7fff, 0x7f7f}, // stays finite
		{0xff7f8000, 0xff80}, // tie at the top rounds to -Inf
		{0x7f800000, 0x7f80}, // +Inf
		{0xff800000, 0xff80}, // -Inf
		{0x80000000, 0x8000}, // -0
		{0x00000001, 0x0000}, // tiny subnormal rounds to 0
		{0x00008000, 0x0000}, // subnormal tie to even 0
		{0x00018000, 0x0002}, // subnormal tie to even 2 (not flushed)
		{0x007fffff, 0x0080}, // largest subnormal rounds to min normal
		{0x7f800001, 0x7fc0}, // signalling NaN becomes quiet
		{0xff800001, 0xffc0}, // sign kept
		{0x7fc12345, 0x7fc1}, // payload truncated, not rounded
		{0x7fffffff, 0x7fff}, // no rounding carry out of a NaN
		{0x7fbf8000, 0x7fff}, // sNaN with top payload: quiet bit or-ed in
	}
	in := make([]float32, len(cases))
	for i, c := range cases {
		in[i] = math.Float32frombits(c.in)
	}
	forEachLevel(t, func(t *testing.T) {
		for _, n := range []int{len(cases), len(cases) + 64 + 3} {
			src := make([]float32, n) // pad so the vector paths see them too
			copy(src[n-len(cases):], in)
			got := make([]uint16, n)
			F32ToBF16(got, src)
			for i, c := range cases {
				if g := got[n-len(cases)+i]; g != c.want {
					t.Errorf("n=%d F32ToBF16(%#08x) = %#04x, want %#04x", n, c.in, g, c.want)
				}
			}
		}
	})
}

// TestBF16RoundTrip widens all 65536 bfloat16 values, checks the bits, and
// narrows them back: exact, except NaNs which come back quiet.
func TestBF16RoundTrip(t *testing.T) {
	src := make([]uint16, 1<<16)
	for i := range src {
		src[i] = uint16(i)
	}
	forEachLevel(t, func(t *testing.T) {
		f := make([]float32, len(src))
		BF16ToF32(f, src)
		back := make([]uint16, len(src))
		F32ToBF16(back, f)
		for i, h := range src {
			if b := math.Float32bits(f[i]); b != uint32(h)<<16 {
				t.Fatalf("BF16ToF32(%#04x) = %#08x", h, b)
			}
			want := h
			if h&0x7fff > 0x7f80 {
				want |= 0x40
			}
			if back[i] != want {
				t.Fatalf("bfloat16 %#04x round-trips to %#04x, want %#04x", h, back[i], want)
			}
		}
	})
}
