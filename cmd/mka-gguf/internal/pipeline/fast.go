package pipeline

import (
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/progress"
	"github.com/mka-gguf/mka-gguf/merge"
)

// Fast removes n blocks as Search does, but chooses each step's removal by
// the closed-form filter alone (the aligned stream residual, Search's
// filter) from one alignment pass: no held-back round, no healing. The
// first step's fits come from the calibration pass (Config.Prefill). A
// commit that removes blocks j … j+r−1 and aligns block j−1 leaves the
// other candidates' fits in place: exact for those below it, measured on a
// stream the commit changed by its residual for those above it; those
// that touch blocks j−1 … j+r−1 (their survivor or blocks are gone) drop
// out, so removals do not gather next to each other as the search's may.
// A new alignment pass runs only when no fit is left (merge --fast gives
// the calibration pass's statistics enough candidates, 3·steps − 2).
func (s *Searcher) Fast(n int) (*Result, error) {
	if n%s.run != 0 {
		return nil, fmt.Errorf("pipeline: %d blocks cannot be removed in runs of %d", n, s.run)
	}
	res := &Result{}
	var steps []merge.Step
	var pool []*Candidate
	n /= s.run
	bar := progress.New("fast merge", n, "steps")
	defer bar.Done()
	for step := range n {
		if s.e.Blocks() < s.run+1 {
			return nil, fmt.Errorf("pipeline: cannot remove %d blocks", n*s.run)
		}
		t0 := time.Now()
		pass0 := s.work.passBlocks
		prefilled, reused := false, true
		best := s.best(pool)
		if best == nil {
			reused = false
			cands, pf, err := s.fit(step)
			if err != nil {
				return nil, err
			}
			pool, prefilled = cands, pf
			if best = s.best(pool); best == nil {
				return nil, fmt.Errorf("pipeline: step %d: no candidate to remove", step+1)
			}
		}
		best.Chosen = true
		if err := s.commit(best); err != nil {
			return nil, err
		}
		pool = afterCommit(pool, best, s.run)
		for range s.run {
			steps = append(steps, merge.Step{Kind: merge.StepDrop, Blocks: [2]int{best.Drop, best.Drop}})
		}
		rep := StepReport{Step: step + 1, Drop: best.Drop, Run: best.Run, Survivor: best.Drop - 1, Residual: best.Residual, Unaligned: best.Unaligned,
			AlignSeconds: time.Since(t0).Seconds(), Prefilled: prefilled, Reused: reused, PassBlocks: s.work.passBlocks - pass0}
		if best.align != nil {
			rep.Rho, rep.Tokens = best.align.RhoRel, best.align.Tokens
		}
		res.Steps = append(res.Steps, rep)
		best.align = nil
		bar.Set(step+1, fmt.Sprintf("removed %s, stream residual %.4f", best.blocksName(), best.Stream))
	}
	return s.finish(steps, res)
}

// filter is the closed-form score that orders the candidates: the
// stream residual, aligned or not as Config.Align says (lower is better).
func (s *Searcher) filter(c *Candidate) float64 {
	if s.cfg.Align {
		return c.Stream
	}
	return c.StreamUnaligned
}

// best returns the candidate of pool that the filter ranks first (nil:
// none).
func (s *Searcher) best(pool []*Candidate) *Candidate {
	if len(pool) == 0 {
		return nil
	}
	return s.byFilter(pool)[0]
}

// byFilter returns cands ordered by the filter, best first (ties in their
// order).
func (s *Searcher) byFilter(cands []*Candidate) []*Candidate {
	order := slices.Clone(cands)
	sort.SliceStable(order, func(a, b int) bool { return s.filter(order[a]) < s.filter(order[b]) })
	return order
}

// below reports whether candidate c's blocks (a run of r) all end before
// best's survivor: committing best leaves c's fit exact and its number.
func below(c, best *Candidate, r int) bool { return c.Drop+r-1 < best.Drop-1 }

// afterCommit returns the candidates of pool whose fit survives committing
// best (a run of r): those that touch none of the current blocks
// best.Drop−1 … best.Drop+r−1, renumbered for the blocks removed before
// them.
func afterCommit(pool []*Candidate, best *Candidate, r int) []*Candidate {
	j := best.Drop
	var out []*Candidate
	for _, c := range pool {
		switch {
		case c == best:
		case below(c, best, r):
			out = append(out, c)
		case c.Drop-1 >= j+r: // its survivor lies after the removed run
			c.Drop -= r
			out = append(out, c)
		}
	}
	return out
}
