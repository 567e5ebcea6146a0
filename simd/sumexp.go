package simd

// SumExp returns the float64 sum of exp(float64(x[i]) − m), added in index
// order: the same bits as
//
//	var s float64
//	for _, v := range x {
//		s += math.Exp(float64(v) - m)
//	}
//	return s
//
// in every implementation (the log-sum-exp of a row of logits, with m its
// largest value, is m + ln SumExp(row, m)). The assembly version computes
// four exponentials at a time with the operations of Go's own math.Exp on
// amd64 (its FMA path, which every CPU with the avx2 level takes), so the
// exponentials match it bit for bit; the additions stay in order, one at a
// time. Arguments outside [−708, 708], infinities and NaNs go through
// math.Exp itself. SumExp of an empty slice is 0.
func SumExp(x []float32, m float64) float64 {
	return sumExpImpl(x, m)
}

var sumExpImpl = sumExpGeneric
