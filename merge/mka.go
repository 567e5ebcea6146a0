package merge

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"
)

// Order selects which adjacent pair PlanMKA fuses at each step.
type Order int

const (
	// OrderGreedy fuses the most similar adjacent pair anywhere (the later
	// pair on ties). It is the default.
	OrderGreedy Order = iota

	// OrderBackToFront follows the paper: scan the adjacent pairs from the
	// last one forward and fuse the first (i.e. deepest) pair whose
	// similarity is at least the threshold; if none passes, fuse the most
	// similar pair.
	OrderBackToFront
)

// LambdaRule selects how PlanMKA sets the fusion weight λ of the first block
// of a pair (l, m = l+1), θ = λ θ_l + (1 - λ) θ_m.
type LambdaRule int

const (
	// LambdaPaper sets λ = S_lm, the pair's similarity clamped to [0, 1],
	// as the paper describes (α ≈ S_lm). It is the default.
	LambdaPaper LambdaRule = iota

	// LambdaCode is the published code's rule:
	//
	//	λ = sigmoid(r) = 1/(1 + e^-r),  r = mean_row(S_l) / (mean_row(S_l) + mean_row(S_m))
	//
	// with row means over the current similarity matrix, diagonal
	// included (r = ½ if both means are 0). For positive similarities
	// λ ∈ (0.5, 0.73), so it always favours the first block.
	LambdaCode

	// LambdaFixed uses MKAOptions.Fixed for every fusion.
	LambdaFixed
)

// Combine selects how PlanMKA forms a fused block's similarity row.
type Combine int

const (
	// CombineMin takes the elementwise minimum of the two rows: a fused
	// block is only as similar to a neighbour as both of its parts are.
	// It is the default; it keeps a chain of fusions from growing on the
	// strength of one very similar part.
	CombineMin Combine = iota

	// CombineAverage takes the λ-weighted average λ S_l + (1 - λ) S_m,
	// mirroring the weights.
	CombineAverage
)

// MKAOptions configures PlanMKA. The zero value selects the defaults.
type MKAOptions struct {
	// Order is the pair selection order, OrderGreedy by default.
	Order Order

	// Threshold is the similarity a pair must reach under
	// OrderBackToFront. Zero selects the median of the initial adjacent
	// (unprotected) pair similarities, so that the threshold follows the
	// scale of the measure; a negative value lets every pair pass, which
	// always fuses the last two blocks (the published code's choice).
	Threshold float64

	// Lambda is the fusion weight rule, LambdaPaper by default.
	Lambda LambdaRule

	// Fixed is λ for LambdaFixed, in [0, 1].
	Fixed float64

	// Combine is how a fused block's similarity row is formed, CombineMin
	// by default.
	Combine Combine

	// Protect is the number of leading blocks never fused; 0 by default.
	Protect int
}

// PlanMKA returns a plan of n fusions of adjacent blocks from an L×L
// similarity matrix between block representations (Liu et al. 2024).
//
// sim[i][j] is the similarity between the representations of blocks i and j,
// for example SimilarityMatrix(coords, NPIB). The planner only needs the
// matrix to be indexed by block. We use, and recommend, block i's output
// (llama.cpp's "l_out-i"): it covers every block, the last one included. The
// published code uses block i's input instead (layer 0 = the embeddings),
// which never sees the last block's output.
//
// At each step the candidate pairs are the adjacent current blocks (j, j+1)
// with j ≥ Protect, with similarity S_j,j+1; opt.Order picks one pair and
// opt.Lambda its λ. The fused block takes index j, its similarity row is
// combined from the two rows by opt.Combine (and its diagonal from the two
// diagonals), and the matrix shrinks by one. The Layout composes the weights
// (see Plan). Step.Similarity records S_j,j+1 at the time of the step.
//
// The error wraps ErrCount unless 1 ≤ n and n+1 ≤ L - Protect, ErrOption for
// an invalid option, or ErrScore if sim has a NaN or infinite entry.
func PlanMKA(sim mat.Symmetric, n int, opt MKAOptions) (*Plan, error) {
	l := sim.SymmetricDim()
	if err := checkCount(l, n); err != nil {
		return nil, err
	}
	switch {
	case opt.Order != OrderGreedy && opt.Order != OrderBackToFront:
		return nil, fmt.Errorf("%w: unknown order %d", ErrOption, int(opt.Order))
	case opt.Lambda != LambdaPaper && opt.Lambda != LambdaCode && opt.Lambda != LambdaFixed:
		return nil, fmt.Errorf("%w: unknown lambda rule %d", ErrOption, int(opt.Lambda))
	case opt.Lambda == LambdaFixed && !(opt.Fixed >= 0 && opt.Fixed <= 1):
		return nil, fmt.Errorf("%w: fixed lambda %v not in [0, 1]", ErrOption, opt.Fixed)
	case opt.Combine != CombineMin && opt.Combine != CombineAverage:
		return nil, fmt.Errorf("%w: unknown combine rule %d", ErrOption, int(opt.Combine))
	case math.IsNaN(opt.Threshold):
		return nil, fmt.Errorf("%w: threshold is NaN", ErrOption)
	case opt.Protect < 0:
		return nil, fmt.Errorf("%w: protect %d < 0", ErrOption, opt.Protect)
	case l-opt.Protect < n+1:
		return nil, fmt.Errorf("%w: %d fusions need %d unprotected blocks, have %d", ErrCount, n, n+1, l-opt.Protect)
	}

	s := make([][]float64, l)
	for i := range s {
		s[i] = make([]float64, l)
		for j := range s[i] {
			v := sim.At(i, j)
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("%w: similarity (%d, %d) is %v", ErrScore, i, j, v)
			}
			s[i][j] = v
		}
	}

	threshold := opt.Threshold
	if opt.Order == OrderBackToFront {
		switch {
		case threshold == 0:
			pairs := make([]float64, 0, l-1-opt.Protect)
			for j := opt.Protect; j+1 < l; j++ {
				pairs = append(pairs, s[j][j+1])
			}
			threshold = median(pairs)
		case threshold < 0:
			threshold = math.Inf(-1)
		}
	}

	steps := make([]Step, 0, n)
	for len(steps) < n {
		m := len(s)
		j := -1
		if opt.Order == OrderBackToFront {
			for c := m - 2; c >= opt.Protect; c-- {
				if s[c][c+1] >= threshold {
					j = c
					break
				}
			}
		}
		if j < 0 {
			best := math.Inf(-1)
			for c := opt.Protect; c+1 < m; c++ {
				if s[c][c+1] >= best {
					j, best = c, s[c][c+1]
				}
			}
		}
		lam := opt.Fixed
		switch opt.Lambda {
		case LambdaPaper:
			lam = min(max(s[j][j+1], 0), 1)
		case LambdaCode:
			ml, mm := mean(s[j]), mean(s[j+1])
			r := 0.5
			if ml+mm != 0 {
				r = ml / (ml + mm)
			}
			lam = 1 / (1 + math.Exp(-r))
		}
		sjk := s[j][j+1]
		steps = append(steps, Step{Kind: StepFuse, Blocks: [2]int{j, j + 1}, Lambda: lam, Similarity: sjk})

		comb := func(a, b float64) float64 {
			if opt.Combine == CombineMin {
				return min(a, b)
			}
			return lam*a + (1-lam)*b
		}
		row := make([]float64, m)
		for c := 0; c < m; c++ {
			row[c] = comb(s[j][c], s[j+1][c])
		}
		row[j] = comb(s[j][j], s[j+1][j+1])
		row = append(row[:j+1], row[j+2:]...)
		s = append(s[:j+1], s[j+2:]...)
		for c := range s {
			if c == j {
				continue
			}
			s[c] = append(s[c][:j+1], s[c][j+2:]...)
			s[c][j] = row[c]
		}
		s[j] = row
	}
	return NewPlan("mka", l, steps)
}

func mean(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}
