package pipeline

import (
	"math"
	"slices"

	"github.com/mka-gguf/mka-gguf/merge"
)

// What an alignment pass need not decode again. A commit that removes
// blocks j … j+r−1 and aligns block j−1 changes nothing below block j−1:
// a candidate whose blocks and survivor all lie below it keeps its fit
// exactly (Searcher.kept), and the residual stream entering any block at
// or below j−1 is what the last pass saw there (Searcher.stream). The
// next pass then fits only the other candidates, from a stored stream
// entering a block at or below the first of them (runner.Session.RunFrom:
// the same captures as a decode from the tokens, bit for bit), so that
// the search's choices, losses and alignments are those of whole passes.

// passStream is the alignment chunks' residual stream entering loaded
// block block (one T × d slice per chunk), valid while no commit changes
// a block before it.
type passStream struct {
	block int
	rows  [][]float32
}

// reuse splits the step's candidates drops into those without an exact fit
// (to fit in a pass) and the kept fits of the others, their scores reset.
func (s *Searcher) reuse(drops []int) (need []int, kept []*Candidate) {
	for _, j := range drops {
		c := s.kept[j]
		if c == nil {
			need = append(need, j)
			continue
		}
		cc := *c
		cc.HeldNLL, cc.Held, cc.RaceChunks, cc.Partial, cc.Chosen = math.NaN(), nil, 0, nil, false
		kept = append(kept, &cc)
	}
	s.kept = nil
	return need, kept
}

// keepExact keeps, after best's commit, the fits of cands that it left
// exact: those whose blocks all lie below its survivor (the current
// numbers below the commit do not change). fits holds each candidate's
// alignment (the round drops its own references).
func (s *Searcher) keepExact(cands []*Candidate, fits map[*Candidate]*merge.Alignment, best *Candidate) {
	s.kept = map[int]*Candidate{}
	if s.wholePasses {
		return
	}
	for _, c := range cands {
		if c != best && fits[c] != nil && below(c, best, s.run) {
			cc := *c
			cc.align = fits[c]
			s.kept[c.Drop] = &cc
		}
	}
}

// keepAt returns the current block whose entering stream this pass keeps
// for the next one (0: none): two blocks before the shallowest candidate
// the next commit can be. That commit is the next round's winner, one of
// the filter's best Candidates among this step's fits: the fresh ones
// (need) or the best kept ones; the next pass then fits at least the
// candidate that removes its survivor, whose own survivor is one block
// lower still.
func (s *Searcher) keepAt(need []int, kept []*Candidate) int {
	if !s.sess.layers || s.sess.orig != nil || s.cfg.ScoreAll || s.wholePasses {
		return 0
	}
	order := s.byFilter(kept)
	low := math.MaxInt
	for _, j := range need {
		low = min(low, j)
	}
	for _, c := range order[:min(len(order), s.cfg.Candidates)] {
		low = min(low, c.Drop)
	}
	return max(low-2, 0)
}

// resumeFrom returns the current block from which a pass fitting drops
// can start on the stored stream, and that stream (0, nil: from the
// tokens).
func (s *Searcher) resumeFrom(drops []int) (int, [][]float32) {
	st := s.stream
	if st == nil || len(drops) == 0 || !s.sess.layers || s.sess.orig != nil {
		return 0, nil
	}
	first := slices.Min(drops) - 1 // the shallowest survivor
	for c := 1; c <= first; c++ {
		if s.e.Phys(c) == st.block {
			return c, st.rows
		}
	}
	return 0, nil
}

// invalidate drops the stored stream when a commit whose first changed
// block is loaded block changed lies before it.
func (s *Searcher) invalidate(changed int) {
	if s.stream != nil && changed < s.stream.block {
		s.stream = nil
	}
}
