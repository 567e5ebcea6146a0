// Package calib runs the calibration forward pass: it feeds calibration
// text through llama.cpp and, from the hidden states the capture hook hands
// over, keeps per-sample representations of every layer and the per-token
// statistics the pruning baselines need.
//
// Layers are numbered as representations: layer 0 is the input of block 0
// (the token embeddings, "inp_embd", as the graph scales them: gemma's
// "inp_scaled"; merge/arch's Row.Input), layer i (1..L) the output of
// block i−1 ("l_out-<i−1>"). Memory is O(N·(L+1)·d): per token, values are folded
// into sums inside the hook and never stored.
package calib

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"unicode/utf8"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/runner"
	"github.com/mka-gguf/mka-gguf/merge"
	"github.com/mka-gguf/mka-gguf/merge/arch"
)

// Options configures Run.
type Options struct {
	Context     context.Context // cancels between decodes (nil: never)
	Samples     int             // N, the number of chunks (points of the manifolds)
	Ctx         int             // T, tokens per chunk (capped at the model's context)
	Seed        uint64          // order in which texts are drawn
	Threads     int
	BatchTokens int
	Progress    func(done, total int, tokPerSec float64)
	// KeepLogits computes the logits, which calibration does not use
	// (benchmarks compare the hook's cost with a plain decode).
	KeepLogits bool
	// Observe, when set, also receives every captured tensor, each
	// block's stream before its FFN (cgo.FFNInput, or cgo.FFNOutput where
	// the graph leaves it unnamed: Names) included, and ObserveBefore the
	// chunks of each decode: another pass over the same decodes (the
	// merge's first alignment pass, pipeline.Prefill). Observe returning
	// false stops the calibration.
	Observe       cgo.CaptureFunc
	ObserveBefore func(first, count int)
}

// Result holds what the pass measured.
type Result struct {
	Arch    string `json:"arch"`
	Blocks  int    `json:"blocks"`
	Embd    int    `json:"embd"`
	Samples int    `json:"samples"`
	Ctx     int    `json:"ctx"`
	Seed    uint64 `json:"seed"`

	// Mean[l] is N×Embd (row-major): each sample's mean hidden state over
	// its tokens after the leading BOS, at layer l (0..Blocks).
	Mean [][]float32 `json:"-"`
	// Last[l] is N×Embd: each sample's last-token hidden state at layer l.
	Last [][]float32 `json:"-"`
	// CosSum[i] / CosCount[i] is the mean cosine between the input and the
	// output of block i over all tokens after BOS (ShortGPT's BI uses it).
	CosSum   []float64 `json:"-"`
	CosCount []int     `json:"-"`

	Tokens    int     `json:"tokens"`
	Seconds   float64 `json:"seconds,omitempty"`
	TokPerSec float64 `json:"tok_per_s,omitempty"`
}

// BlockInfluence returns ShortGPT's BI_i = 1 − mean cos(x_in_i, x_out_i).
func (r *Result) BlockInfluence() []float64 {
	return merge.BlockInfluence(r.CosSum, r.CosCount)
}

// TooShortError reports calibration text that cannot fill the request.
type TooShortError struct {
	Have, Need, Samples, Ctx int
}

func (e *TooShortError) Error() string {
	return fmt.Sprintf("too little calibration text: %d tokens, need %d (%d samples × %d tokens); lower --samples or --ctx, or give more text",
		e.Have, e.Need, e.Samples, e.Ctx)
}

// Tokens draws texts in an order fixed by seed, tokenizes them (no BOS) and
// cuts the stream into n chunks of t tokens, each starting with BOS when
// the model asks for one. Texts are separated by a blank line.
func Tokens(m *cgo.Model, texts []string, n, t int, seed uint64) ([][]int32, error) {
	if len(texts) == 0 {
		return nil, errors.New("no calibration text")
	}
	order := rand.New(rand.NewPCG(seed, 0x6d6b61)).Perm(len(texts))
	addBOS := m.AddBOS()
	per := t
	if addBOS {
		per = t - 1
	}
	need := n * per
	var stream []int32
	for _, i := range order {
		toks, err := m.Tokenize(texts[i]+"\n\n", false, false)
		var ee *cgo.EncodeError
		if errors.As(err, &ee) {
			// The offset is the sample's: say which sample.
			return nil, fmt.Errorf("sample beginning %q: %w", head(texts[i], 24), err)
		}
		if err != nil {
			return nil, err
		}
		stream = append(stream, toks...)
		if len(stream) >= need {
			break
		}
	}
	if len(stream) < need {
		return nil, &TooShortError{Have: len(stream), Need: need, Samples: n, Ctx: t}
	}
	chunks := make([][]int32, n)
	for i := range chunks {
		c := make([]int32, 0, t)
		if addBOS {
			c = append(c, m.BOS())
		}
		chunks[i] = append(c, stream[i*per:(i+1)*per]...)
	}
	return chunks, nil
}

// head returns the first n bytes of s, cut at a character boundary, with
// "…" when s is longer.
func head(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// Names returns the capture hook's graph names for architecture name
// (its merge/arch row; llama's for one the table does not accept).
func Names(name string) cgo.CaptureNames {
	r, ok := arch.Lookup(name)
	if !ok || r.Refused != "" {
		return cgo.CaptureNames{}
	}
	return cgo.CaptureNames{Input: r.Input, FFNInput: r.FFNInput, FFNOutput: r.FFNOutput}
}

// Run calibrates m on chunks (from Tokens).
func Run(m *cgo.Model, chunks [][]int32, opt Options) (*Result, error) {
	n := len(chunks)
	if n == 0 {
		return nil, errors.New("no calibration chunks")
	}
	t := len(chunks[0])
	L, d := m.NLayer(), m.NEmbd()
	arch, _ := m.Meta("general.architecture")
	r := &Result{Arch: arch, Blocks: L, Embd: d, Samples: n, Ctx: t, Seed: opt.Seed,
		Mean: make([][]float32, L+1), Last: make([][]float32, L+1),
		CosSum: make([]float64, L), CosCount: make([]int, L)}
	for l := range r.Mean {
		r.Mean[l] = make([]float32, n*d)
		r.Last[l] = make([]float32, n*d)
	}
	skip := 0
	if m.AddBOS() {
		skip = 1 // the BOS row is an outlier in many models (attention sink)
	}

	var (
		first   int // first chunk of the current decode
		count   int // chunks in the current decode
		next    int // layer expected next
		sums    = make([]float64, runner.SeqsPerDecode(t, opt.BatchTokens)*d)
		fold    = folder{d: d, t: t, skip: skip}
		hookErr error
	)
	capture := func(tn cgo.Tensor) bool {
		if tn.Kind != cgo.BlockOutput {
			return opt.Observe == nil || opt.Observe(tn)
		}
		l := tn.Layer + 1
		if l != next || tn.Cols != d || tn.Rows != count*t {
			hookErr = fmt.Errorf("capture: got layer %d with %d×%d rows, expected layer %d with %d×%d", l, tn.Rows, tn.Cols, next, count*t, d)
			return false
		}
		cs, cn := fold.fold(tn.Data, count, l == 0, sums)
		if l > 0 {
			r.CosSum[l-1] += cs
			r.CosCount[l-1] += cn
		}
		for s := range count {
			mean := r.Mean[l][(first+s)*d : (first+s+1)*d]
			for k, v := range sums[s*d : (s+1)*d] {
				mean[k] = float32(v / float64(t-skip))
			}
			copy(r.Last[l][(first+s)*d:(first+s+1)*d], tn.Data[(s*t+t-1)*d:(s*t+t)*d])
		}
		next++
		return opt.Observe == nil || opt.Observe(tn)
	}

	st, err := runner.Run(m, chunks, runner.Options{
		Ctx: opt.Context, Threads: opt.Threads, BatchTokens: opt.BatchTokens, Capture: capture, CaptureInput: true, SkipLogits: !opt.KeepLogits,
		CaptureFFNInput: opt.Observe != nil, Names: Names(arch),
		Before: func(f, c int) {
			first, count, next = f, c, 0
			if opt.ObserveBefore != nil {
				opt.ObserveBefore(f, c)
			}
		},
		Progress: func(done int, tps float64) {
			if opt.Progress != nil {
				opt.Progress(done, n, tps)
			}
		},
	}, func(*runner.Decoded) error {
		if next != L+1 {
			return fmt.Errorf("architecture %q: the capture hook saw %d of %d block outputs (l_out-<i>); mka-gguf needs a dense decoder whose graph names every block output", arch, max(next-1, 0), L)
		}
		return nil
	})
	if hookErr != nil {
		return nil, hookErr
	}
	if err != nil {
		return nil, err
	}
	r.Tokens, r.Seconds, r.TokPerSec = st.Tokens, st.Elapsed.Seconds(), st.TokensPerSecond()
	return r, nil
}
