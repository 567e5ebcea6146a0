package pipeline

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/calib"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/kld"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/progress"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/runner"
	"github.com/mka-gguf/mka-gguf/merge"
	"github.com/mka-gguf/mka-gguf/merge/edit"
)

// linearTol bounds ‖M − A W₀ᵀ‖² / ‖M‖² on the first chunk, M the block's
// FFN output (l_out − ffn_inp) and A ffn_down's input: above it the FFN
// output is not ffn_down's product alone and the block is not refitted.
const linearTol = 1e-2

// healer is the state of one healing stage: three residual streams
// advanced block by block, the model healed so far's on the alignment and
// the held-back chunks (entering current block o) and IN's on the
// alignment chunks (entering IN's block depth; nil: the tokens).
type healer struct {
	s          *Searcher
	first      int
	fit, orig  *runner.Session // the edited model with ffn_down's inputs hooked; IN
	xg, xh, xo [][]float32
	depth      int
	cur        *heldScore // held-back losses of the model healed so far, per chunk
	solve      float64    // seconds in ridge solves
}

func (s *Searcher) newHealer(first int) (*healer, error) {
	t := len(s.align[0])
	h := &healer{s: s, first: first}
	names := calib.Names(s.e.arch.Arch.Name)
	var err error
	if h.fit, err = runner.NewSession(s.e.m, runner.SessionOptions{T: t, Threads: s.cfg.Threads, BatchTokens: t,
		Capture: true, Names: names, Resumable: true, Layers: s.e.Live, MatMulInputs: true}); err != nil {
		return nil, err
	}
	if h.orig, err = runner.NewSession(s.cfg.Reference, runner.SessionOptions{T: t, Threads: s.cfg.Threads, BatchTokens: t,
		Capture: true, Names: names, Resumable: true}); err != nil {
		h.close()
		return nil, err
	}
	return h, nil
}

func (h *healer) close() {
	h.fit.Close()
	h.orig.Close()
}

// run refits every block from h.first on, front to back.
func (h *healer) run(rep *HealReport, res *Result) error {
	s := h.s
	var err error
	if h.first > 0 {
		prev := s.e.Phys(h.first - 1)
		if h.xg, err = h.entering(); err != nil {
			return err
		}
		// Blocks 0 … first−1 are IN's: IN's stream entering block first
		// is the healed model's.
		h.xo, h.depth = h.xg, s.e.Phys(h.first)
		if h.xh, err = s.outputs(s.sess.score, s.held, nil, 0, prev); err != nil {
			return err
		}
	}
	if h.cur, _, err = h.score(h.first, nil); err != nil {
		return err
	}
	rep.HeldBefore = h.cur.mean()
	res.Replace = map[int][]float32{}
	n := s.e.Blocks() - h.first
	bar := progress.New("healing", n, "blocks")
	defer bar.Done()
	for o := h.first; o < s.e.Blocks(); o++ {
		step, w, err := h.block(o)
		if err != nil {
			return fmt.Errorf("block %d: %w", o, err)
		}
		rep.Refits = append(rep.Refits, step)
		verdict := "discarded"
		if step.Kept {
			res.Replace[o] = w
			verdict = "kept"
		}
		progress.Printf("healing: blk %d (blk %d of IN, fitted to IN's stream entering blk %d): held-back loss %.4f, %s\n",
			o, step.Loaded, step.Target, step.HeldNLL, verdict)
		bar.Set(o-h.first+1, fmt.Sprintf("held-back loss %.4f", h.cur.mean()))
	}
	rep.HeldAfter, rep.SolveSeconds = h.cur.mean(), h.solve
	return nil
}

// entering returns the alignment chunks' stream entering current block
// h.first (> 0): from the deepest stored stream of the search that enters
// a block at or below it (Searcher.streams), else from the tokens.
func (h *healer) entering() ([][]float32, error) {
	s := h.s
	at, last := s.e.Phys(h.first), s.e.Phys(h.first-1)
	var st *passStream
	for _, c := range s.streams {
		if c.block <= at && (st == nil || c.block > st.block) {
			st = c
		}
	}
	s.streams = nil // (memory)
	switch {
	case st == nil:
		return s.outputs(h.fit, s.align, nil, 0, last)
	case st.block == at:
		return st.rows, nil
	}
	return s.outputs(h.fit, s.align, st.rows, st.block, last)
}

// block refits current block o, keeps the refit if the held-back loss
// falls, and advances the streams past the block.
func (h *healer) block(o int) (HealStep, []float32, error) {
	s := h.s
	p, tgt := s.e.Phys(o), s.target(o)
	step := HealStep{Block: o, Loaded: p, Target: tgt, HeldNLL: math.NaN()}
	if h.depth < tgt {
		xo, err := s.outputs(h.orig, s.align, h.xo, h.depth, tgt-1)
		if err != nil {
			return step, nil, err
		}
		h.xo, h.depth = xo, tgt
	}
	w0, err := s.e.Values(o, healSuffix)
	if err != nil {
		return step, nil, err
	}
	ridge, outs, lin, err := h.stats(o, w0)
	if err != nil {
		return step, nil, err
	}
	var w []float32
	if lin <= linearTol {
		t0 := time.Now()
		if w, err = ridge.Solve(s.cfg.HealRho, w0); err != nil {
			return step, nil, err
		}
		h.solve += time.Since(t0).Seconds()
		if err := s.e.Replace(o, healSuffix, w); err != nil {
			return step, nil, err
		}
		sc, xh, err := h.score(o, h.cur)
		if err != nil {
			return step, nil, err
		}
		step.HeldNLL = sc.mean()
		if len(sc.sum) < len(s.held) {
			step.Chunks = len(sc.sum) // lost the race
		} else if step.HeldNLL < h.cur.mean() {
			s.e.Commit(0, 0)
			step.Kept, h.cur, h.xh = true, sc, xh
			s.keepQuality(sc)
			h.xg, err = s.outputs(h.fit, s.align, h.xg, p, p)
			return step, w, err
		}
		if err := s.e.Restore(); err != nil {
			return step, nil, err
		}
	} else {
		progress.Printf("healing: blk %d: its FFN output is not linear in ffn_down (relative error %.2g): not refitted\n", o, lin)
	}
	h.xg = outs
	h.xh, err = s.outputs(s.sess.score, s.held, h.xh, p, p)
	return step, nil, err
}

// stats decodes current block o on the alignment chunks and returns the
// normal equations of its ffn_down refit, the block's outputs, and the
// relative error of "FFN output = W₀ a" on the first chunk.
func (h *healer) stats(o int, w0 []float32) (*merge.Ridge, [][]float32, float64, error) {
	s := h.s
	p, d := s.e.Phys(o), s.d
	nff := len(w0) / d
	weights := merge.InverseNormWeights(h.xo, d, s.skip)
	ridge := merge.NewRidge(nff, d)
	if s.e.product != nil {
		ridge.Product = s.e.product.Compute
	}
	name := fmt.Sprintf("blk.%d.%s", p, healSuffix)
	outs := make([][]float32, len(s.align))
	var a, f, r []float32
	fromX := false // f holds the FFN's output X, not F
	var lin [2]float64
	var herr error
	if err := h.fit.SetMatMul(name, func(w string, cols, rows int, data []float32) bool {
		if w == name && cols == nff {
			a = append(a[:0], data...)
		}
		return true
	}); err != nil {
		return nil, nil, 0, err
	}
	defer h.fit.SetMatMul("", nil)
	err := s.decode(h.fit, s.align, h.xg, p, p, func(c int, tn cgo.Tensor) bool {
		if tn.Layer != p {
			return true
		}
		switch tn.Kind {
		case cgo.FFNInput:
			f = append(f[:0], tn.Data...)
		case cgo.FFNOutput: // the graph names no F (phi3): F = l_out − X
			f, fromX = append(f[:0], tn.Data...), true
		case cgo.BlockOutput:
			rows := tn.Rows
			if len(a) != rows*nff || len(f) != rows*d || len(h.xo[c]) != rows*d {
				herr = fmt.Errorf("chunk %d: captured %d ffn_down inputs, %d values of the stream before the FFN, %d target values for %d rows", c, len(a), len(f), len(h.xo[c]), rows)
				return false
			}
			outs[c] = slices.Clone(tn.Data)
			if fromX {
				for i, x := range f {
					f[i] = tn.Data[i] - x
				}
			}
			r = slices.Grow(r[:0], rows*d)[:rows*d]
			for i := range r {
				r[i] = h.xo[c][i] - f[i]
			}
			if herr = ridge.Add(a, r, weights[c], rows); herr != nil {
				return false
			}
			if c == 0 {
				lin = linearity(a, f, outs[c], w0, rows, nff, d)
			}
			a, f = a[:0], f[:0]
		}
		return true
	}, nil)
	if err == nil {
		err = herr
	}
	if err != nil {
		return nil, nil, 0, err
	}
	return ridge, outs, lin[0] / max(lin[1], 1e-30), nil
}

// linearity returns ‖M − A W₀ᵀ‖² and ‖M‖², M = out − f.
func linearity(a, f, out, w0 []float32, rows, nff, d int) [2]float64 {
	var e, m float64
	for t := range rows {
		at := a[t*nff : (t+1)*nff]
		for k := range d {
			var y float64
			wk := w0[k*nff : (k+1)*nff]
			for i, v := range at {
				y += float64(v) * float64(wk[i])
			}
			mk := float64(out[t*d+k] - f[t*d+k])
			e += (mk - y) * (mk - y)
			m += mk * mk
		}
	}
	return [2]float64{e, m}
}

// score returns the next-token losses on the held-back chunks of the model
// as it is now, decoded from current block o on, and the chunks' streams
// after block o. Against best (with Config.Race) it stops, on fewer
// chunks, as soon as the model is significantly worse than best
// (heldScore.cannotWin with no tolerance): such a refit is discarded
// whatever the other chunks say.
func (h *healer) score(o int, best *heldScore) (*heldScore, [][]float32, error) {
	s := h.s
	p := s.e.Phys(o)
	out := make([][]float32, len(s.held))
	sc := &heldScore{}
	if best != nil && s.refReady() {
		sc.acc = &kld.Accumulator{} // the closing quality check, if kept
	}
	race := best != nil && s.cfg.Race && !s.cfg.ScoreAll
	err := s.decode(s.sess.score, s.held, h.xh, p, -1, func(c int, tn cgo.Tensor) bool {
		if tn.Kind == cgo.BlockOutput && tn.Layer == p {
			out[c] = slices.Clone(tn.Data)
		}
		return true
	}, func(c int, d *runner.Decoded) error {
		ch := s.held[c]
		logits := func(k int) []float32 { return d.Logits(0, k) }
		if sc.acc != nil {
			// The same sum as ChunkNLL's, one softmax per position.
			sc.sum = append(sc.sum, sc.acc.AddChunk(s.quality.ref[c], ch, logits))
		} else {
			sc.sum = append(sc.sum, kld.ChunkNLL(ch, logits))
		}
		sc.n = append(sc.n, len(ch)-1)
		s.work.heldBlocks += s.sess.score.Blocks(p)
		s.work.heldLogits++
		if race && len(sc.sum) < len(s.held) && sc.cannotWin(best, 0) {
			return errLost
		}
		return nil
	})
	if err != nil && !errors.Is(err, errLost) {
		return nil, nil, err
	}
	return sc, out, nil
}

// replacementBytes returns the bytes of file tensor i holding v
// (edit.Replacement, as the rewrite computes them).
func replacementBytes(e *Editor, i int, v []float32) ([]byte, error) {
	t, err := edit.Replacement(e.f.Tensors[i], v)
	if err != nil {
		return nil, err
	}
	return t.Bytes(context.Background(), e.codec)
}
