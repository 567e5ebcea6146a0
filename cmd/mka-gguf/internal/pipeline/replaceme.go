package pipeline

import (
	"fmt"
	"slices"
	"time"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/progress"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/runner"
	"github.com/mka-gguf/mka-gguf/merge"
)

// ReplaceMe removes n blocks as ReplaceMe does (Shopkhoev et al. 2025,
// arXiv 2505.02819), from its official code (mts-ai/ReplaceMe):
//
//   - the cut (distance.py, utils.py): one contiguous run of n blocks,
//     never block 0, the one whose input and output have the smallest mean
//     angular distance arccos(cos)/π at the last token of each calibration
//     sequence (merge.ReplaceMeCut on last, the calibration pass's
//     last-token states);
//   - the transform (lstsq.py): one forward pass of the unmodified model
//     over every token of the alignment chunks, BOS included (the official
//     code keeps every position), M the FFN output of the block before the
//     cut, F its stream before the FFN, Y the stream after the cut, and
//     T = (MᵀM)⁻¹ Mᵀ(Y − F) with no ridge (alpha 0 in every shipped
//     config; solved by Cholesky in float64 where the code inverts);
//   - the fold (lstsq.py): ffn_down ← Tᵀ ffn_down in the block before the cut.
//
// Unlike the official code, the calibration is this merge's text (not
// SlimOrca) and the model keeps its own precision (no 4-bit calibration,
// no bf16 output).
func (s *Searcher) ReplaceMe(n int, last [][]float32) (*Result, error) {
	t0 := time.Now()
	start, dist, err := merge.ReplaceMeCut(last, s.d, n)
	if err != nil {
		return nil, err
	}
	if s.e.Blocks() != len(last)-1 {
		return nil, fmt.Errorf("replaceme: %d calibration representations for %d blocks", len(last), s.e.Blocks())
	}
	pre, end := start-1, start+n // fold into block pre; Y is block end−1's output
	progress.Printf("replaceme: cut blks %d–%d (mean angular distance %.4f), fold T into blk %d\n", start, end-1, dist[start-1], pre)
	st := merge.NewAlignStats(s.d, merge.NewAlignScratch(s.d))
	var f, x, y []float32
	var herr error
	capture := func(tn cgo.Tensor) bool {
		if tn.Cols != s.d {
			return true
		}
		switch {
		case tn.Layer == pre && tn.Kind == cgo.FFNInput:
			f = append(f[:0], tn.Data...)
		case tn.Layer == pre && tn.Kind == cgo.BlockOutput:
			if len(f) != len(tn.Data) {
				herr = fmt.Errorf("the architecture graph does not name ffn_inp-%d: ReplaceMe needs it", pre)
				return false
			}
			x = slices.Grow(x[:0], len(f))[:len(f)]
			for i, v := range tn.Data {
				x[i] = v - f[i] // M, the FFN output
			}
		case tn.Layer == end-1 && tn.Kind == cgo.BlockOutput:
			y = slices.Grow(y[:0], len(f))[:len(f)]
			for i, v := range tn.Data {
				y[i] = v - f[i] // Y − F
			}
			st.AddTargetNorm(tn.Data)
			if herr = st.Add(x, y, tn.Rows); herr != nil {
				return false
			}
		}
		return true
	}
	cp := s.sess.cap
	if err := cp.SetCapture(capture, end-1); err != nil {
		return nil, err
	}
	bar := progress.New("replaceme lstsq pass", len(s.align), "chunks")
	err = cp.Run(s.cfg.Context, s.align, nil, func(d *runner.Decoded) error {
		bar.Set(d.First+d.Count, "")
		return nil
	})
	bar.Done()
	if cerr := cp.SetCapture(nil, -1); err == nil {
		err = cerr
	}
	if err == nil {
		err = herr
	}
	if err != nil {
		return nil, err
	}
	s.work.passBlocks += len(s.align) * end
	a, err := st.Solve(0)
	if err != nil {
		return nil, fmt.Errorf("replaceme: %w", err)
	}
	res := &Result{}
	var steps []merge.Step
	for range n {
		steps = append(steps, merge.Step{Kind: merge.StepDrop, Blocks: [2]int{start, start}})
		res.Steps = append(res.Steps, StepReport{Step: len(steps), Drop: start, Survivor: pre, HeldNLL: 0})
		if err := s.e.Drop(start); err != nil {
			return nil, err
		}
		s.e.Commit(start, 1)
		s.alns = append(s.alns[:start:start], s.alns[start+1:]...)
	}
	if err := s.e.Align(pre, a); err != nil {
		return nil, err
	}
	s.e.Commit(0, 0)
	s.alns[pre] = a
	last0 := &res.Steps[len(res.Steps)-1]
	last0.Residual, last0.Unaligned, last0.Tokens, last0.AlignSeconds = a.Residual, a.Unaligned, a.Tokens, time.Since(t0).Seconds()
	progress.Printf("replaceme: T fitted on %d tokens: residual %.4f (%.4f without)\n", a.Tokens, a.Residual, a.Unaligned)
	return s.finish(steps, res)
}
