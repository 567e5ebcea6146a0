// Package ppl measures perplexity the way llama.cpp's perplexity tool does:
// the text is tokenized once (with BOS when the model asks for it), cut into
// non-overlapping windows of n_ctx tokens whose first token is BOS, and in
// each window only the second half is scored, so every scored token has at
// least n_ctx/2 tokens of context.
package ppl

import (
	"context"
	"fmt"
	"math"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/runner"
	"github.com/mka-gguf/mka-gguf/simd"
)

// Result is a perplexity measurement.
type Result struct {
	PPL       float64 `json:"ppl"`
	StdErr    float64 `json:"ppl_stderr"` // standard error of PPL
	NLL       float64 `json:"nll"`        // mean negative log-likelihood, nats
	Scored    int     `json:"scored"`     // tokens scored
	Windows   int     `json:"windows"`    // windows of Ctx tokens
	Ctx       int     `json:"ctx"`        // window length
	Tokens    int     `json:"tokens"`     // tokens decoded
	TokPerSec float64 `json:"tok_per_s"`  // decode throughput
	Seconds   float64 `json:"seconds"`    // decode time
}

// Accumulator sums token log-likelihoods.
type Accumulator struct {
	sum, sum2 float64
	n         int
}

// Add scores the prediction of next from logits and returns its NLL.
func (a *Accumulator) Add(logits []float32, next int32) float64 {
	nll := NLL(logits, next)
	a.sum += nll
	a.sum2 += nll * nll
	a.n++
	return nll
}

// Mean returns the mean NLL.
func (a *Accumulator) Mean() float64 { return a.sum / float64(max(a.n, 1)) }

// Result turns the sums into PPL and its standard error, computed as
// llama.cpp does: PPL·sqrt(var(nll)/(n−1)).
func (a *Accumulator) Result() (ppl, stderr float64) {
	mean := a.Mean()
	ppl = math.Exp(mean)
	if a.n > 1 {
		v := a.sum2/float64(a.n) - mean*mean
		stderr = ppl * math.Sqrt(math.Max(v, 0)/float64(a.n-1))
	}
	return ppl, stderr
}

// LogSumExp returns ln Σ exp(logits) in float64, computed as
// max + ln Σ exp(v − max) (the sum in order, with math.Exp's bits:
// simd.SumExp), and top, the index of the largest logit (the
// first of equals). NLL and the kld package's scores all use it, so that
// the same logits give the same losses bit for bit wherever they are
// computed.
func LogSumExp(logits []float32) (lse float64, top int) {
	for i, v := range logits {
		if v > logits[top] {
			top = i
		}
	}
	mx := float64(logits[top])
	return mx + math.Log(simd.SumExp(logits, mx)), top
}

// NLL returns −log softmax(logits)[next] in nats, in float64:
// LogSumExp(logits) − logits[next].
func NLL(logits []float32, next int32) float64 {
	lse, _ := LogSumExp(logits)
	return lse - float64(logits[next])
}

// Options configures Measure.
type Options struct {
	Context     context.Context // cancels between decodes (nil: never)
	Ctx         int             // window length (llama.cpp's n_ctx); 0: 512 capped at the model's
	MaxWindows  int             // 0: all
	Threads     int
	BatchTokens int
	Progress    func(done, total int)
}

// Measure computes the perplexity of m on text.
func Measure(m *cgo.Model, text string, opt Options) (Result, error) {
	n := opt.Ctx
	if n <= 0 {
		n = min(512, m.NCtxTrain())
	}
	toks, err := m.Tokenize(text, m.AddBOS(), false)
	if err != nil {
		return Result{}, err
	}
	bos := int32(-1)
	if m.AddBOS() {
		bos = m.BOS()
	}
	windows := len(toks) / n
	if opt.MaxWindows > 0 {
		windows = min(windows, opt.MaxWindows)
	}
	if windows == 0 {
		return Result{}, fmt.Errorf("too little text for perplexity: %d tokens, need at least %d (one window of --ctx %d)", len(toks), n, n)
	}
	chunks, err := runner.Chunk(toks, n, windows, bos)
	if err != nil {
		return Result{}, err
	}
	var acc Accumulator
	first := n / 2
	st, err := runner.Run(m, chunks, runner.Options{
		Ctx: opt.Context, Threads: opt.Threads, BatchTokens: opt.BatchTokens, Logits: true, LogitsFrom: first,
		Progress: func(done int, _ float64) {
			if opt.Progress != nil {
				opt.Progress(done, windows)
			}
		},
	}, func(d *runner.Decoded) error {
		for i := range d.Count {
			// The window's tokens are the original stream (position 0
			// replaced by BOS); token j+1 is scored from the logits at j.
			w := toks[(d.First+i)*n : (d.First+i+1)*n]
			for j := first; j < n-1; j++ {
				acc.Add(d.Logits(i, j), w[j+1])
			}
		}
		return nil
	})
	if err != nil {
		return Result{}, err
	}
	p, se := acc.Result()
	return Result{PPL: p, StdErr: se, NLL: acc.Mean(), Scored: acc.n, Windows: windows, Ctx: n,
		Tokens: st.Tokens, TokPerSec: st.TokensPerSecond(), Seconds: st.Elapsed.Seconds()}, nil
}
