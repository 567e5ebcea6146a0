package simd

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// levels lists every kernel level, lowest first.
var levels = []level{levelGeneric, levelAVX2, levelAVX512}

// forEachLevel runs f once per level the CPU and build support, with the
// kernels forced to that level; levels the machine lacks are skipped.
func forEachLevel(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	for _, l := range levels {
		t.Run(l.String(), func(t *testing.T) {
			if cpuLevel() < l {
				t.Skipf("CPU or build lacks %v", l)
			}
			defer capLevel(l)()
			if active != l {
				t.Skipf("%v capped by %s=%s", l, EnvVar, envValue)
			}
			f(t)
		})
	}
}

// testLengths covers every tail up to twice the widest unrolled loop (64
// elements) plus one, and some large sizes.
func testLengths() []int {
	var ns []int
	for n := 0; n <= 2*64+1; n++ {
		ns = append(ns, n)
	}
	return append(ns, 255, 256, 257, 1000, 4096+7, 1<<16+13)
}

// offsets returns the (dst, src) element offsets to try for length n:
// all of 0..3 x 0..3 for small n, a few for large n.
func offsets(n int) [][2]int {
	if n > 300 {
		return [][2]int{{0, 0}, {1, 3}, {3, 2}}
	}
	var o [][2]int
	for d := range 4 {
		for s := range 4 {
			o = append(o, [2]int{d, s})
		}
	}
	return o
}

// specialF32 are float32 bit patterns that stress the conversions and
// arithmetic: NaNs with payloads, infinities, zeros, subnormals, the half
// range limits and rounding ties of both half and bfloat16.
var specialF32 = []uint32{
	0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001, 0x7fc12345, 0x7fbfffff, // NaNs
	0x7fa00000, 0x7f802000, 0x7f801fff, 0xffffffff, 0x7fffffff, 0x7fff0000, // NaNs
	0x7f800000, 0xff800000, 0x00000000, 0x80000000, // ±Inf, ±0
	0x00000001, 0x80000001, 0x007fffff, 0x00400000, 0x00008000, 0x00018000, // float32 subnormals
	0x00800000, 0x7f7fffff, 0xff7fffff, 0x7f7f8000, 0x7f7f7fff, // min normal, max, bf16 overflow ties
	0x3f800000, 0x3f808000, 0x3f818000, 0x3f808001, 0x3f807fff, // bf16 ties around 1
	0x477fe000, 0x477fefff, 0x477ff000, 0x477ff001, 0x47800000, 0xc77ff000, // 65504, <65520, 65520, >65520, 65536
	0x38800000, 0x387fc000, 0x387fe000, 0x387ff000, 0x387fffff, // 2^-14 and just below
	0x33800000, 0x33000000, 0x33000001, 0x32ffffff, 0x33c00000, 0x34200000, // 2^-24, 2^-25 (tie), 1.5*2^-24, 2.5*2^-24
	0x3f801000, 0x3f803000, 0x3f801001, 0x3f800fff, // half ties around 1 (2^-11 = 0x1000 steps)
	0x40490fdb, 0xc0490fdb, 0x3eaaaaab, 0x42f6e979, // pi, -pi, 1/3, 123.456
}

// randF32 returns n float32 values: a mix of specials, random bit patterns
// and moderate normal values of random scale.
func randF32(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		switch r.IntN(4) {
		case 0:
			s[i] = math.Float32frombits(specialF32[r.IntN(len(specialF32))])
		case 1:
			s[i] = math.Float32frombits(r.Uint32())
		default:
			s[i] = float32(r.NormFloat64() * math.Ldexp(1, r.IntN(40)-20))
		}
	}
	return s
}

// randFinite returns n finite, moderate float32 values.
func randFinite(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(r.NormFloat64() * 10)
	}
	return s
}

// randU16 returns n random 16-bit patterns.
func randU16(r *rand.Rand, n int) []uint16 {
	s := make([]uint16, n)
	for i := range s {
		s[i] = uint16(r.Uint32())
	}
	return s
}

// sameF32 reports whether a and b have the same bits.
func sameF32(a, b float32) bool { return math.Float32bits(a) == math.Float32bits(b) }

// sameOrNaN reports whether a and b have the same bits or are both NaN.
func sameOrNaN(a, b float32) bool { return sameF32(a, b) || a != a && b != b }

// fmtVal prints a value with its bits.
func fmtVal[T float32 | uint16](v T) string {
	switch x := any(v).(type) {
	case float32:
		return fmt.Sprintf("%g (%#08x)", x, math.Float32bits(x))
	default:
		return fmt.Sprintf("%#04x", x)
	}
}

// checkUnary compares got against want (the generic kernel) for every test
// length and offset pair, on sources from gen, and checks that got writes
// nothing outside dst.
func checkUnary[D float32 | uint16, S float32 | uint16](t *testing.T, got, want func([]D, []S), gen func(*rand.Rand, int) []S, eq func(a, b D) bool, sentinel D) {
	t.Helper()
	r := rand.New(rand.NewPCG(7, 11))
	for _, n := range testLengths() {
		for _, o := range offsets(n) {
			src := gen(r, n+o[1])[o[1]:]
			buf := make([]D, o[0]+n+5)
			for i := range buf {
				buf[i] = sentinel
			}
			dst := buf[o[0] : o[0]+n]
			ref := make([]D, n)
			want(ref, src)
			got(dst, src)
			for i := range ref {
				if !eq(dst[i], ref[i]) {
					t.Fatalf("n=%d off=%v i=%d src=%s: got %s, want %s", n, o, i, fmtVal(src[i]), fmtVal(dst[i]), fmtVal(ref[i]))
				}
			}
			for i, v := range buf {
				if (i < o[0] || i >= o[0]+n) && v != sentinel {
					t.Fatalf("n=%d off=%v: wrote %s at buffer index %d outside dst", n, o, fmtVal(v), i)
				}
			}
		}
	}
}

// expectPanic checks that f panics with the length-mismatch message.
func expectPanic(t *testing.T, name string, f func()) {
	t.Helper()
	defer func() {
		t.Helper()
		if r := recover(); r != lengthMismatch {
			t.Errorf("%s: recovered %v, want panic %q", name, r, lengthMismatch)
		}
	}()
	f()
}

// TestLengthMismatch checks every exported kernel's panic.
func TestLengthMismatch(t *testing.T) {
	f, h := make([]float32, 3), make([]uint16, 4)
	g := make([]float32, 4)
	forEachLevel(t, func(t *testing.T) {
		expectPanic(t, "F16ToF32", func() { F16ToF32(f, h) })
		expectPanic(t, "F32ToF16", func() { F32ToF16(h, f) })
		expectPanic(t, "BF16ToF32", func() { BF16ToF32(f, h) })
		expectPanic(t, "F32ToBF16", func() { F32ToBF16(h, f) })
		expectPanic(t, "Lerp a", func() { Lerp(f, g, f, 0.5) })
		expectPanic(t, "Lerp b", func() { Lerp(f, f, g, 0.5) })
		expectPanic(t, "Axpy", func() { Axpy(f, 2, g) })
		expectPanic(t, "Dot", func() { Dot(f, g) })
		expectPanic(t, "SqDist", func() { SqDist(g, f) })
	})
}

// TestEmpty checks that nil and empty slices are accepted everywhere.
func TestEmpty(t *testing.T) {
	forEachLevel(t, func(t *testing.T) {
		F16ToF32(nil, nil)
		F32ToF16(nil, []float32{})
		BF16ToF32([]float32{}, nil)
		F32ToBF16(nil, nil)
		Lerp(nil, nil, nil, 0.5)
		Axpy(nil, 1, nil)
		if d, s := Dot(nil, nil), SqDist(nil, nil); d != 0 || s != 0 {
			t.Errorf("Dot, SqDist of empty = %v, %v; want 0, 0", d, s)
		}
	})
}
