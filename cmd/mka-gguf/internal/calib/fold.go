package calib

import (
	"github.com/mka-gguf/mka-gguf/merge"
	"github.com/mka-gguf/mka-gguf/simd"
)

// foldRows is the number of token rows summed in float32 (SIMD) before
// the partial sum is added in float64: the rounding error of a mean stays
// at about foldRows·2⁻²⁴.
const foldRows = 32

// folder reduces the block outputs of one decode inside the capture hook,
// where every microsecond stalls llama.cpp: per sequence the sum of its
// token rows (from skip on) and, against the previous block's rows, the sum
// of the row cosines (Block Influence).
type folder struct {
	d, t, skip int
	prev       []float32 // the previous block's rows, count·t·d
	part       []float32 // d
}

// fold reduces data, the rows of one block for count sequences of t
// tokens, into sums (count·d, overwritten) and returns the cosine sum and
// row count against the previous call's rows (0, 0 when first is true).
func (f *folder) fold(data []float32, count int, first bool, sums []float64) (cosSum float64, cosRows int) {
	d, t := f.d, f.t
	if n := count * t * d; len(f.prev) < n {
		f.prev = make([]float32, n)
	}
	if len(f.part) < d {
		f.part = make([]float32, d)
	}
	clear(sums[:count*d])
	for s := range count {
		sum := sums[s*d : (s+1)*d]
		for j0 := f.skip; j0 < t; j0 += foldRows {
			lo, hi := (s*t+j0)*d, (s*t+min(j0+foldRows, t))*d
			clear(f.part)
			for off := lo; off < hi; off += d {
				simd.Axpy(f.part, 1, data[off:off+d])
			}
			for i, v := range f.part {
				sum[i] += float64(v)
			}
			if !first {
				c, n := merge.CosineSum(f.prev[lo:hi], data[lo:hi], d)
				cosSum += c
				cosRows += n
			}
		}
	}
	copy(f.prev, data[:count*t*d])
	return cosSum, cosRows
}
