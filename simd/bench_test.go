package simd

import "testing"

// benchSizes are the element counts of the benchmarks: small fits any
// cache, medium fits L1/L2, large streams from memory.
var benchSizes = []struct {
	name string
	n    int
}{{"small", 64}, {"medium", 4096}, {"large", 1 << 20}}

// BenchmarkKernels times every kernel at each size, the selected
// implementation and the generic one side by side, e.g.
//
//	BenchmarkKernels/Dot/medium/selected
//	BenchmarkKernels/Dot/medium/generic
//
// It has no build tag: run it plain and with -tags noasm (or MKA_SIMD=...)
// to compare levels across runs too.
func BenchmarkKernels(b *testing.B) {
	for _, k := range kernelNames {
		b.Run(k, func(b *testing.B) {
			for _, sz := range benchSizes {
				c, _ := newBenchCase(k, sz.n)
				b.Run(sz.name, func(b *testing.B) {
					for _, impl := range []struct {
						name string
						f    func()
					}{{"selected", c.selected}, {"generic", c.generic}} {
						b.Run(impl.name, func(b *testing.B) {
							b.SetBytes(c.bytes)
							for b.Loop() {
								impl.f()
							}
						})
					}
				})
			}
		})
	}
}

// BenchmarkRatio reports Speedup (generic time / selected time) for each
// kernel at the medium size as the custom metric "x".
func BenchmarkRatio(b *testing.B) {
	for _, k := range kernelNames {
		b.Run(k, func(b *testing.B) {
			var s float64
			for b.Loop() {
				s = Speedup(k, 4096)
			}
			b.ReportMetric(s, "x")
		})
	}
}
