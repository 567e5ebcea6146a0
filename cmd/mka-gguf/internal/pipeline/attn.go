package pipeline

import (
	"fmt"
	"math"
	"slices"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/progress"
	"github.com/mka-gguf/mka-gguf/merge"
)

// refineAttn tries aligning the surviving block's attention output too
// (Config.AlignAttn) for the step's best candidate c, a drop: with x the
// survivor's input, A = F − x its attention output and out its output,
// first
//
//	T_a = argmin ‖A T_a − (H − out + A)‖² + ρ‖T_a − I‖²
//
// (the attention output that would close the gap with the FFN output held
// fixed), folded into attn_output; then the FFN alignment is fitted again
// on the block as T_a leaves it (its FFN sees a new input), to the same
// target H. The pair is scored on the held-back text and kept in c when
// its loss is lower. It costs three decodes of the alignment chunks.
func (s *Searcher) refineAttn(c *Candidate) error {
	j := c.Drop
	if j < 1 {
		return nil
	}
	st, err := s.attnStats(j)
	if err != nil {
		return err
	}
	ta, err := st.Solve(s.cfg.Rho)
	if err != nil {
		return fmt.Errorf("attention alignment of blk %d: %w", j-1, err)
	}
	fst, err := s.editedStats(j, func() error { return s.e.AlignAttn(j-1, ta) })
	if err != nil {
		return err
	}
	tf, err := fst.Solve(s.cfg.Rho)
	if err != nil {
		return fmt.Errorf("alignment of blk %d after its attention: %w", j-1, err)
	}
	nll, err := s.scoreTrial(&Candidate{Drop: j, Lambda: 1, align: tf, attn: ta})
	if err != nil {
		return err
	}
	progress.Printf("  attention aligned too: held-back loss %.4f against %.4f (attention residual %.4f, FFN residual %.4f)\n", nll, c.HeldNLL, ta.Residual, tf.Residual)
	c.AttnHeldNLL = &nll
	if nll < c.HeldNLL {
		c.HeldNLL, c.align, c.attn = nll, tf, ta
		c.Residual, c.Unaligned = tf.Residual, tf.Unaligned
		c.AttnResidual = &ta.Residual
	}
	return nil
}

// attnStats accumulates, in one pass of the committed model, the
// statistics of T_a for the survivor of drop j (refineAttn).
func (s *Searcher) attnStats(j int) (*merge.AlignStats, error) {
	d, e := s.d, s.e
	pb, pj := e.Phys(j-1), e.Phys(j)
	st := s.ownStats()
	t := len(s.align[0])
	var count int
	var xin, f, out, a, y []float32
	keep := func(data, dst []float32) []float32 { return fitRows(data, dst, d, t, s.skip, 0, count) }
	var hookErr error
	capture := func(tn cgo.Tensor) bool {
		switch {
		case tn.Layer == pb-1 && tn.Kind == cgo.BlockOutput: // the survivor's input (identities pass it on)
			xin = keep(tn.Data, xin)
		case tn.Layer == pb && tn.Kind == cgo.FFNInput:
			f = keep(tn.Data, f)
		case tn.Layer == pb && tn.Kind == cgo.BlockOutput:
			out = keep(tn.Data, out)
		case tn.Layer == pj && tn.Kind == cgo.BlockOutput:
			h := keep(tn.Data, nil)
			if len(xin) != len(h) || len(f) != len(h) || len(out) != len(h) {
				hookErr = fmt.Errorf("capture: blk %d's input, ffn_inp or output missing", pb)
				return false
			}
			a = slices.Grow(a[:0], len(h))[:len(h)]
			y = slices.Grow(y[:0], len(h))[:len(h)]
			for i := range h {
				a[i] = f[i] - xin[i]
				y[i] = h[i] - out[i] + a[i]
			}
			st.AddTargetNorm(h)
			if err := st.Add(a, y, len(h)/d); err != nil {
				hookErr = err
				return false
			}
		}
		return true
	}
	if err := s.cap.SetCapture(capture, pj); err != nil {
		return nil, err
	}
	err := s.cap.Run(s.cfg.Context, s.align, func(_, n int) { count = n }, nil)
	s.cap.SetCapture(nil, -1)
	if err == nil {
		err = hookErr
	}
	if err == nil && math.IsNaN(st.YtY) {
		err = fmt.Errorf("attention alignment of blk %d: non-finite activations", pb)
	}
	return st, err
}
