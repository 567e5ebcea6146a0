// Package kld measures how far a model's next-token distributions moved
// from a base model's on the same text, with the statistics and definitions
// of llama.cpp's llama-perplexity --kl-divergence:
//
//	KLD     = Σ_v p_base(v) · (ln p_base(v) − ln p(v))   per scored token, nats
//	Δp      = p(next) − p_base(next)                      (next: the token that follows)
//	same top: argmax p == argmax p_base
//	ln(PPL(model)/PPL(base)) = mean(nll) − mean(nll_base)
//
// Means carry llama.cpp's standard errors: sqrt((E[x²] − E[x]²)/(n − 1))
// (0 for 10 tokens or fewer), the ratio's from the covariance of the two
// NLLs, RMS Δp's by the delta method. Percentiles interpolate linearly
// between sorted values at fraction·(n − 1), as llama.cpp does. One float
// per scored token is kept for the percentiles; nothing grows with the
// vocabulary times the text.
package kld

import (
	"cmp"
	"fmt"
	"math"
	"slices"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/ppl"
)

// Dist is the base model's next-token distribution at one position, as
// natural log-probabilities.
type Dist struct {
	// IDs are the tokens LogP covers, most probable first; nil means LogP
	// covers the whole vocabulary in token order.
	IDs []int32
	// LogP holds ln p_base of the tokens.
	LogP []float32
	// Tail is ln of the probability of the tokens outside IDs (−Inf when
	// LogP covers the whole vocabulary).
	Tail float64
	// Next is ln p_base of the token that follows in the text.
	Next float32
	// Top is the base model's most probable token.
	Top int32
}

// tailDirect is the tail mass below which Score sums the tail token by
// token instead of taking 1 − the kept tokens' mass: the softmax sums to 1
// within about 1e-13, so 1 − kept keeps at least 7 digits above it.
const tailDirect = 1e-6

// Scratch is reusable working memory for FromLogits and Score; the zero
// value is ready to use. One Scratch must not be shared between goroutines.
type Scratch struct {
	vals []float32
	mark []bool // all false between calls
}

func (sc *Scratch) marks(n int) []bool {
	if len(sc.mark) < n {
		sc.mark = make([]bool, n)
	}
	return sc.mark[:n]
}

// FromLogits fills d with the distribution softmax(logits), next being the
// token that follows. With 0 < k < len(logits) only the k most probable
// tokens are kept (and the mass of the rest in Tail); otherwise all of them.
// d's slices are reused.
func FromLogits(d *Dist, logits []float32, next int32, k int, sc *Scratch) {
	lse, top := ppl.LogSumExp(logits)
	d.Top, d.Next = int32(top), float32(float64(logits[next])-lse)
	if k <= 0 || k >= len(logits) {
		d.IDs, d.Tail = nil, math.Inf(-1)
		d.LogP = slices.Grow(d.LogP[:0], len(logits))[:len(logits)]
		for i, l := range logits {
			d.LogP[i] = float32(float64(l) - lse)
		}
		return
	}
	sc.vals = append(sc.vals[:0], logits...)
	d.IDs = topK(d.IDs[:0], logits, k, sc.vals)
	d.LogP = slices.Grow(d.LogP[:0], k)[:k]
	mark := sc.marks(len(logits))
	for i, id := range d.IDs {
		d.LogP[i] = float32(float64(logits[id]) - lse)
		mark[id] = true
	}
	// The tail from its own terms, not as 1 − Σ kept, which loses every
	// digit when the kept tokens hold almost all the mass.
	var tail float64
	for i, l := range logits {
		if !mark[i] {
			tail += math.Exp(float64(l) - lse)
		}
	}
	for _, id := range d.IDs {
		mark[id] = false
	}
	d.Tail = math.Log(tail)
}

// topK returns the indices of the k largest logits, largest first (ties by
// lower index), appended to dst; vals is a copy of logits it may reorder.
func topK(dst []int32, logits []float32, k int, vals []float32) []int32 {
	thr := kthLargest(vals, k)
	for i, l := range logits {
		if l > thr {
			dst = append(dst, int32(i))
		}
	}
	for i, l := range logits {
		if len(dst) == k {
			break
		}
		if l == thr {
			dst = append(dst, int32(i))
		}
	}
	slices.SortStableFunc(dst, func(a, b int32) int { return cmp.Compare(logits[b], logits[a]) })
	return dst
}

// kthLargest returns the k-th largest value of v (1-based), reordering v
// (quickselect, linear time on average).
func kthLargest(v []float32, k int) float32 {
	lo, hi, want := 0, len(v)-1, k-1
	for lo < hi {
		p := v[lo+(hi-lo)/2]
		i, j := lo, hi
		for i <= j {
			for v[i] > p {
				i++
			}
			for v[j] < p {
				j--
			}
			if i <= j {
				v[i], v[j] = v[j], v[i]
				i++
				j--
			}
		}
		switch {
		case want <= j:
			hi = j
		case want >= i:
			lo = i
		default:
			return v[want]
		}
	}
	return v[want]
}

// Token is the comparison at one scored position.
type Token struct {
	KLD     float64 // KL(p_base ‖ p), nats
	NLL     float64 // −ln p(next)
	BaseNLL float64 // −ln p_base(next)
	DP      float64 // p(next) − p_base(next)
	SameTop bool    // argmax p == argmax p_base
}

// Score compares the model's logits at one position with the base's
// distribution there; next is the token that follows. When base covers
// only its most probable tokens, the rest count as one outcome ("the
// tail"), so KLD is then a lower bound of the full one (the KL divergence
// of a coarser partition is never larger) and exact when the tail is
// empty.
func Score(base *Dist, logits []float32, next int32, sc *Scratch) Token {
	lse, top := ppl.LogSumExp(logits)
	t := Token{NLL: lse - float64(logits[next]), BaseNLL: -float64(base.Next), SameTop: int32(top) == base.Top}
	t.DP = math.Exp(-t.NLL) - math.Exp(-t.BaseNLL)
	if base.IDs == nil {
		for i, lp := range base.LogP {
			if p := math.Exp(float64(lp)); p > 0 {
				t.KLD += p * (float64(lp) - (float64(logits[i]) - lse))
			}
		}
		return t
	}
	var kept float64 // the model's probability of the base's kept tokens
	for i, id := range base.IDs {
		lp, l := float64(base.LogP[i]), float64(logits[id])-lse
		t.KLD += math.Exp(lp) * (lp - l)
		kept += math.Exp(l)
	}
	// The rest of the model's mass: 1 − kept, unless that leaves too few
	// digits (below tailDirect), then summed over the other tokens.
	tail := 1 - kept
	if tail < tailDirect {
		mark := sc.marks(len(logits))
		for _, id := range base.IDs {
			mark[id] = true
		}
		tail = 0
		for i, l := range logits {
			if !mark[i] {
				tail += math.Exp(float64(l) - lse)
			}
		}
		for _, id := range base.IDs {
			mark[id] = false
		}
	}
	if pt := math.Exp(base.Tail); pt > 0 {
		t.KLD += pt * (base.Tail - math.Log(tail))
	}
	return t
}

// Accumulator gathers Tokens: llama.cpp's sums plus one KLD and one Δp per
// token for the percentiles.
type Accumulator struct {
	n, same                         int
	nll, nll2, base, base2, nllBase float64
	kld, kld2, dp, dp2, dp4         float64
	klds, dps                       []float32
}

// Add records one token.
func (a *Accumulator) Add(t Token) {
	a.n++
	if t.SameTop {
		a.same++
	}
	a.nll += t.NLL
	a.nll2 += t.NLL * t.NLL
	a.base += t.BaseNLL
	a.base2 += t.BaseNLL * t.BaseNLL
	a.nllBase += t.NLL * t.BaseNLL
	a.kld += t.KLD
	a.kld2 += t.KLD * t.KLD
	a.dp += t.DP
	d2 := t.DP * t.DP
	a.dp2 += d2
	a.dp4 += d2 * d2
	a.klds = append(a.klds, float32(t.KLD))
	a.dps = append(a.dps, float32(t.DP))
}

// N returns the number of tokens added.
func (a *Accumulator) N() int { return a.n }

// Summary is the result of a comparison: every statistic llama-perplexity
// --kl-divergence prints. Errors are standard errors; percentages are 0–100.
type Summary struct {
	Tokens int `json:"tokens"` // scored tokens

	PPL           float64 `json:"ppl"` // exp(mean nll) of the model
	PPLErr        float64 `json:"ppl_stderr"`
	BasePPL       float64 `json:"base_ppl"`
	BasePPLErr    float64 `json:"base_ppl_stderr"`
	LogPPLCor     float64 `json:"ln_ppl_correlation"` // correlation of the two NLLs
	LnPPLRatio    float64 `json:"ln_ppl_ratio"`       // ln(PPL/PPL_base)
	LnPPLRatioErr float64 `json:"ln_ppl_ratio_stderr"`
	PPLRatio      float64 `json:"ppl_ratio"` // PPL/PPL_base
	PPLRatioErr   float64 `json:"ppl_ratio_stderr"`
	PPLDiff       float64 `json:"ppl_diff"` // PPL − PPL_base
	PPLDiffErr    float64 `json:"ppl_diff_stderr"`
	KLD           float64 `json:"kld"` // mean KL divergence, nats
	KLDErr        float64 `json:"kld_stderr"`
	KLDMedian     float64 `json:"kld_median"`
	KLDP90        float64 `json:"kld_p90"`
	KLDP95        float64 `json:"kld_p95"`
	KLDP99        float64 `json:"kld_p99"`
	KLDP999       float64 `json:"kld_p99_9"`
	KLDMax        float64 `json:"kld_max"`
	KLDMin        float64 `json:"kld_min"`
	SameTop       float64 `json:"same_top_pct"` // % of tokens whose most probable token is the base's
	SameTopErr    float64 `json:"same_top_pct_stderr"`
	MeanDP        float64 `json:"mean_dp_pct"` // mean Δp, %
	MeanDPErr     float64 `json:"mean_dp_pct_stderr"`
	RMSDP         float64 `json:"rms_dp_pct"` // sqrt(mean Δp²), %
	RMSDPErr      float64 `json:"rms_dp_pct_stderr"`
	DPMedian      float64 `json:"dp_median_pct"`
	DPMax         float64 `json:"dp_max_pct"`           // largest Δp, %
	DPMin         float64 `json:"dp_min_pct"`           // most negative Δp, %
	TopK          int     `json:"base_top_k,omitempty"` // base distributions kept only their top K tokens
}

// meanErr is llama.cpp's mean_and_uncertainty.
func meanErr(sum, sum2 float64, n int) (mean, err float64) {
	if n < 1 {
		return 0, 0
	}
	mean = sum / float64(n)
	v := sum2/float64(n) - mean*mean
	if v > 0 && n > 10 {
		err = math.Sqrt(v / float64(n-1))
	}
	return mean, err
}

// covariance is llama.cpp's covariance of the means of a and b.
func covariance(a, b, ab float64, n int) float64 {
	if n < 10 {
		return 0
	}
	fn := float64(n)
	return (ab/fn - (a/fn)*(b/fn)) / (fn - 1)
}

// percentile interpolates sorted v linearly at fraction·(len−1).
func percentile(v []float32, fraction float64) float64 {
	if len(v) == 0 {
		return 0
	}
	p := fraction * float64(len(v)-1)
	i := int(p)
	if i >= len(v)-1 {
		return float64(v[len(v)-1])
	}
	f := p - float64(i)
	return (1-f)*float64(v[i]) + f*float64(v[i+1])
}

// Summary computes the statistics of the tokens added so far.
func (a *Accumulator) Summary() Summary {
	s := Summary{Tokens: a.n}
	if a.n == 0 {
		return s
	}
	ln, lnErr := meanErr(a.nll, a.nll2, a.n)
	lb, lbErr := meanErr(a.base, a.base2, a.n)
	cov := covariance(a.nll, a.base, a.nllBase, a.n)
	s.PPL, s.BasePPL = math.Exp(ln), math.Exp(lb)
	s.PPLErr, s.BasePPLErr = s.PPL*lnErr, s.BasePPL*lbErr
	if lnErr > 0 && lbErr > 0 {
		s.LogPPLCor = cov / (lnErr * lbErr)
	}
	s.LnPPLRatio = ln - lb
	s.LnPPLRatioErr = math.Sqrt(math.Max(lnErr*lnErr+lbErr*lbErr-2*cov, 0))
	s.PPLRatio = math.Exp(s.LnPPLRatio)
	s.PPLRatioErr = s.PPLRatio * s.LnPPLRatioErr
	s.PPLDiff = s.PPL - s.BasePPL
	s.PPLDiffErr = math.Sqrt(math.Max(s.PPLErr*s.PPLErr+s.BasePPLErr*s.BasePPLErr-2*s.PPL*s.BasePPL*cov, 0))
	s.KLD, s.KLDErr = meanErr(a.kld, a.kld2, a.n)
	s.MeanDP, s.MeanDPErr = meanErr(a.dp, a.dp2, a.n)
	s.MeanDP, s.MeanDPErr = 100*s.MeanDP, 100*s.MeanDPErr
	mse, mseErr := meanErr(a.dp2, a.dp4, a.n)
	if rms := math.Sqrt(mse); rms > 0 {
		s.RMSDP, s.RMSDPErr = 100*rms, 100*0.5/rms*mseErr
	}
	top := float64(a.same) / float64(a.n)
	s.SameTop = 100 * top
	if a.n > 1 {
		s.SameTopErr = 100 * math.Sqrt(top*(1-top)/float64(a.n-1))
	}
	k := slices.Clone(a.klds)
	slices.Sort(k)
	s.KLDMedian = percentile(k, 0.5)
	s.KLDP90, s.KLDP95 = percentile(k, 0.90), percentile(k, 0.95)
	s.KLDP99, s.KLDP999 = percentile(k, 0.99), percentile(k, 0.999)
	s.KLDMin, s.KLDMax = float64(k[0]), float64(k[len(k)-1])
	d := slices.Clone(a.dps)
	slices.Sort(d)
	s.DPMedian = 100 * percentile(d, 0.5)
	s.DPMin, s.DPMax = 100*float64(d[0]), 100*float64(d[len(d)-1])
	return s
}

// Line is the one-line quality statement of a comparison, e.g.
// "mean KLD 0.1234 ± 0.0021, same top token 81.20 ± 0.40 % (2032 tokens)".
func (s Summary) Line() string {
	return fmt.Sprintf("mean KLD %.4f ± %.4f, same top token %.2f ± %.2f %% (%d tokens)",
		s.KLD, s.KLDErr, s.SameTop, s.SameTopErr, s.Tokens)
}

// TopK is how many of a base distribution's most probable tokens to keep:
// top, or every token (0) for vocabularies of up to 4096 tokens, where the
// whole distribution costs little.
func TopK(vocab, top int) int {
	if vocab <= 4096 {
		return 0
	}
	return top
}
