package pipeline

import (
	"maps"
	"math"
	"slices"

	"github.com/mka-gguf/mka-gguf/merge"
)

// What an alignment pass need not decode again. A commit that removes
// blocks j … j+r−1 and aligns block j−1 changes nothing below block j−1:
// a candidate whose blocks and survivor all lie below it keeps its fit
// exactly (Searcher.kept), and the residual stream entering any block at
// or below j−1 is what the last pass (or the calibration pass, Prefill)
// saw there (Searcher.streams: entering two blocks before each candidate
// the round may commit, as many as Config.StreamBytes holds). The next
// pass then fits only the other candidates, from the deepest stored
// stream entering a block at or below the first of them
// (runner.Session.RunFrom: the same captures as a decode from the tokens),
// so that the search's choices, losses and alignments are those of whole
// passes.

// passStream is the alignment chunks' residual stream entering loaded
// block block (one T × d slice per chunk), valid while no commit changes
// a block before it.
type passStream struct {
	block int
	rows  [][]float32
}

// complete returns the streams of sts that hold every chunk.
func complete(sts []*passStream) []*passStream {
	return slices.DeleteFunc(sts, func(st *passStream) bool {
		return slices.ContainsFunc(st.rows, func(r []float32) bool { return r == nil })
	})
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

// resumes reports whether passes start on stored streams: decodes that
// leave out blocks (runner sessions with Layers), no Config.Original
// decodes beside them, not every candidate scored, no whole passes asked.
func (s *Searcher) resumes() bool {
	return s.sess.layers && s.sess.orig == nil && !s.cfg.ScoreAll && !s.wholePasses
}

// keepAt returns the current blocks whose entering streams this pass keeps
// for the next one (none: nil): two blocks before each candidate the next
// commit can be, as many as Config.StreamBytes holds (spread). That commit
// is the next round's winner, one of the filter's best Candidates among
// this step's fits: the fresh ones (need) or the best kept ones; the next
// pass then fits at least the candidate that removes its survivor, whose
// own survivor is one block lower still.
func (s *Searcher) keepAt(need []int, kept []*Candidate) []int {
	if !s.resumes() {
		return nil
	}
	at := slices.Clone(need)
	order := s.byFilter(kept)
	for _, c := range order[:min(len(order), s.cfg.Candidates)] {
		at = append(at, c.Drop)
	}
	for i := range at {
		at[i] = max(at[i]-2, 0)
	}
	return spread(at, s.streamsFit())
}

// spread returns n of blocks (sorted, without repeats and blocks ≤ 0),
// evenly spaced among them, the first always: the stream entering it
// serves any of them, the others save more for deeper ones.
func spread(blocks []int, n int) []int {
	b := slices.Clone(blocks)
	slices.Sort(b)
	b = slices.DeleteFunc(slices.Compact(b), func(x int) bool { return x <= 0 })
	switch {
	case n < 1:
		return nil
	case len(b) <= n:
		return b
	case n == 1:
		return b[:1]
	}
	out := make([]int, n)
	for i := range out {
		out[i] = b[i*(len(b)-1)/(n-1)]
	}
	return out
}

// keepStreams returns the streams to keep after a pass: those it captured
// (fresh) and the stored ones still valid (those of earlier passes lying
// before where it started), at most streamsFit of them, spread over their
// blocks.
func (s *Searcher) keepStreams(fresh []*passStream) []*passStream {
	by := map[int]*passStream{}
	for _, st := range append(slices.Clone(s.streams), fresh...) {
		by[st.block] = st
	}
	var out []*passStream
	for _, b := range spread(slices.Collect(maps.Keys(by)), s.streamsFit()) {
		out = append(out, by[b])
	}
	return out
}

// streamsFit returns how many streams of the alignment chunks
// Config.StreamBytes holds (at least one).
func (s *Searcher) streamsFit() int {
	per := int64(len(s.align)) * int64(len(s.align[0])) * int64(s.d) * 4
	return max(1, int(s.cfg.StreamBytes/max(per, 1)))
}

// resumeFrom returns the current block from which a pass fitting drops
// can start on a stored stream, the deepest one that enters a block at or
// before the shallowest survivor, and that stream (0, nil: from the
// tokens).
func (s *Searcher) resumeFrom(drops []int) (int, [][]float32) {
	if len(s.streams) == 0 || len(drops) == 0 || !s.resumes() {
		return 0, nil
	}
	first := slices.Min(drops) - 1 // the shallowest survivor
	from, rows := 0, [][]float32(nil)
	for _, st := range s.streams {
		for c := max(from+1, 1); c <= first; c++ {
			if s.e.Phys(c) == st.block {
				from, rows = c, st.rows
			}
		}
	}
	return from, rows
}

// invalidate drops the stored streams entering blocks after loaded block
// changed, the first one a commit changed.
func (s *Searcher) invalidate(changed int) {
	s.streams = slices.DeleteFunc(s.streams, func(st *passStream) bool { return changed < st.block })
}
