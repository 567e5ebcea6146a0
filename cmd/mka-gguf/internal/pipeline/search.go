package pipeline

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/progress"
	"github.com/mka-gguf/mka-gguf/merge"
)

// Search removes n blocks, one per step (a run of the architecture's period
// per step where the graph derives a pattern from the block index, so that
// n must be a multiple of it): an alignment pass over the model
// as merged so far gives every candidate's closed-form fit and signals, the
// filter keeps the Candidates best (by the aligned residual relative to the
// residual stream, ‖X T − (H − F)‖² / ‖H‖², or by the unaligned one
// without alignment), each is applied in memory and scored by
// held-back loss, and the best is committed.
//
// The alignment target is the output of the removed block in the model as
// merged so far (not in the original model): each step makes the merged
// model reproduce itself one block shorter, and needs only the one loaded
// model.
func (s *Searcher) Search(n int) (*Result, error) {
	if n%s.run != 0 {
		return nil, fmt.Errorf("pipeline: %d blocks cannot be removed in runs of %d", n, s.run)
	}
	res := &Result{}
	var steps []merge.Step
	n /= s.run
	s.clock.last = n - 1
	bar := progress.New("merge search", n, "steps")
	defer bar.Done()
	for step := range n {
		if s.e.Blocks() < s.run+1 {
			return nil, fmt.Errorf("pipeline: cannot remove %d blocks", n*s.run)
		}
		s.clock.step = step
		rep, cand, err := s.step(step)
		if err != nil {
			return nil, err
		}
		for range s.run {
			steps = append(steps, merge.Step{Kind: merge.StepDrop, Blocks: [2]int{cand.Drop, cand.Drop}})
		}
		res.Steps = append(res.Steps, rep)
		bar.Set(step+1, fmt.Sprintf("removed %s, held-back loss %.4f nats/token", cand.blocksName(), cand.HeldNLL))
	}
	res.Quality = s.quality.sum
	res, err := s.finish(steps, res)
	if err != nil || !s.cfg.Heal {
		return res, err
	}
	return res, s.Heal(res)
}

// step runs one step of Search: the candidates' fits, then the round.
func (s *Searcher) step(step int) (StepReport, *Candidate, error) {
	t0 := time.Now()
	pass0 := s.work.passBlocks
	cands, prefilled, err := s.fit(step)
	if err != nil {
		return StepReport{}, nil, err
	}
	order := s.byFilter(cands)
	alignSec := time.Since(t0).Seconds()
	if !prefilled {
		s.clock.pass = time.Since(t0) // the pass and the fits (eta)
	}

	t1 := time.Now()
	blocks0, logits0 := s.work.heldBlocks, s.work.heldLogits
	passBlocks := s.work.passBlocks - pass0
	final := order[:min(len(order), s.cfg.Candidates)]
	if s.cfg.ScoreAll {
		final = order
	}
	if len(s.held) == 0 {
		final = order[:1] // no held-back text: the filter decides
	}
	// Every fit's alignment stays until the commit says which stay exact
	// (the round drops the losers' own references as it goes).
	fits := map[*Candidate]*merge.Alignment{}
	for _, c := range cands {
		fits[c] = c.align
	}
	for _, c := range order[len(final):] {
		c.align = nil
	}
	s.stats.release()
	best := final[0]
	if len(s.held) > 0 {
		if best, err = s.round(step, final); err != nil {
			return StepReport{}, nil, err
		}
	}
	best.Chosen = true
	if err := s.commit(best); err != nil {
		return StepReport{}, nil, err
	}
	s.keepExact(cands, fits, best)
	rep := StepReport{Step: step + 1, Drop: best.Drop, Run: best.Run, Survivor: best.Drop - 1, Residual: best.Residual, Unaligned: best.Unaligned,
		HeldNLL: best.HeldNLL, AlignSeconds: alignSec, ScoreSeconds: time.Since(t1).Seconds(), Prefilled: prefilled,
		HeldBlocks: s.work.heldBlocks - blocks0, HeldLogits: s.work.heldLogits - logits0, PassBlocks: passBlocks}
	if s.cfg.Align {
		rep.Rho, rep.Tokens = best.align.RhoRel, best.align.Tokens
	}
	for _, c := range cands {
		cc := *c
		cc.align = nil // the report keeps the numbers, not every candidate's d×d matrix
		if !math.IsNaN(c.HeldNLL) {
			cc.Held = &c.HeldNLL
		}
		rep.Candidates = append(rep.Candidates, cc)
	}
	if s.cfg.ScoreAll {
		rep.FilterAgrees = agreement(cands)
	}
	progress.Printf("step %d: remove %s (residual %.4f aligned, %.4f without), held-back loss %.4f nats/token (%d of %d candidates scored)\n",
		step+1, best.blocksName(), best.Residual, best.Unaligned, best.HeldNLL, len(final), len(cands))
	return rep, best, nil
}

// fit returns the step's candidates, each with its alignment solved from
// the step's alignment pass (the calibration pass's for step 1 when it was
// prefilled, which it reports) and its signals.
func (s *Searcher) fit(step int) ([]*Candidate, bool, error) {
	var (
		drops     []int
		cands     []*Candidate
		stats     map[int]*merge.AlignStats
		sig       map[int][2]float64
		err       error
		prefilled bool
	)
	if pf := s.cfg.Prefill; step == 0 && pf != nil && pf.done() {
		prefilled = true
		// The calibration pass already was this step's alignment pass.
		drops, stats, sig = pf.result()
		s.stats.adopt(pf)
		if s.resumes() {
			s.streams = pf.streams()
		}
	} else {
		var reused []*Candidate
		drops, reused = s.reuse(s.candidates(s.bi))
		cands = reused
		if len(drops) > 0 {
			if stats, sig, err = s.passStats(drops, s.run, s.keepAt(drops, reused)); err != nil {
				return nil, false, err
			}
		}
	}
	s.cfg.Prefill.Close() // what this search did not take over
	s.cfg.Prefill = nil
	// Blocks the pass did not run (it started later or stopped earlier)
	// keep their earlier signals when it resumed, 0 otherwise.
	bi := make([]float64, s.e.Blocks())
	if s.passFrom > 0 && len(s.bi) == len(bi) {
		copy(bi[:s.passFrom], s.bi)
	}
	s.bi = bi
	for j, v := range sig {
		s.bi[j] = v[0]
	}
	// Each candidate's statistics are dropped once solved (its alignment,
	// d² float32, is half their size); the pool, the products' scratch and
	// buffers go back to the system before the round's weight edits, so
	// that the peak memory is that of one phase, not both.
	s.stats.release() // the pass's products and their buffers, before the solves'
	for _, j := range drops {
		a, err := s.solve(stats[j])
		if err != nil {
			return nil, false, fmt.Errorf("step %d, block %d: %w", step+1, j, err)
		}
		delete(stats, j)
		c := &Candidate{Drop: j, Run: runField(s.run), Residual: a.Residual, Unaligned: a.Unaligned, Stream: a.Stream, StreamUnaligned: a.StreamUnaligned,
			BI: sig[j][0], Angular: sig[j][1], HeldNLL: math.NaN(), align: a}
		if s.cfg.Similarity != nil {
			c.NPIB = s.cfg.Similarity(s.e.Phys(j-1), s.e.Phys(j))
		}
		cands = append(cands, c)
	}
	slices.SortFunc(cands, func(a, b *Candidate) int { return a.Drop - b.Drop })
	return cands, prefilled, nil
}

// solve solves an alignment: diagonal or full as the architecture folds
// it (Searcher.diag).
func (s *Searcher) solve(st *merge.AlignStats) (*merge.Alignment, error) {
	if s.diag {
		return st.SolveDiagonal(s.cfg.Rho)
	}
	return st.Solve(s.cfg.Rho)
}

// runField is Candidate.Run for runs of n blocks: 0 for one.
func runField(n int) int {
	if n > 1 {
		return n
	}
	return 0
}

// apply makes candidate c tentatively: its blocks identities, and with
// alignment the block before them aligned.
func (s *Searcher) apply(c *Candidate) error {
	for k := range c.blocks() {
		if err := s.e.Drop(c.Drop + k); err != nil {
			return err
		}
	}
	if s.cfg.Align && c.align != nil {
		return s.e.Align(c.Drop-1, c.align)
	}
	return nil
}

// commit makes candidate c permanent.
func (s *Searcher) commit(c *Candidate) error {
	s.invalidate(s.e.Phys(max(c.Drop-1, 0)))
	if err := s.apply(c); err != nil {
		return err
	}
	if s.cfg.Align && c.align != nil {
		prev := s.alns[c.Drop-1]
		if prev == nil {
			prev = merge.Identity(s.d)
		}
		s.alns[c.Drop-1] = prev.Then(c.align)
	}
	n := c.blocks()
	s.e.Commit(c.Drop, n)
	freeMemory() // the round's transient weight copies (peak memory)
	s.alns = append(s.alns[:c.Drop:c.Drop], s.alns[c.Drop+n:]...)
	if c.Drop+n <= len(s.bi) {
		s.bi = append(s.bi[:c.Drop:c.Drop], s.bi[c.Drop+n:]...)
	}
	return nil
}

// maxCandidates returns how many candidates one pass gives statistics:
// as many as Config.MaxStatsBytes holds (merge.AlignStatsBytes each), at
// least Config.Candidates.
func (s *Searcher) maxCandidates() int {
	return max(int(s.cfg.MaxStatsBytes/merge.AlignStatsBytes(s.d)), s.cfg.Candidates, 1)
}

// candidates returns the candidates considered at this step: every run of
// Searcher.run current blocks but those with block 0, the ones with the
// lowest BI first (bi: per current block, from the last pass) when the
// statistics would not fit MaxStatsBytes.
func (s *Searcher) candidates(bi []float64) []int {
	if len(bi) != s.e.Blocks() {
		bi = make([]float64, s.e.Blocks())
	}
	return lowestBI(bi, s.maxCandidates(), s.run)
}

// agreement says, for each cheap signal, whether its first choice is the
// held-back loss's first choice.
func agreement(cands []*Candidate) map[string]bool {
	argmin := func(f func(c *Candidate) float64) int {
		best := 0
		for i, c := range cands {
			if f(c) < f(cands[best]) {
				best = i
			}
		}
		return best
	}
	held := argmin(func(c *Candidate) float64 { return c.HeldNLL })
	return map[string]bool{
		"residual":                  argmin(func(c *Candidate) float64 { return c.Residual }) == held,
		"residual_unaligned":        argmin(func(c *Candidate) float64 { return c.Unaligned }) == held,
		"stream_residual":           argmin(func(c *Candidate) float64 { return c.Stream }) == held,
		"stream_residual_unaligned": argmin(func(c *Candidate) float64 { return c.StreamUnaligned }) == held,
		"bi":                        argmin(func(c *Candidate) float64 { return c.BI }) == held,
		"angular":                   argmin(func(c *Candidate) float64 { return c.Angular }) == held,
		"npib":                      argmin(func(c *Candidate) float64 { return -c.NPIB }) == held,
	}
}

// Apply removes the blocks of a plan made of drops (the pruning baselines),
// in order, aligning the block before each one when Config.Align is set
// (block 0 is removed without alignment). Where the architecture removes
// blocks in runs (Searcher.run > 1), consecutive drops of the same current
// block are one run, aligned once to reproduce its last block's output.
// No held-back scoring.
func (s *Searcher) Apply(p *merge.Plan) (*Result, error) {
	res := &Result{}
	for i := 0; i < len(p.Steps); {
		st := p.Steps[i]
		if st.Kind != merge.StepDrop {
			return nil, fmt.Errorf("pipeline: step %d is a %s; alignment of fusions with interior λ needs --align none", i+1, st.Kind)
		}
		t0 := time.Now()
		j, n := st.Blocks[0], 1
		for s.run > 1 && i+n < len(p.Steps) && p.Steps[i+n].Kind == merge.StepDrop && p.Steps[i+n].Blocks[0] == j {
			n++
		}
		c := &Candidate{Drop: j, Run: runField(n), HeldNLL: math.NaN()}
		rep := StepReport{Step: len(res.Steps) + 1, Drop: j, Run: c.Run, Survivor: j - 1}
		i += n
		if s.cfg.Align && j >= 1 {
			stats, _, err := s.passStats([]int{j}, n, nil)
			if err != nil {
				return nil, err
			}
			a, err := s.solve(stats[j])
			if err != nil {
				return nil, fmt.Errorf("step %d, block %d: %w", i, j, err)
			}
			c.align, c.Residual, c.Unaligned = a, a.Residual, a.Unaligned
			rep.Residual, rep.Unaligned, rep.Rho, rep.Tokens = a.Residual, a.Unaligned, a.RhoRel, a.Tokens
		}
		if err := s.commit(c); err != nil {
			return nil, err
		}
		rep.AlignSeconds = time.Since(t0).Seconds()
		res.Steps = append(res.Steps, rep)
		if s.cfg.Align && j >= 1 {
			progress.Printf("step %d: remove %s, align blk %d: residual %.4f (%.4f without)\n", rep.Step, c.blocksName(), j-1, rep.Residual, rep.Unaligned)
		}
	}
	return s.finish(p.Steps, res)
}

// finish builds the plan and the output blocks' alignments.
func (s *Searcher) finish(steps []merge.Step, res *Result) (*Result, error) {
	p, err := merge.NewPlan("mka", s.e.m.NLayer(), steps)
	if err != nil {
		return nil, err
	}
	res.Plan = p
	res.Align = map[int]*merge.Alignment{}
	for o, a := range s.alns {
		if a != nil {
			res.Align[o] = a
		}
	}
	return res, nil
}
