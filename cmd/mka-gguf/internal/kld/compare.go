package kld

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/runner"
)

// Options configures Compare, CompareFile and Save.
type Options struct {
	// Context, when set, is checked between decodes (Ctrl-C).
	Context context.Context
	// First is the first position of every chunk whose prediction (of the
	// token after it) is scored: n_ctx/2 for llama.cpp's perplexity
	// windows, 0 to score every position.
	First int
	// Threads for llama.cpp (0: the number of CPUs).
	Threads int
	// BatchTokens bounds the tokens of one decode (0: 512); at least one
	// whole chunk is decoded at once.
	BatchTokens int
	// TopK, for Save, keeps only the K most probable tokens of each base
	// distribution (0: the whole vocabulary).
	TopK int
	// Progress, when set, is called after each decode with the chunks done
	// and the total.
	Progress func(done, total int)
}

// decoder decodes groups of equal-length chunks, one sequence each, asking
// for logits only at the scored positions.
type decoder struct {
	ctx      *cgo.Context
	b        *cgo.Batch
	t, first int
}

func newDecoder(m *cgo.Model, t, k int, opt Options) (*decoder, error) {
	th := opt.Threads
	if th <= 0 {
		th = runtime.NumCPU()
	}
	ctx, err := cgo.NewContext(m, cgo.ContextParams{NCtx: k * t, NBatch: k * t, NSeqMax: k, Threads: th, PerSeqKV: true})
	if err != nil {
		return nil, err
	}
	return &decoder{ctx: ctx, b: cgo.NewBatch(k * t), t: t, first: opt.First}, nil
}

func (d *decoder) close() {
	d.b.Close()
	d.ctx.Close()
}

func (d *decoder) decode(chunks [][]int32) error {
	d.b.Clear()
	for s, c := range chunks {
		for j, tok := range c {
			d.b.Add(tok, j, s, j >= d.first && j < d.t-1)
		}
	}
	d.ctx.ClearMemory()
	return d.ctx.Decode(d.b)
}

// logits returns the logits at position j of the s-th chunk of the last
// decode.
func (d *decoder) logits(s, j int) []float32 { return d.ctx.Logits(s*d.t + j) }

// baseFunc fills dst[s][j−First] with the base distribution at position j
// of chunk first+s, for len(dst) chunks.
type baseFunc func(first int, dst [][]Dist) error

// checkChunks validates the chunk shapes and opt.First.
func checkChunks(chunks [][]int32, first int) (t int, err error) {
	if len(chunks) == 0 {
		return 0, errors.New("kld: no chunks to score")
	}
	t = len(chunks[0])
	for i, c := range chunks {
		if len(c) != t {
			return 0, fmt.Errorf("kld: chunk %d has %d tokens, want %d", i, len(c), t)
		}
	}
	if first < 0 || first >= t-1 {
		return 0, fmt.Errorf("kld: first scored position %d outside a chunk of %d tokens", first, t)
	}
	return t, nil
}

// parallel calls f(w, i) for i in [0, n) on GOMAXPROCS workers; w is the
// worker's index.
func parallel(n int, f func(w, i int)) {
	workers := min(runtime.GOMAXPROCS(0), max(n, 1))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				f(w, i)
			}
		}()
	}
	wg.Wait()
}

// groupMemory bounds the base distributions held at once (full-vocabulary
// float32 log-probabilities); see group.
const groupMemory = 256 << 20

// group returns how many chunks the base provides at once: a multiple of
// the k chunks of one decode, as many as fit in groupMemory. Decoding many
// chunks with one model before switching to the other matters on the CPU:
// after every graph, ggml's idle worker threads spin for a while, and they
// would compete with the other model's decode at every switch.
func group(k, chunks, m, vocab int) int {
	g := max(1, groupMemory/(m*vocab*4)/k) * k
	return min(g, chunks)
}

// run decodes chunks with model and scores every scored position against
// the base distributions that base provides.
func run(model *cgo.Model, chunks [][]int32, opt Options, base baseFunc) (Summary, error) {
	t, err := checkChunks(chunks, opt.First)
	if err != nil {
		return Summary{}, err
	}
	m := t - 1 - opt.First
	k := min(runner.SeqsPerDecode(t, opt.BatchTokens), len(chunks))
	dec, err := newDecoder(model, t, k, opt)
	if err != nil {
		return Summary{}, err
	}
	defer dec.close()
	g := group(k, len(chunks), m, model.NVocab())
	dst := make([][]Dist, g)
	for s := range dst {
		dst[s] = make([]Dist, m)
	}
	toks := make([]Token, k*m)
	scratch := make([]Scratch, runtime.GOMAXPROCS(0))
	var acc Accumulator
	for gfirst := 0; gfirst < len(chunks); gfirst += g {
		gn := min(g, len(chunks)-gfirst)
		if err := base(gfirst, dst[:gn]); err != nil {
			return Summary{}, err
		}
		for first := gfirst; first < gfirst+gn; first += k {
			if opt.Context != nil {
				if err := opt.Context.Err(); err != nil {
					return Summary{}, err
				}
			}
			n := min(k, gfirst+gn-first)
			if err := dec.decode(chunks[first : first+n]); err != nil {
				return Summary{}, err
			}
			parallel(n*m, func(w, i int) {
				s, j := i/m, i%m+opt.First
				toks[i] = Score(&dst[first-gfirst+s][j-opt.First], dec.logits(s, j), chunks[first+s][j+1], &scratch[w])
			})
			for _, tk := range toks[:n*m] {
				acc.Add(tk)
			}
			if opt.Progress != nil {
				opt.Progress(first+n, len(chunks))
			}
		}
	}
	return acc.Summary(), nil
}

// Compare scores model against base on chunks (equal-length token
// sequences, each decoded from position 0 as its own sequence), at
// positions [opt.First, len−1) of every chunk. Both models decode side by
// side, one group of chunks at a time (at most 256 MiB of base
// distributions), so memory does not grow with the text.
//
// merge's closing quality line is Compare(in, out, heldBackChunks,
// Options{First: 0, …}) printed with Summary.Line. For merge's quality line, pass the held-back calibration
// chunks with First 0.
func Compare(base, model *cgo.Model, chunks [][]int32, opt Options) (Summary, error) {
	if base.NVocab() != model.NVocab() {
		return Summary{}, fmt.Errorf("%s has a vocabulary of %d tokens, %s of %d: the distributions cannot be compared",
			model.Path(), model.NVocab(), base.Path(), base.NVocab())
	}
	t, err := checkChunks(chunks, opt.First)
	if err != nil {
		return Summary{}, err
	}
	k := min(runner.SeqsPerDecode(t, opt.BatchTokens), len(chunks))
	bdec, err := newDecoder(base, t, k, opt)
	if err != nil {
		return Summary{}, err
	}
	defer bdec.close()
	scratch := make([]Scratch, runtime.GOMAXPROCS(0))
	m := t - 1 - opt.First
	return run(model, chunks, opt, func(gfirst int, dst [][]Dist) error {
		for first := gfirst; first < gfirst+len(dst); first += k {
			if opt.Context != nil {
				if err := opt.Context.Err(); err != nil {
					return err
				}
			}
			n := min(k, gfirst+len(dst)-first)
			if err := bdec.decode(chunks[first : first+n]); err != nil {
				return err
			}
			parallel(n*m, func(w, i int) {
				s, j := i/m, i%m+opt.First
				FromLogits(&dst[first-gfirst+s][j-opt.First], bdec.logits(s, j), chunks[first+s][j+1], 0, &scratch[w])
			})
		}
		return nil
	})
}

// Windows tokenizes text as llama.cpp's perplexity tool does (BOS when the
// model asks for it) and cuts it into non-overlapping windows of n tokens
// whose first token is BOS, at most maxWindows of them (0: all); score
// them with First n/2.
func Windows(m *cgo.Model, text string, n, maxWindows int) ([][]int32, error) {
	toks, err := m.Tokenize(text, m.AddBOS(), false)
	if err != nil {
		return nil, err
	}
	bos := int32(-1)
	if m.AddBOS() {
		bos = m.BOS()
	}
	w := len(toks) / n
	if maxWindows > 0 {
		w = min(w, maxWindows)
	}
	if w == 0 {
		return nil, fmt.Errorf("too little text: %d tokens, need at least %d (one window of --ctx %d)", len(toks), n, n)
	}
	return runner.Chunk(toks, n, w, bos)
}
