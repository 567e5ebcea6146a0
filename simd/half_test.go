package simd

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

func TestF16ToF32VsGeneric(t *testing.T) {
	forEachLevel(t, func(t *testing.T) {
		checkUnary(t, F16ToF32, f16ToF32Generic, randU16, sameF32, float32(-7))
	})
}

func TestF32ToF16VsGeneric(t *testing.T) {
	forEachLevel(t, func(t *testing.T) {
		checkUnary(t, F32ToF16, f32ToF16Generic, randF32, func(a, b uint16) bool { return a == b }, 0xdead)
	})
}

// halfValue is an independent reference: the exact value of a half's bits
// (Inf as ±65536 for rounding purposes is not needed here).
func halfValue(h uint16) float64 {
	e, m := int(h>>10&0x1f), float64(h&0x3ff)
	v := math.Ldexp(m, -24) // subnormal
	if e == 0x1f {
		v = math.Inf(1)
		if m != 0 {
			v = math.NaN()
		}
	} else if e > 0 {
		v = math.Ldexp(1024+m, e-25)
	}
	if h&0x8000 != 0 {
		v = -v
	}
	return v
}

// TestF16ToF32All converts all 65536 halves and checks them against the
// exact value (and the NaN rule), then round-trips them through F32ToF16.
func TestF16ToF32All(t *testing.T) {
	src := make([]uint16, 1<<16)
	for i := range src {
		src[i] = uint16(i)
	}
	forEachLevel(t, func(t *testing.T) {
		f := make([]float32, len(src))
		F16ToF32(f, src)
		back := make([]uint16, len(src))
		F32ToF16(back, f)
		for i, h := range src {
			want := halfValue(h)
			if math.IsNaN(want) {
				bits := math.Float32bits(f[i])
				wantBits := uint32(h&0x8000)<<16 | 0x7fc00000 | uint32(h&0x3ff)<<13
				if bits != wantBits {
					t.Fatalf("F16ToF32(%#04x) = %#08x, want quiet NaN %#08x", h, bits, wantBits)
				}
				if back[i] != h|0x200 {
					t.Fatalf("NaN %#04x round-trips to %#04x, want %#04x", h, back[i], h|0x200)
				}
				continue
			}
			if float64(f[i]) != want || math.Signbit(float64(f[i])) != (h&0x8000 != 0) {
				t.Fatalf("F16ToF32(%#04x) = %g, want %g", h, f[i], want)
			}
			if back[i] != h {
				t.Fatalf("half %#04x round-trips to %#04x", h, back[i])
			}
		}
	})
}

// finiteHalves is the sorted list of the values of halves 0x0000..0x7bff,
// plus 65536 standing for the rounding target of Inf (0x7c00).
var finiteHalves = func() []float64 {
	v := make([]float64, 0x7c01)
	for h := range 0x7c00 {
		v[h] = halfValue(uint16(h))
	}
	v[0x7c00] = 65536
	return v
}()

// refF32ToF16 rounds a non-NaN float32 to half by searching the table of
// half values: nearest wins, ties go to the even bit pattern.
func refF32ToF16(f float32) uint16 {
	x := math.Abs(float64(f))
	var sign uint16
	if math.Signbit(float64(f)) {
		sign = 0x8000
	}
	i := sort.SearchFloat64s(finiteHalves, x) // first value >= x
	if i == len(finiteHalves) {
		return sign | 0x7c00
	}
	h := uint16(i)
	if i > 0 && finiteHalves[i] != x {
		lo, hi := finiteHalves[i-1], finiteHalves[i]
		if x-lo < hi-x || x-lo == hi-x && (i-1)&1 == 0 {
			h = uint16(i - 1)
		}
	}
	return sign | h
}

// TestF32ToF16Reference checks F32ToF16 against the table reference on
// specials, random values, and every tie between adjacent halves (and one
// float32 step either side of it).
func TestF32ToF16Reference(t *testing.T) {
	var in []float32
	for _, b := range specialF32 {
		in = append(in, math.Float32frombits(b))
	}
	for h := range 0x7c00 {
		mid := float32((finiteHalves[h] + finiteHalves[h+1]) / 2) // exact: 12 significant bits
		in = append(in, mid, -mid, math.Nextafter32(mid, 0), math.Nextafter32(mid, 1e9))
	}
	r := rand.New(rand.NewPCG(3, 5))
	for range 1 << 16 {
		in = append(in, math.Float32frombits(r.Uint32()), float32(r.NormFloat64()*math.Ldexp(1, r.IntN(44)-28)))
	}
	forEachLevel(t, func(t *testing.T) {
		got := make([]uint16, len(in))
		F32ToF16(got, in)
		for i, f := range in {
			if f != f {
				b := math.Float32bits(f)
				want := uint16(b>>16)&0x8000 | 0x7e00 | uint16(b>>13)&0x3ff
				if got[i] != want {
					t.Fatalf("F32ToF16(NaN %#08x) = %#04x, want %#04x", b, got[i], want)
				}
				continue
			}
			if want := refF32ToF16(f); got[i] != want {
				t.Fatalf("F32ToF16(%g = %#08x) = %#04x, want %#04x", f, math.Float32bits(f), got[i], want)
			}
		}
	})
}
