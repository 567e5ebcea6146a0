package pipeline

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/kld"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/progress"
)

// The race's rule (Config.Race): a candidate stops once
//
//	m − raceZ · se > −raceTolerance
//
// with m the mean over its k ≥ raceMinChunks scored chunks of its loss per
// token minus the best's on the same chunk, and se = sd/√k. With a
// tolerance of 0 that is "significantly worse"; the tolerance also stops
// candidates that are, with the same confidence, no better than the best
// by more than 0.002 nats per token (0.2 % of perplexity): an indifference zone,
// as in Bechhofer's ranking and selection, so that interchangeable
// candidates cost raceMinChunks chunks each instead of all of them.
const (
	raceZ         = 3
	raceMinChunks = 6
	raceTolerance = 0.002
	// raceKeep is how many candidates the first stage of a round sends on
	// to the remaining chunks (Searcher.round).
	raceKeep = 3
)

// heldScore is a model's loss on each held-back chunk scored so far.
type heldScore struct {
	sum []float64        // Σ next-token loss per chunk
	n   []int            // tokens per chunk
	acc *kld.Accumulator // when set, the comparison with IN (Config.Quality)
}

// mean returns the mean loss per token over the chunks scored.
func (h *heldScore) mean() float64 {
	var s float64
	var n int
	for i, v := range h.sum {
		s, n = s+v, n+h.n[i]
	}
	return s / float64(n)
}

// cannotWin reports whether h, scored on its first k chunks, is out of the
// race against best (scored on at least as many): its mean excess loss per
// token over best on those chunks, paired by chunk, is more than raceZ
// standard errors above −tol (tol = 0: it is significantly worse; see
// raceTolerance).
func (h *heldScore) cannotWin(best *heldScore, tol float64) bool {
	k := len(h.sum)
	if k < raceMinChunks || k > len(best.sum) {
		return false
	}
	var m, m2 float64
	for i := range k {
		dlt := h.sum[i]/float64(h.n[i]) - best.sum[i]/float64(best.n[i])
		m += dlt
		m2 += dlt * dlt
	}
	m /= float64(k)
	v := (m2/float64(k) - m*m) * float64(k) / float64(k-1)
	return m+tol > raceZ*math.Sqrt(max(v, 0)/float64(k))
}

// errLost stops the held-back decode of a candidate that lost the race.
var errLost = errors.New("lost the race")

// round scores the final candidates on the held-back text and returns the
// best. With the race (Config.Race, not ScoreAll) and more than raceKeep
// candidates it runs in two stages, as in successive halving: every
// candidate is scored on the first raceMinChunks chunks; those out of the
// race against the leader there (heldScore.cannotWin) stop, and at most
// raceKeep of the rest, best first, go on to the remaining chunks, raced
// against the best fully scored one. Otherwise each is scored in the
// filter's order, raced against the best so far.
func (s *Searcher) round(step int, final []*Candidate) (*Candidate, error) {
	n := len(s.held)
	race := s.cfg.Race && !s.cfg.ScoreAll
	scores := make([]*heldScore, len(final))
	// The last round compares its candidates with IN (Config.Quality);
	// at step 1, IN's distributions of a chunk are kept by the stage's
	// capture before any candidate scores it.
	compare := step == s.clock.last && s.quality.on
	for i := range scores {
		scores[i] = &heldScore{}
		if compare {
			scores[i].acc = &kld.Accumulator{}
		}
	}
	// score applies c, scores it up to chunk upTo (racing against best)
	// and restores the model.
	score := func(i, upTo int, best *heldScore, in *heldInputs) (bool, error) {
		if err := s.apply(final[i]); err != nil {
			return false, err
		}
		lost, err := s.heldMore(scores[i], upTo, best, in)
		if rerr := s.e.Restore(); err == nil {
			err = rerr
		}
		// The edit's transient copies (the tensor in float32, its bytes,
		// the committed bytes read back) go back to the system now, not
		// at the next GC cycle: they would stack up to the peak memory.
		freeMemory()
		return lost, err
	}
	stop := func(i int) {
		c, m := final[i], scores[i].mean()
		c.RaceChunks, c.Partial, c.align = len(scores[i].sum), &m, nil
	}
	order := make([]int, len(final))
	for i := range order {
		order[i] = i
	}
	twoStage := race && len(final) > raceKeep && n > raceMinChunks
	total := len(final)
	if twoStage {
		total = len(final) + raceKeep
	}
	bar := progress.New(fmt.Sprintf("step %d: score candidates", step+1), total, "rounds")
	defer bar.Done()
	// The round's progress for the ETA, in chunks scored of those planned
	// (all of them if the race stops nobody).
	planned := len(final) * n
	if twoStage {
		planned = len(final)*raceMinChunks + min(raceKeep, len(final))*(n-raceMinChunks)
	}
	frac := func() float64 {
		k := 0
		for _, h := range scores {
			k += len(h.sum)
		}
		return min(float64(k)/float64(planned), 1)
	}
	s.clock.phaseStart = time.Now()
	defer func() { s.clock.round = time.Since(s.clock.phaseStart) }()
	// inputs captures, for the chunks of a stage, the stream entering the
	// first block each of its candidates changes.
	inputs := func(idx []int, from, upTo int) (*heldInputs, error) {
		var starts []int
		for _, i := range idx {
			starts = append(starts, s.startOf(final[i]))
		}
		return s.captureHeld(starts, from, upTo, step == 0 && s.quality.on)
	}
	done := 0
	if twoStage {
		in, err := inputs(order, 0, raceMinChunks)
		if err != nil {
			return nil, err
		}
		for i := range final {
			if _, err := score(i, raceMinChunks, nil, in); err != nil {
				return nil, err
			}
			done++
			bar.Set(done, fmt.Sprintf("first %d chunks: drop blk %d, loss %.4f%s", raceMinChunks, final[i].Drop, scores[i].mean(), s.eta(false, frac())))
			// Only the best raceKeep so far can go on: the others'
			// alignments (d² each) are dropped at once.
			for k := range i + 1 {
				if rankAmong(scores[:i+1], k) >= raceKeep {
					final[k].align = nil
				}
			}
		}
		sort.SliceStable(order, func(a, b int) bool { return scores[order[a]].mean() < scores[order[b]].mean() })
		lead := scores[order[0]]
		keep := []int{order[0]} // not order[:1]: appending would write into order while it is read
		for _, i := range order[1:] {
			if len(keep) < raceKeep && !scores[i].cannotWin(lead, raceTolerance) {
				keep = append(keep, i)
			} else {
				stop(i)
			}
		}
		order = keep
		in = nil // (memory)
	}
	from := 0
	if twoStage {
		from = raceMinChunks
	}
	in, err := inputs(order, from, n)
	if err != nil {
		return nil, err
	}
	var best *Candidate
	var bestScore *heldScore
	for _, i := range order {
		c := final[i]
		var against *heldScore
		if race {
			against = bestScore
		}
		lost, err := score(i, n, against, in)
		if err != nil {
			return nil, err
		}
		done++
		if lost {
			stop(i)
		} else if c.HeldNLL = scores[i].mean(); best == nil || c.HeldNLL < best.HeldNLL {
			if best != nil {
				best.align = nil
			}
			best, bestScore = c, scores[i]
		}
		if c != best {
			c.align = nil
		}
		bar.Set(done, fmt.Sprintf("best: drop blk %d, loss %.4f%s", best.Drop, best.HeldNLL, s.eta(false, frac())))
	}
	if compare && best != nil {
		s.keepQuality(bestScore)
	}
	return best, nil
}

// rankAmong returns k's place (0: best) among scores by mean loss, ties
// in index order, as the stable sort of Searcher.round ranks them.
func rankAmong(scores []*heldScore, k int) int {
	r := 0
	for j, h := range scores {
		if m, mk := h.mean(), scores[k].mean(); m < mk || (m == mk && j < k) {
			r++
		}
	}
	return r
}
