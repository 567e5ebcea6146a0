package pipeline

import (
	"errors"
	"fmt"
	"slices"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/kld"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/runner"
)

// heldMore scores the model as it is now on the held-back chunks after
// those h has, up to chunk upTo, appending to h. With best (and
// Config.Race), it stops as soon as the model loses the race against best,
// and says so. With in holding the stream entering a block at or below
// the first one changed (Editor.FirstPending), the decodes start there.
func (s *Searcher) heldMore(h *heldScore, upTo int, best *heldScore, in *heldInputs) (lost bool, err error) {
	race := best != nil && s.cfg.Race && !s.cfg.ScoreAll
	from := len(h.sum)
	if from >= upTo {
		return false, nil
	}
	start, rows := in.at(s.e.FirstPending(), from, upTo)
	after := func(d *runner.Decoded) error {
		for i := range d.Count {
			ch := s.held[from+d.First+i]
			logits := func(k int) []float32 { return d.Logits(i, k) }
			var sum float64
			if h.acc != nil && s.quality.ref[from+d.First+i] != nil {
				// The same sum as ChunkNLL's, one softmax per position.
				sum = h.acc.AddChunk(s.quality.ref[from+d.First+i], ch, logits)
			} else {
				sum = kld.ChunkNLL(ch, logits)
			}
			h.sum = append(h.sum, sum)
			h.n = append(h.n, len(ch)-1)
		}
		s.work.heldBlocks += d.Count * s.sess.score.Blocks(start)
		s.work.heldLogits += d.Count
		// A candidate scored in full is judged by its full score.
		if race && len(h.sum) < upTo && h.cannotWin(best, raceTolerance) {
			return errLost
		}
		return nil
	}
	if rows != nil {
		err = s.sess.score.RunFrom(s.cfg.Context, rows, start, nil, after)
	} else {
		err = s.sess.score.Run(s.cfg.Context, s.held[from:upTo], nil, after)
	}
	if errors.Is(err, errLost) {
		return true, nil
	}
	return false, err
}

// heldInputs is, for held-back chunks [from, from+n) of one stage of a
// round, the residual stream entering each of the stage's start blocks
// (loaded block b: T × d floats per chunk), captured from the committed
// model. A candidate whose changes all lie in block b or later is scored
// from b on (runner.Session.RunFrom): blocks 0 … b−1, unchanged, are not
// run again for every candidate, and the logits are those of a whole
// decode, bit for bit (cgo.TestDecodeFrom).
type heldInputs struct {
	from, n int
	rows    map[int][][]float32 // start block → per chunk
}

// at returns the deepest start block at or below first with inputs for
// chunks [from, upTo), and those inputs; (0, nil) when there is none, or
// for a nil h.
func (h *heldInputs) at(first, from, upTo int) (int, [][]float32) {
	if h == nil || from < h.from || upTo > h.from+h.n {
		return 0, nil
	}
	best := 0
	for b := range h.rows {
		if b <= first && b > best {
			best = b
		}
	}
	if best == 0 {
		return 0, nil
	}
	return best, h.rows[best][from-h.from : upTo-h.from]
}

// startOf returns the loaded block from which candidate c's decodes can
// start: the first block it changes (the survivor, block c.Drop−1).
func (s *Searcher) startOf(c *Candidate) int {
	if c.Drop < 1 {
		return 0
	}
	return s.e.Phys(c.Drop - 1)
}

// captureHeld decodes held-back chunks [from, upTo) of the committed model
// up to the deepest of starts and keeps the stream entering each start
// block, deepest first while they fit in Config.MaxStatsBytes (the round
// holds no statistics). It returns nil when resumed decodes are off or
// would save nothing: fewer than two of starts past block 0 (the capture
// itself costs a decode up to the deepest one). With ref, the committed
// model is the one the quality check compares with (step 1): the decodes
// then run to the logits and keep its distributions (quality.ref).
func (s *Searcher) captureHeld(starts []int, from, upTo int, ref bool) (*heldInputs, error) {
	if upTo <= from {
		return nil, nil
	}
	var past []int
	for _, b := range starts {
		if b > 0 {
			past = append(past, b)
		}
	}
	if !s.sess.resume || len(past) < 2 {
		if ref {
			return nil, s.keepRef(from, upTo)
		}
		return nil, nil
	}
	slices.Sort(past)
	past = slices.Compact(past)
	slices.Reverse(past)
	t := len(s.held[from])
	per := int64(upTo-from) * int64(t) * int64(s.d) * 4
	want := map[int]bool{}
	var bytes int64
	for _, b := range past {
		if bytes+per > s.cfg.MaxStatsBytes && len(want) > 0 {
			continue
		}
		want[b], bytes = true, bytes+per
	}
	h := &heldInputs{from: from, n: upTo - from, rows: map[int][][]float32{}}
	deepest := 0
	for b := range want {
		h.rows[b] = make([][]float32, upTo-from)
		deepest = max(deepest, b)
	}
	// The stream entering a start block is the output of the block that
	// runs before it (blocks made identities do not run).
	live := s.e.Live()
	next := map[int]int{} // loaded block → the one that runs after it
	stop := -1
	for i := 1; i < len(live); i++ {
		next[live[i-1]] = live[i]
		if live[i] == deepest {
			stop = live[i-1]
		}
	}
	var first, count int
	var hookErr error
	capture := func(tn cgo.Tensor) bool {
		b, ok := next[tn.Layer]
		if tn.Kind != cgo.BlockOutput || !ok || !want[b] {
			return true
		}
		if tn.Cols != s.d || tn.Rows != count*t {
			hookErr = fmt.Errorf("held-back capture: blk %d output is %d × %d, want %d × %d", tn.Layer, tn.Rows, tn.Cols, count*t, s.d)
			return false
		}
		for c := range count {
			h.rows[b][first-from+c] = slices.Clone(tn.Data[c*t*s.d : (c+1)*t*s.d])
		}
		return true
	}
	after := func(*runner.Decoded) error { return nil }
	if ref {
		stop, after = -1, s.refAfter(from)
	}
	if err := s.sess.score.SetCapture(capture, stop); err != nil {
		return nil, err
	}
	err := s.sess.score.Run(s.cfg.Context, s.held[from:upTo], func(f, n int) { first, count = from+f, n }, after)
	if cerr := s.sess.score.SetCapture(nil, -1); err == nil {
		err = cerr
	}
	if err == nil {
		err = hookErr
	}
	if err != nil {
		return nil, err
	}
	if !ref {
		s.work.heldBlocks += (upTo - from) * (s.sess.score.Blocks(0) - s.sess.score.Blocks(deepest))
	}
	return h, nil
}
