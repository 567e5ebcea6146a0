//go:build amd64 && !noasm && gc

package simd

import "math"

// sumExpAVX2 adds exp(float64(x[i]) − m) to s for i = 0, 1, … in order,
// four elements at a time, computing each exponential as math.Exp's FMA
// path does (Shibata's reduction by ln 2, a degree-8 Taylor series of
// x/16, four squarings, the power of two put into the exponent bits):
//
//	for n = 0; n+4 <= len(x); n += 4 {
//		if any of x[n:n+4] − m is outside [−708, 708] or NaN {
//			break
//		}
//		for i := n; i < n+4; i++ {
//			s += math.Exp(float64(x[i]) - m)
//		}
//	}
//	return s, n
//
// Requires AVX2 and FMA3.
//
//go:noescape
func sumExpAVX2(x []float32, m, s float64) (sum float64, n int)

// sumExpAVX2Loop is SumExp with sumExpAVX2: the elements it stops at (out
// of its range, or the last one to three) go through math.Exp one at a
// time.
func sumExpAVX2Loop(x []float32, m float64) float64 {
	var s float64
	for len(x) > 0 {
		var n int
		s, n = sumExpAVX2(x, m, s)
		x = x[n:]
		if len(x) > 0 {
			s += math.Exp(float64(x[0]) - m)
			x = x[1:]
		}
	}
	return s
}

// selectSumExp picks the AVX2 code at the avx2 and avx512 levels: the
// in-order float64 additions, not the lanes, bound its speed, so eight
// lanes would gain nothing.
func selectSumExp(l level) {
	if l >= levelAVX2 {
		sumExpImpl = sumExpAVX2Loop
	} else {
		sumExpImpl = sumExpGeneric
	}
	kernelImpl[kSumExp] = l.String()
}
