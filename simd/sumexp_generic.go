package simd

import "math"

// sumExpGeneric is the pure-Go SumExp: math.Exp per element, summed in
// order.
func sumExpGeneric(x []float32, m float64) float64 {
	var s float64
	for _, v := range x {
		s += math.Exp(float64(v) - m)
	}
	return s
}
