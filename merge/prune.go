package merge

import (
	"fmt"
	"math"
	"slices"

	"gonum.org/v1/gonum/mat"
)

// checkCount returns an error wrapping ErrCount unless 1 ≤ n < l.
func checkCount(l, n int) error {
	if l < 2 || n < 1 || n >= l {
		return fmt.Errorf("%w: remove %d of %d blocks (need 1 ≤ n < L)", ErrCount, n, l)
	}
	return nil
}

// dropSteps returns drop steps for the given original blocks, highest first,
// so that each step's current index equals the original one.
func dropSteps(blocks []int, sim func(b int) float64) []Step {
	blocks = slices.Clone(blocks)
	slices.Sort(blocks)
	slices.Reverse(blocks)
	steps := make([]Step, len(blocks))
	for i, b := range blocks {
		steps[i] = Step{Kind: StepDrop, Blocks: [2]int{b, b}, Similarity: sim(b)}
	}
	return steps
}

// PlanPruneReverse returns the plan that drops the last n of L blocks,
// L-1 down to L-n (reverse-order pruning; what the published MKA code
// effectively saves). It needs no calibration data. The error wraps ErrCount
// unless 1 ≤ n < L.
func PlanPruneReverse(l, n int) (*Plan, error) {
	if err := checkCount(l, n); err != nil {
		return nil, err
	}
	blocks := make([]int, n)
	for i := range blocks {
		blocks[i] = l - n + i
	}
	return NewPlan("reverse", l, dropSteps(blocks, func(int) float64 { return 0 }))
}

// PlanPruneBI returns the ShortGPT plan (Men et al. 2024) for L = len(bi)
// blocks: drop the n blocks with the lowest Block Influence bi (see
// BlockInfluence), ties broken by the lower block index. The dropped blocks
// need not be contiguous. Each step's Similarity is 1 - BI, the block's mean
// input/output cosine. The error wraps ErrCount unless 1 ≤ n < L, or
// ErrScore if a BI value is NaN or infinite.
func PlanPruneBI(bi []float64, n int) (*Plan, error) {
	l := len(bi)
	if err := checkCount(l, n); err != nil {
		return nil, err
	}
	for i, v := range bi {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("%w: BI of block %d is %v", ErrScore, i, v)
		}
	}
	idx := make([]int, l)
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		switch {
		case bi[a] < bi[b]:
			return -1
		case bi[a] > bi[b]:
			return 1
		}
		return a - b
	})
	return NewPlan("bi", l, dropSteps(idx[:n], func(b int) float64 { return 1 - bi[b] }))
}

// PlanPruneAngular returns the angular-distance plan (Gromov et al. 2024) for
// L blocks: with representations 0 … L, where representation 0 is the input
// of block 0 and representation i the output of block i-1, it finds
//
//	l* = argmin_{0 ≤ l ≤ L-n} ang(l, l+n)
//
// (the lowest l on ties) and drops blocks l* … l*+n-1, the n blocks between
// representations l* and l*+n. ang is at least (L+1)×(L+1), e.g. from
// AngularMatrix; only entries (l, l+n) are read. Each step's Similarity is
// 1 - ang(l*, l*+n). The error wraps ErrCount unless 1 ≤ n < L, or ErrScore
// if ang is too small or a read entry is NaN or infinite.
func PlanPruneAngular(ang mat.Matrix, l, n int) (*Plan, error) {
	if err := checkCount(l, n); err != nil {
		return nil, err
	}
	if r, c := ang.Dims(); r < l+1 || c < l+1 {
		return nil, fmt.Errorf("%w: angular matrix is %d×%d, need (L+1)×(L+1) = %d×%d", ErrScore, r, c, l+1, l+1)
	}
	best, arg := math.Inf(1), -1
	for s := 0; s+n <= l; s++ {
		v := ang.At(s, s+n)
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("%w: angular distance (%d, %d) is %v", ErrScore, s, s+n, v)
		}
		if v < best {
			best, arg = v, s
		}
	}
	blocks := make([]int, n)
	for i := range blocks {
		blocks[i] = arg + i
	}
	return NewPlan("angular", l, dropSteps(blocks, func(int) float64 { return 1 - best }))
}
