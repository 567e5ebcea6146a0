package merge

import (
	"fmt"
	"math"
)

// ReplaceMeCut chooses ReplaceMe's cut (Shopkhoev et al. 2025, arXiv
// 2505.02819) as the official code does (mts-ai/ReplaceMe: distance.py,
// utils.py): last[r] holds each calibration sequence's last-token hidden
// state at representation r (0: the input of block 0, r ≥ 1: the output of
// block r−1; rows of d values, one per sequence), and for every
// l = 0 … L−n−1
//
//	dist[l] = mean over sequences of arccos(cos(last[l+1], last[l+1+n])) / π
//
// (utils.angular_distance with compute_block_distances over HF's
// hidden_states[1:], the embeddings dropped). The cut is the n blocks
// start … start+n−1 with start = argmin dist + 1 (the lowest on ties): block
// 0 is never cut, the cut may end at the last block. One difference: HF's
// last hidden state is taken after the final norm, so a cut ending at the
// last block is measured there against the normalised stream; here it is
// the raw stream (GGUF models hold no HF hidden states).
func ReplaceMeCut(last [][]float32, d, n int) (start int, dist []float64, err error) {
	L := len(last) - 1
	if n < 1 || n > L-1 {
		return 0, nil, fmt.Errorf("%w: cannot cut %d of %d blocks without block 0", ErrCount, n, L)
	}
	rows := len(last[0]) / d
	if rows == 0 {
		return 0, nil, fmt.Errorf("%w: no calibration sequences", ErrScore)
	}
	dist = make([]float64, L-n)
	best := 0
	for l := range dist {
		a, b := last[l+1], last[l+1+n]
		var sum float64
		for s := range rows {
			sum += angularRow(a[s*d:(s+1)*d], b[s*d:(s+1)*d])
		}
		dist[l] = sum / float64(rows)
		if math.IsNaN(dist[l]) {
			return 0, nil, fmt.Errorf("%w: angular distance %d is NaN", ErrScore, l)
		}
		if dist[l] < dist[best] {
			best = l
		}
	}
	return best + 1, dist, nil
}

// angularRow returns arccos(cos(a, b))/π (Cosine64's conventions).
func angularRow(a, b []float32) float64 { return math.Acos(Cosine64(a, b)) / math.Pi }

// Cosine64 returns the cosine of a and b accumulated in float64, clamped to
// [−1, 1]; 0 when either is zero.
func Cosine64(a, b []float32) float64 {
	var ab, aa, bb float64
	for k := range a {
		ab += float64(a[k]) * float64(b[k])
		aa += float64(a[k]) * float64(a[k])
		bb += float64(b[k]) * float64(b[k])
	}
	if aa == 0 || bb == 0 {
		return 0
	}
	return max(-1, min(1, ab/math.Sqrt(aa*bb)))
}
