package simd

import (
	"math"
	"math/rand/v2"
	"time"
)

// benchCase holds one kernel's selected and generic implementations bound
// to buffers of n elements, and the bytes one call moves.
type benchCase struct {
	selected, generic func()
	bytes             int64
}

// sink keeps the reductions' results alive.
var sink float32

// sinkF64 keeps SumExp's results alive.
var sinkF64 float64

// newBenchCase binds kernel (one of the names Kernels lists) to fresh,
// deterministic buffers of n elements. selected calls the exported
// function, so it includes the length check and the dispatch.
func newBenchCase(kernel string, n int) (benchCase, bool) {
	r := rand.New(rand.NewPCG(1, uint64(n)))
	f32 := func() []float32 {
		s := make([]float32, n)
		for i := range s {
			s[i] = float32(r.NormFloat64() * 100)
		}
		return s
	}
	halves := func() []uint16 {
		s := make([]uint16, n)
		for i := range s {
			s[i] = floatToHalf(float32(r.NormFloat64() * 100))
		}
		return s
	}
	brains := func() []uint16 {
		s := make([]uint16, n)
		for i := range s {
			s[i] = floatToBF16(float32(r.NormFloat64() * 100))
		}
		return s
	}
	n64 := int64(n)
	switch kernel {
	case "F16ToF32":
		d, s := make([]float32, n), halves()
		return benchCase{func() { F16ToF32(d, s) }, func() { f16ToF32Generic(d, s) }, 6 * n64}, true
	case "F32ToF16":
		d, s := make([]uint16, n), f32()
		return benchCase{func() { F32ToF16(d, s) }, func() { f32ToF16Generic(d, s) }, 6 * n64}, true
	case "BF16ToF32":
		d, s := make([]float32, n), brains()
		return benchCase{func() { BF16ToF32(d, s) }, func() { bf16ToF32Generic(d, s) }, 6 * n64}, true
	case "F32ToBF16":
		d, s := make([]uint16, n), f32()
		return benchCase{func() { F32ToBF16(d, s) }, func() { f32ToBF16Generic(d, s) }, 6 * n64}, true
	case "Lerp":
		d, a, b := make([]float32, n), f32(), f32()
		return benchCase{func() { Lerp(d, a, b, 0.25) }, func() { lerpGeneric(d, a, b, 0.25, 0.75) }, 12 * n64}, true
	case "Axpy":
		// alpha = 0 keeps dst bounded however often it runs.
		d, x := f32(), f32()
		return benchCase{func() { Axpy(d, 0, x) }, func() { axpyGeneric(d, 0, x) }, 12 * n64}, true
	case "Dot":
		a, b := f32(), f32()
		return benchCase{func() { sink += Dot(a, b) }, func() { sink += dotGeneric(a, b) }, 8 * n64}, true
	case "SqDist":
		a, b := f32(), f32()
		return benchCase{func() { sink += SqDist(a, b) }, func() { sink += sqDistGeneric(a, b) }, 8 * n64}, true
	case "SumExp":
		// Logits-like values below m = 0: every element takes the fast path.
		a := f32()
		for i := range a {
			a[i] = -float32(math.Abs(float64(a[i]))) / 10
		}
		return benchCase{func() { sinkF64 += SumExp(a, 0) }, func() { sinkF64 += sumExpGeneric(a, 0) }, 4 * n64}, true
	}
	return benchCase{}, false
}

// speedupWork is the number of elements each timing round processes.
const speedupWork = 1 << 22

// Speedup times the selected implementation of kernel against the generic
// Go one on slices of n elements and returns generic time / selected time
// (so 1 means no gain, and it is 1 when the generic code is selected).
// kernel is one of the names [Kernels] lists: F16ToF32, F32ToF16,
// BF16ToF32, F32ToBF16, Lerp, Axpy, Dot, SqDist, SumExp. Each implementation
// processes at least 2^22 elements per round (repeating the call as
// needed), and the best of 5 rounds counts, so a call takes roughly 10-100
// ms. Speedup returns 0 for an unknown kernel or n < 1. It must not run
// concurrently with Disable or the test hooks.
func Speedup(kernel string, n int) float64 {
	if n < 1 {
		return 0
	}
	c, ok := newBenchCase(kernel, n)
	if !ok {
		return 0
	}
	reps := max(1, speedupWork/n)
	tg := bestTime(c.generic, reps)
	ts := bestTime(c.selected, reps)
	if ts <= 0 {
		return math.Inf(1)
	}
	return float64(tg) / float64(ts)
}

// bestTime returns the fastest of 5 rounds of reps calls of f, after one
// warm-up call.
func bestTime(f func(), reps int) time.Duration {
	f()
	best := time.Duration(math.MaxInt64)
	for range 5 {
		t0 := time.Now()
		for range reps {
			f()
		}
		best = min(best, time.Since(t0))
	}
	return best
}
