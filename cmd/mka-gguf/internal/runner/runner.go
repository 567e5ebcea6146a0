// Package runner feeds fixed-length token chunks through llama.cpp, several
// chunks per decode as separate sequences, and hands each decode's logits
// and captured hidden states to the caller. Perplexity, calibration and the
// λ search all run on it.
package runner

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/mka-gguf/mka-gguf/cgo"
)

// Options configures Run.
type Options struct {
	// Ctx, when set, stops Run with its error once it is done (Ctrl-C),
	// also in the middle of a decode (cgo.Context.SetAbort).
	Ctx context.Context
	// Threads for llama.cpp (0: the number of CPUs).
	Threads int
	// BatchTokens bounds the tokens of one decode (0: 512); at least one
	// whole chunk is always decoded at once.
	BatchTokens int
	// Logits asks for logits of every token from LogitsFrom on in each
	// chunk (needed for losses).
	Logits bool
	// LogitsFrom is the first position of each chunk whose logits Logits
	// asks for (0: every token). llama.cpp computes the output layer, and
	// the last block after its attention, only for tokens that ask for
	// output, so a perplexity window that scores its second half costs
	// that much less; the logits it returns are the same bits. Capture and
	// MatMulInputs always have every token ask.
	LogitsFrom int
	// Capture, when set, receives hidden states during each decode. Rows
	// are the decode's tokens in order: chunk c of the decode occupies rows
	// [c·T, (c+1)·T).
	Capture cgo.CaptureFunc
	// CaptureInput also captures the input of block 0.
	CaptureInput bool
	// CaptureFFNInput also captures every block's ffn_inp-<i>
	// (cgo.FFNInput), before that block's output.
	CaptureFFNInput bool
	// Names are the graph's names of what is captured (merge/arch's row;
	// zero: llama's).
	Names cgo.CaptureNames
	// SkipLogits stops each decode after the last block's capture, so the
	// logits are not computed (cgo.ContextParams.SkipLogits).
	SkipLogits bool
	// MatMulInputs, when set, receives the input of every multiplication
	// by a model weight during each decode (for importance matrices).
	MatMulInputs cgo.MatMulFunc
	// Before, when set, is called before each decode with the chunks it
	// will hold, [first, first+count).
	Before func(first, count int)
	// Progress, when set, is called after each decode with the chunks done
	// and the throughput so far.
	Progress func(done int, tokPerSec float64)
}

// Decoded describes one decode: which chunks it held. Logits(i, j) returns
// the logits of token j of the i-th chunk of this decode (Options.Logits;
// nil before Options.LogitsFrom).
type Decoded struct {
	First, Count int // chunk indices [First, First+Count)
	ctx          *cgo.Context
	t            int
}

// Logits returns the logits of token j of the i-th chunk in this decode. The
// slice is valid until the callback returns.
func (d *Decoded) Logits(i, j int) []float32 { return d.ctx.Logits(i*d.t + j) }

// Stats reports what Run did.
type Stats struct {
	Tokens  int
	Decodes int
	Elapsed time.Duration
}

// TokensPerSecond returns the decode throughput.
func (s Stats) TokensPerSecond() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Tokens) / s.Elapsed.Seconds()
}

// SeqsPerDecode returns how many chunks of t tokens go into one decode.
func SeqsPerDecode(t, batchTokens int) int {
	if batchTokens <= 0 {
		batchTokens = 512
	}
	return max(1, batchTokens/t)
}

// Run decodes every chunk (all of the same length T) and calls after for
// each decode, before the next one starts. The chunks of one decode never
// see each other (separate sequences, KV cache cleared between decodes).
func Run(m *cgo.Model, chunks [][]int32, opt Options, after func(d *Decoded) error) (Stats, error) {
	var st Stats
	if len(chunks) == 0 {
		return st, nil
	}
	t := len(chunks[0])
	for i, c := range chunks {
		if len(c) != t {
			return st, fmt.Errorf("runner: chunk %d has %d tokens, want %d", i, len(c), t)
		}
	}
	threads := opt.Threads
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	k := min(SeqsPerDecode(t, opt.BatchTokens), len(chunks))
	// Every chunk is a sequence of its own in a KV cache of its own: a
	// token's attention runs over its chunk only.
	ctx, err := cgo.NewContext(m, cgo.ContextParams{
		NCtx: k * t, NBatch: k * t, NSeqMax: k, Threads: threads, PerSeqKV: true,
		Capture: opt.Capture, CaptureInput: opt.CaptureInput, CaptureFFNInput: opt.CaptureFFNInput, CaptureNames: opt.Names, SkipLogits: opt.SkipLogits, MatMulInputs: opt.MatMulInputs,
	})
	if err != nil {
		return st, err
	}
	defer ctx.Close()
	ctx.SetAbort(opt.Ctx)
	if opt.Capture != nil || opt.MatMulInputs != nil {
		defer oneProc()()
	}
	b := cgo.NewBatch(k * t)
	defer b.Close()

	start := time.Now()
	for first := 0; first < len(chunks); first += k {
		if opt.Ctx != nil {
			if err := opt.Ctx.Err(); err != nil {
				return st, err
			}
		}
		n := min(k, len(chunks)-first)
		b.Clear()
		every := opt.Capture != nil || opt.MatMulInputs != nil
		for s := range n {
			for j, tok := range chunks[first+s] {
				b.Add(tok, j, s, every || opt.Logits && j >= opt.LogitsFrom)
			}
		}
		ctx.ClearMemory()
		if opt.Before != nil {
			opt.Before(first, n)
		}
		if err := ctx.Decode(b); err != nil {
			return st, err
		}
		st.Tokens += n * t
		st.Decodes++
		if after != nil {
			if err := after(&Decoded{First: first, Count: n, ctx: ctx, t: t}); err != nil {
				return st, err
			}
		}
		st.Elapsed = time.Since(start)
		if opt.Progress != nil {
			opt.Progress(first+n, st.TokensPerSecond())
		}
	}
	st.Elapsed = time.Since(start)
	return st, nil
}

// procs counts the Runs inside oneProc.
var procs struct {
	sync.Mutex
	n, saved int
}

// oneProc sets GOMAXPROCS to 1 until the returned func is called (nested
// and concurrent calls share one setting). Hooks run Go code inside
// llama_decode's graph computation; measured on a 2-core machine, with
// GOMAXPROCS=2 a hook reading each block output slowed decoding by 12–14 %
// although the Go code itself took under 3 % of the time (the Go runtime
// wakes a second thread that competes with ggml's workers), and with
// GOMAXPROCS=1 the same decode ran at 0.97× the speed of one without hook.
func oneProc() (release func()) {
	procs.Lock()
	if procs.n == 0 {
		procs.saved = runtime.GOMAXPROCS(1)
	}
	procs.n++
	procs.Unlock()
	return func() {
		procs.Lock()
		procs.n--
		if procs.n == 0 {
			runtime.GOMAXPROCS(procs.saved)
		}
		procs.Unlock()
	}
}

// Chunk cuts a token stream into n chunks of t tokens. When bos >= 0 each
// chunk starts with it (replacing the stream's token at that place, as
// llama.cpp's perplexity tool does). It returns an error that states what is
// there and what is needed when the stream is too short.
func Chunk(tokens []int32, t, n int, bos int32) ([][]int32, error) {
	if t < 2 {
		return nil, fmt.Errorf("context of %d tokens is too small", t)
	}
	if n <= 0 {
		n = len(tokens) / t
	}
	if len(tokens) < n*t || n == 0 {
		return nil, fmt.Errorf("too little text: %d tokens, need %d chunks × %d tokens = %d", len(tokens), max(n, 1), t, max(n, 1)*t)
	}
	out := make([][]int32, n)
	for i := range out {
		c := append([]int32(nil), tokens[i*t:(i+1)*t]...)
		if bos >= 0 {
			c[0] = bos
		}
		out[i] = c
	}
	return out, nil
}
