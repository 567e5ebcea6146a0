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

// statsPool is the memory of the alignment statistics: empty statistics
// reused from pass to pass (they share one scratch), and the device of
// their products.
type statsPool struct {
	d, threads int
	pool       []*merge.AlignStats
	scratch    *merge.AlignScratch
	gram       *cgo.Gram
}

// take returns n empty statistics, reusing those of earlier passes, so that
// the search allocates them once.
func (p *statsPool) take(n int) []*merge.AlignStats {
	if p.scratch == nil {
		p.scratch, p.gram = newScratch(p.d, p.threads)
	}
	for len(p.pool) < n {
		p.pool = append(p.pool, merge.NewAlignStats(p.d, p.scratch))
	}
	for _, st := range p.pool[:n] {
		st.Reset()
	}
	return p.pool[:n]
}

// adopt takes over the statistics of a completed prefill and their
// scratch and device.
func (p *statsPool) adopt(pf *Prefill) {
	p.scratch, p.gram = pf.scratch, pf.gram
	pf.gram = nil // the searcher closes it
	for _, j := range pf.drops {
		p.pool = append(p.pool, pf.p.stats[j]) // reused by the next passes
	}
}

// release drops the statistics, the scratch and the products' buffers,
// and returns the memory to the system.
func (p *statsPool) release() {
	p.pool, p.scratch = nil, nil
	p.gram.Close()
	p.gram = nil
	freeMemory()
}

// passStats runs one alignment pass over the model as it is now and
// returns, for each candidate j (current blocks, j ≥ 1) that removes the
// run of blocks j … j+run−1, the statistics of aligning block j−1 to
// reproduce block j+run−1's output, and the BI and angular distance of
// every current block it ran (from Searcher.passFrom on: the pass starts
// on a stored stream where it can, reuse.go). It stores the streams
// entering the current blocks keep for the next pass.
func (s *Searcher) passStats(drops []int, run int, keep []int) (map[int]*merge.AlignStats, map[int][2]float64, error) {
	e, cp := s.e, s.sess.cap
	phys := make([]int, e.Blocks())
	for c := range phys {
		phys[c] = e.Phys(c)
	}
	p := newPass(s.d, len(s.align[0]), s.skip, run, phys, 0, len(s.align))
	pool := s.stats.take(len(drops))
	for i, j := range drops {
		p.stats[j] = pool[i]
	}
	deepest := p.deepest()
	from, in := s.resumeFrom(drops)
	s.passFrom = from
	s.work.passBlocks += len(s.align) * (cp.Blocks(phys[from]) - cp.Blocks(deepest+1))
	if s.sess.orig == nil {
		sig, err := s.runPass(p, drops, deepest, from, in, keep)
		if err != nil {
			return nil, nil, err
		}
		return p.stats, sig, nil
	}
	// Config.Original: per batch, the original model's outputs at the
	// target blocks, then the merged model's pass.
	orig := s.sess.orig
	p.useOrig, p.origH = true, map[int][]float32{}
	targets := map[int]bool{}
	for _, j := range drops {
		targets[e.Phys(j+run-1)] = true
	}
	if err := orig.SetCapture(func(tn cgo.Tensor) bool {
		if targets[tn.Layer] && tn.Kind == cgo.BlockOutput && tn.Cols == s.d {
			_, _, c1 := p.window()
			p.origH[tn.Layer] = p.rows(tn.Data, p.origH[tn.Layer], 0, c1)
		}
		return true
	}, deepest); err != nil {
		return nil, nil, err
	}
	if err := cp.SetCapture(p.capture, deepest); err != nil {
		return nil, nil, err
	}
	var err error
	k := cp.SeqsPerDecode()
	for first := 0; first < len(s.align) && err == nil; first += k {
		batch := s.align[first:min(len(s.align), first+k)]
		before := func(f, n int) { p.before(first+f, n) }
		if err = orig.Run(s.cfg.Context, batch, before, nil); err == nil {
			err = cp.Run(s.cfg.Context, batch, before, nil)
		}
	}
	orig.SetCapture(nil, -1)
	cp.SetCapture(nil, -1)
	if p.err != nil {
		return nil, nil, p.err
	}
	if err != nil {
		return nil, nil, err
	}
	return p.stats, p.signals(), nil
}

// runPass runs alignment pass p (statistics for drops, blocks up to
// deepest) over the alignment chunks on the capture session, from current
// block from on the streams in entering it (0, nil: from the tokens), with
// a progress line, and returns the signals of the current blocks it ran.
// It stores the streams entering the current blocks keep at or after from
// (Searcher.keepStreams).
func (s *Searcher) runPass(p *pass, drops []int, deepest, from int, in [][]float32, keep []int) (map[int][2]float64, error) {
	cp := s.sess.cap
	var kept []*passStream
	byOut := map[int]*passStream{} // loaded block → the stream its output enters
	for _, k := range keep {
		if k < from || k < 1 || p.phys[k-1] > deepest || cp.SeqsPerDecode() != 1 { // (rows per chunk)
			continue
		}
		st := &passStream{block: p.phys[k], rows: in}
		if k > from {
			st.rows = make([][]float32, len(s.align))
			byOut[p.phys[k-1]] = st
		}
		kept = append(kept, st)
	}
	first := 0
	capture := p.capture
	if len(byOut) > 0 {
		capture = func(tn cgo.Tensor) bool {
			if st := byOut[tn.Layer]; st != nil && tn.Kind == cgo.BlockOutput && tn.Cols == s.d {
				st.rows[first] = slices.Clone(tn.Data)
			}
			return p.capture(tn)
		}
	}
	if err := cp.SetCapture(capture, deepest); err != nil {
		return nil, err
	}
	bar := progress.New("alignment pass", len(s.align), "chunks")
	defer bar.Done()
	done := 0
	s.clock.phaseStart = time.Now()
	before := func(f, n int) {
		first = f
		p.before(f, n)
		if in != nil {
			p.seed(from-1, in[f:f+n])
		}
	}
	after := func(d *runner.Decoded) error {
		done += d.Count
		bar.Set(done, fmt.Sprintf("%d candidates%s", len(drops), s.eta(true, float64(done)/float64(len(s.align)))))
		return nil
	}
	var err error
	if in != nil {
		err = cp.RunFrom(s.cfg.Context, in, p.phys[from], before, after)
	} else {
		err = cp.Run(s.cfg.Context, s.align, before, after)
	}
	s.streams = s.keepStreams(complete(kept))
	if cerr := cp.SetCapture(nil, -1); err == nil {
		err = cerr
	}
	if err == nil {
		err = p.err
	}
	if err != nil {
		return nil, err
	}
	return p.signals(), nil
}
