package runner

import (
	"context"
	"fmt"
	"runtime"

	"github.com/mka-gguf/mka-gguf/cgo"
)

// Session is one llama.cpp context kept across many runs over chunks of
// the same length T, for work that decodes again and again with the same
// model (the merge search scores every candidate on one context). Its
// capture hook calls whatever SetCapture installed last.
type Session struct {
	m       *cgo.Model
	ctx     *cgo.Context
	batch   *cgo.Batch
	embd    *cgo.Batch // RunFrom's, made on first use
	t, k    int
	capture cgo.CaptureFunc
	matmul  cgo.MatMulFunc
	layers  func() []int
}

// SessionOptions configures NewSession.
type SessionOptions struct {
	T           int // tokens per chunk
	Threads     int // 0: the number of CPUs
	BatchTokens int // 0: 512
	// Capture enables the capture hook (block outputs, the block-0 input
	// and every block's stream before its FFN, by Names); SetCapture
	// chooses the function.
	Capture bool
	Names   cgo.CaptureNames
	// Resumable lets RunFrom decode from the middle of the model
	// (cgo.ContextParams.Resumable).
	Resumable bool
	// Layers, when set (with Resumable), returns before each decode the
	// loaded blocks it runs, in order; the blocks it leaves out must add
	// nothing to the stream (cgo.Context.DecodeLayers).
	Layers func() []int
	// MatMulInputs enables the hook on the inputs of the multiplications
	// by model weights (cgo.ContextParams.MatMulInputs); SetMatMul chooses
	// the function. It splits the graph at every product: a session of
	// its own, not the search's.
	MatMulInputs bool
}

// NewSession creates the context. Close frees it.
func NewSession(m *cgo.Model, opt SessionOptions) (*Session, error) {
	if opt.T < 2 {
		return nil, fmt.Errorf("runner: chunks of %d tokens", opt.T)
	}
	threads := opt.Threads
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	s := &Session{m: m, t: opt.T, k: SeqsPerDecode(opt.T, opt.BatchTokens)}
	if opt.Resumable {
		s.layers = opt.Layers
	}
	// Attention as separate products, as in calibration (calib): several
	// times faster than flash attention on the CPU.
	cp := cgo.ContextParams{NCtx: s.k * s.t, NBatch: s.k * s.t, NSeqMax: s.k, Threads: threads, Resumable: opt.Resumable}
	if opt.Capture {
		cp.Capture = func(t cgo.Tensor) bool {
			if s.capture == nil {
				return true
			}
			return s.capture(t)
		}
		cp.CaptureInput, cp.CaptureFFNInput, cp.CaptureNames = true, true, opt.Names
	}
	if opt.MatMulInputs {
		cp.MatMulInputs = func(w string, cols, rows int, data []float32) bool {
			if s.matmul == nil {
				return true
			}
			return s.matmul(w, cols, rows, data)
		}
	}
	var err error
	if s.ctx, err = cgo.NewContext(m, cp); err != nil {
		return nil, err
	}
	s.batch = cgo.NewBatch(s.k * s.t)
	return s, nil
}

// SetCapture installs the function the capture hook calls (nil: none) and
// the block after whose output each decode stops (< 0: run the whole
// graph, logits included).
func (s *Session) SetCapture(f cgo.CaptureFunc, stopAfter int) error {
	s.capture = f
	return s.ctx.StopAfter(stopAfter)
}

// SetMatMul installs the function the matmul-input hook calls (nil:
// none) for the multiplications by weight ("": every weight; the others
// do not split the graph); the session needs SessionOptions.MatMulInputs.
func (s *Session) SetMatMul(weight string, f cgo.MatMulFunc) error {
	s.matmul = f
	return s.ctx.MatMulOnly(weight)
}

// Close frees the context and batch. It is nil-safe.
func (s *Session) Close() {
	if s == nil {
		return
	}
	s.batch.Close()
	s.embd.Close()
	s.ctx.Close()
}

// SeqsPerDecode returns how many chunks one decode holds.
func (s *Session) SeqsPerDecode() int { return s.k }

// Run decodes chunks (each of T tokens), at most SeqsPerDecode per decode,
// every token asking for output; before is called with the decode's chunks
// [first, first+count) and after once it is done (Decoded.Logits is valid
// when no stop is set). With SessionOptions.Layers only the blocks it
// returns run. A cancelled ctx stops Run, also in the middle of a decode
// (cgo.Context.SetAbort).
func (s *Session) Run(ctx context.Context, chunks [][]int32, before func(first, count int), after func(d *Decoded) error) error {
	fill := func(first, n int) error {
		s.batch.Clear()
		for c := range n {
			if len(chunks[first+c]) != s.t {
				return fmt.Errorf("runner: chunk %d has %d tokens, want %d", first+c, len(chunks[first+c]), s.t)
			}
			for j, tok := range chunks[first+c] {
				s.batch.Add(tok, j, c, true)
			}
		}
		return nil
	}
	decode := func() error {
		if s.layers == nil {
			return s.ctx.Decode(s.batch)
		}
		return s.ctx.DecodeLayers(s.batch, s.live(0))
	}
	return s.each(ctx, len(chunks), fill, decode, before, after)
}

// live returns the loaded blocks from block first on that a decode runs
// now, in order (SessionOptions.Layers, which must be set).
func (s *Session) live(first int) []int {
	ids := s.layers()
	i := 0
	for i < len(ids) && ids[i] < first {
		i++
	}
	return ids[i:]
}

// Blocks returns the number of blocks from loaded block first on that a
// decode runs now: n − first, or with SessionOptions.Layers those of its
// blocks numbered first or more.
func (s *Session) Blocks(first int) int {
	if s.layers == nil {
		return s.m.NLayer() - first
	}
	return len(s.live(first))
}

// each is the decode loop of Run and RunFrom: chunks [0, total) in groups
// of at most SeqsPerDecode, fill loading a group into the batch that
// decode evaluates, before and after around each decode as Run says.
func (s *Session) each(ctx context.Context, total int, fill func(first, n int) error, decode func() error, before func(first, count int), after func(d *Decoded) error) error {
	s.ctx.SetAbort(ctx)
	defer s.ctx.SetAbort(nil)
	if s.capture != nil {
		defer oneProc()()
	}
	for first := 0; first < total; first += s.k {
		if ctx != nil {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		n := min(s.k, total-first)
		if err := fill(first, n); err != nil {
			return err
		}
		s.ctx.ClearMemory()
		if before != nil {
			before(first, n)
		}
		if err := decode(); err != nil {
			return err
		}
		if after != nil {
			if err := after(&Decoded{First: first, Count: n, ctx: s.ctx, t: s.t}); err != nil {
				return err
			}
		}
	}
	return nil
}

// RunFrom is Run from block first of the model on: inputs[c] is chunk c's
// residual stream entering block first (T rows of the model's embedding
// length, as a capture hook saw the output of the block before it), and
// the blocks before first are not run (cgo.Context.DecodeLayers, with
// SessionOptions.Layers the blocks it returns from first on). With those
// blocks unchanged since the inputs were captured, the logits and the
// captures from block first on are Run's (same block numbers, same stop).
// The session must be Resumable. before and after are Run's.
func (s *Session) RunFrom(ctx context.Context, inputs [][]float32, first int, before func(first, count int), after func(d *Decoded) error) error {
	d := s.m.NEmbd()
	if s.embd == nil {
		s.embd = cgo.NewEmbdBatch(s.k*s.t, d)
	}
	fill := func(c0, n int) error {
		s.embd.Clear()
		for c := range n {
			in := inputs[c0+c]
			if len(in) != s.t*d {
				return fmt.Errorf("runner: input %d has %d floats, want %d × %d", c0+c, len(in), s.t, d)
			}
			for j := range s.t {
				s.embd.AddEmbd(in[j*d:(j+1)*d], j, c, true)
			}
		}
		return nil
	}
	decode := func() error {
		if s.layers == nil {
			return s.ctx.DecodeFrom(s.embd, first)
		}
		return s.ctx.DecodeLayers(s.embd, s.live(first))
	}
	return s.each(ctx, len(inputs), fill, decode, before, after)
}
