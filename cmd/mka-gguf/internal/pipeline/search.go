package pipeline

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/ppl"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/progress"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/runner"
	"github.com/mka-gguf/mka-gguf/merge"
)

// Config configures a search or the application of a fixed plan.
type Config struct {
	Context     context.Context
	Threads     int
	BatchTokens int
	// Align folds the least-squares alignment into the block before each
	// removed one (false: plain removal, scored the same way).
	Align bool
	// Rho is the relative ridge of the alignment (merge.AlignStats.Solve).
	Rho float64
	// FuseLambdas, when set, are the interior weights λ tried for the best
	// candidate of each step: its survivor and the removed block are fused,
	// θ = λ θ_survivor + (1 − λ) θ_removed, aligned like a drop and scored
	// on the held-back text (blocks that already carry an alignment are not
	// fused). Suffixes must then name a block's tensors.
	FuseLambdas []float64
	Suffixes    []string
	// RhoGrid, when set, makes each step re-solve the chosen candidate's
	// alignment with every ridge in it and keep the one with the lowest
	// held-back loss (Rho included).
	RhoGrid []float64
	// Candidates is how many of the filter's best candidates are scored on
	// the held-back text at each step (at least 1).
	Candidates int
	// ScoreAll scores every candidate on the held-back text (to measure the
	// filter's agreement with the held-back loss).
	ScoreAll bool
	// MaxStatsBytes bounds the memory of the alignment statistics of one
	// pass (3·d²·8 bytes per candidate); candidates beyond it are the
	// ones with the lowest Block Influence first. 0: 1 GiB.
	MaxStatsBytes int64
	// Original, when set, is the unmodified model (loaded read-only): the
	// alignment target H is then its output at the removed block's depth
	// (l_out of the same loaded block), not the merged-so-far model's, so
	// that each step also corrects the error of the steps before it. It
	// costs one more decode of every alignment batch.
	Original *cgo.Model
	// Similarity, when set, is the initial NPIB similarity between loaded
	// blocks, recorded for each candidate.
	Similarity func(a, b int) float64
}

// Candidate is one way to remove a block at one step, and what the cheap
// signals and (for the best few) the held-back loss said about it.
type Candidate struct {
	// Drop is the current block removed; the block before it (Drop−1)
	// survives and carries the alignment.
	Drop int `json:"drop"`
	// Residual is the alignment's in-sample relative residual
	// ‖X T − (H − F)‖² / ‖H − F‖² (the filter's score with alignment).
	Residual float64 `json:"residual"`
	// Unaligned is the same without alignment (T = I).
	Unaligned float64 `json:"residual_unaligned"`
	// Stream and StreamUnaligned are the same errors relative to the
	// residual stream, ‖X T − (H − F)‖² / ‖H‖²: the filter's score with
	// and without alignment.
	Stream          float64 `json:"stream_residual"`
	StreamUnaligned float64 `json:"stream_residual_unaligned"`
	// BI is 1 − mean cos(input, output) of the removed block in the model
	// as merged so far; Angular is mean arccos(cos)/π.
	BI      float64 `json:"bi"`
	Angular float64 `json:"angular"`
	// NPIB is the initial similarity of the two loaded blocks (0 if
	// unknown).
	NPIB float64 `json:"npib"`
	// HeldNLL is the mean next-token loss on held-back text (NaN when the
	// filter did not send it to the final round); Held is the same for
	// JSON, absent when not scored.
	HeldNLL float64  `json:"-"`
	Held    *float64 `json:"heldback_nll,omitempty"`
	Chosen  bool     `json:"chosen"`
	// Lambda is the survivor's weight: 1 for a drop, in (0, 1) for a
	// fusion of the survivor with the removed block.
	Lambda float64 `json:"lambda"`

	align *merge.Alignment
}

// StepReport records one step of the search.
type StepReport struct {
	Step       int         `json:"step"` // 1-based
	Drop       int         `json:"drop"`
	Survivor   int         `json:"survivor"` // -1 when block 0 was removed
	Lambda     float64     `json:"lambda"`   // weight of the survivor (1: its own weights)
	Residual   float64     `json:"residual"`
	Unaligned  float64     `json:"residual_unaligned"`
	Rho        float64     `json:"rho"` // relative: ρ_rel of merge.AlignStats.Solve
	Tokens     int         `json:"align_tokens"`
	HeldNLL    float64     `json:"heldback_nll"`
	Candidates []Candidate `json:"candidates,omitempty"`
	// FilterAgrees says whether each cheap signal's first choice equals the
	// held-back loss's (meaningful with ScoreAll).
	FilterAgrees map[string]bool `json:"filter_agrees,omitempty"`
	AlignSeconds float64         `json:"align_seconds"`
	ScoreSeconds float64         `json:"score_seconds"`
}

// Result is the outcome: the plan in current-block steps (drops), the
// alignment of each output block that has one, and the report.
type Result struct {
	Plan  *merge.Plan
	Align map[int]*merge.Alignment
	Steps []StepReport
}

// Searcher holds one loaded, editable model and its two contexts.
type Searcher struct {
	e     *Editor
	cfg   Config
	align [][]int32 // chunks for the alignment passes
	held  [][]int32 // held-back chunks for the final round
	d     int
	skip  int // leading rows of each chunk left out of the fit (BOS)

	cap   *runner.Session // capture hook, stops early
	orig  *runner.Session // capture hook on Config.Original
	score *runner.Session // logits
	alns  []*merge.Alignment
}

// NewSearcher prepares a search on e's model.
func NewSearcher(e *Editor, align, held [][]int32, cfg Config) (*Searcher, error) {
	if len(align) == 0 {
		return nil, fmt.Errorf("pipeline: no alignment chunks")
	}
	s := &Searcher{e: e, cfg: cfg, align: align, held: held, d: e.m.NEmbd()}
	if e.m.AddBOS() {
		s.skip = 1
	}
	if s.cfg.Candidates < 1 {
		s.cfg.Candidates = 1
	}
	if s.cfg.MaxStatsBytes <= 0 {
		s.cfg.MaxStatsBytes = 1 << 30
	}
	var err error
	if s.cap, err = runner.NewSession(e.m, runner.SessionOptions{T: len(align[0]), Threads: cfg.Threads, BatchTokens: cfg.BatchTokens, Capture: true}); err != nil {
		return nil, err
	}
	if cfg.Original != nil {
		if s.orig, err = runner.NewSession(cfg.Original, runner.SessionOptions{T: len(align[0]), Threads: cfg.Threads, BatchTokens: cfg.BatchTokens, Capture: true}); err != nil {
			s.cap.Close()
			return nil, err
		}
	}
	if len(held) > 0 {
		if s.score, err = runner.NewSession(e.m, runner.SessionOptions{T: len(held[0]), Threads: cfg.Threads, BatchTokens: cfg.BatchTokens}); err != nil {
			s.cap.Close()
			return nil, err
		}
	}
	for range e.Blocks() {
		s.alns = append(s.alns, nil)
	}
	return s, nil
}

// Close frees the contexts.
func (s *Searcher) Close() {
	s.cap.Close()
	s.orig.Close()
	s.score.Close()
}

// passStats runs one alignment pass over the model as it is now and
// returns, for each candidate drop j (current blocks, j ≥ 1), the
// statistics of aligning block j−1 to reproduce block j's output, with the
// removed block's BI and angular distance.
func (s *Searcher) passStats(drops []int) (map[int]*merge.AlignStats, map[int][2]float64, error) {
	d, e := s.d, s.e
	stats := map[int]*merge.AlignStats{}
	cos := map[int]*[3]float64{} // Σcos, Σarccos/π, n
	bySurvivorPhys := map[int]int{}
	byTargetPhys := map[int]int{}
	deepest := 0
	for _, j := range drops {
		stats[j] = merge.NewAlignStats(d)
		cos[j] = &[3]float64{}
		bySurvivorPhys[e.Phys(j-1)] = j
		byTargetPhys[e.Phys(j)] = j
		deepest = max(deepest, e.Phys(j))
	}
	var (
		count   int
		t       = len(s.align[0])
		origH   = map[int][]float32{} // target phys → the original model's output rows
		fIn     = map[int][]float32{} // survivor phys → ffn_inp rows
		xOut    = map[int][]float32{} // survivor phys → FFN output rows
		lOut    = map[int][]float32{} // survivor phys → block output rows
		y       []float32
		hookErr error
	)
	keep := func(data, dst []float32) []float32 { return s.fitRows(data, dst, count, t) }
	capture := func(tn cgo.Tensor) bool {
		if tn.Layer < 0 || tn.Cols != d || tn.Rows != count*t {
			if tn.Layer >= 0 {
				hookErr = fmt.Errorf("capture: layer %d has %d×%d rows, want %d×%d", tn.Layer, tn.Rows, tn.Cols, count*t, d)
				return false
			}
			return true
		}
		p := tn.Layer
		if _, ok := bySurvivorPhys[p]; ok {
			switch tn.Kind {
			case cgo.FFNInput:
				fIn[p] = keep(tn.Data, fIn[p])
			case cgo.BlockOutput:
				if len(fIn[p]) == 0 {
					hookErr = fmt.Errorf("architecture graph does not name ffn_inp-%d: the alignment needs it (use --align none)", p)
					return false
				}
				lOut[p] = keep(tn.Data, lOut[p])
				x := slices.Grow(xOut[p][:0], len(lOut[p]))[:len(lOut[p])]
				for i, v := range lOut[p] {
					x[i] = v - fIn[p][i]
				}
				xOut[p] = x
			}
		}
		if j, ok := byTargetPhys[p]; ok && tn.Kind == cgo.BlockOutput {
			sp := e.Phys(j - 1)
			hc := keep(tn.Data, nil) // the merged model's output (signals)
			h := hc                  // the target
			if s.orig != nil {
				h = origH[p]
			}
			f, prev := fIn[sp], lOut[sp]
			y = slices.Grow(y[:0], len(h))[:len(h)]
			for i := range h {
				y[i] = h[i] - f[i]
			}
			rows := len(h) / d
			stats[j].AddTargetNorm(h)
			if err := stats[j].Add(xOut[sp], y, rows); err != nil {
				hookErr = err
				return false
			}
			acc := cos[j]
			for r := range rows {
				a, b := prev[r*d:(r+1)*d], hc[r*d:(r+1)*d]
				var ab, aa, bb float64
				for k := range a {
					ab += float64(a[k]) * float64(b[k])
					aa += float64(a[k]) * float64(a[k])
					bb += float64(b[k]) * float64(b[k])
				}
				c := 0.0
				if aa > 0 && bb > 0 {
					c = max(-1, min(1, ab/math.Sqrt(aa*bb)))
				}
				acc[0] += c
				acc[1] += math.Acos(c) / math.Pi
				acc[2]++
			}
		}
		return true
	}
	before := func(_, n int) { count = n }
	var err error
	if s.orig == nil {
		if err := s.cap.SetCapture(capture, deepest); err != nil {
			return nil, nil, err
		}
		err = s.cap.Run(s.cfg.Context, s.align, before, nil)
	} else {
		// Per batch: the original model's outputs at the target blocks,
		// then the merged model's pass.
		if err := s.orig.SetCapture(func(tn cgo.Tensor) bool {
			if _, ok := byTargetPhys[tn.Layer]; ok && tn.Kind == cgo.BlockOutput && tn.Cols == d {
				origH[tn.Layer] = keep(tn.Data, origH[tn.Layer])
			}
			return true
		}, deepest); err != nil {
			return nil, nil, err
		}
		if err := s.cap.SetCapture(capture, deepest); err != nil {
			return nil, nil, err
		}
		k := s.cap.SeqsPerDecode()
		for first := 0; first < len(s.align) && err == nil; first += k {
			batch := s.align[first:min(len(s.align), first+k)]
			if err = s.orig.Run(s.cfg.Context, batch, before, nil); err == nil {
				err = s.cap.Run(s.cfg.Context, batch, before, nil)
			}
		}
		s.orig.SetCapture(nil, -1)
	}
	s.cap.SetCapture(nil, -1)
	if hookErr != nil {
		return nil, nil, hookErr
	}
	if err != nil {
		return nil, nil, err
	}
	sig := map[int][2]float64{}
	for j, c := range cos {
		if c[2] > 0 {
			sig[j] = [2]float64{1 - c[0]/c[2], c[1] / c[2]}
		}
	}
	return stats, sig, nil
}

// fitRows appends to dst[:0] the rows of a captured tensor of count chunks
// of t tokens that the alignment fits: all but each chunk's leading BOS
// row (an outlier in many models).
func (s *Searcher) fitRows(data, dst []float32, count, t int) []float32 {
	d := s.d
	dst = dst[:0]
	for c := range count {
		dst = append(dst, data[(c*t+s.skip)*d:(c+1)*t*d]...)
	}
	return dst
}

// heldNLL returns the mean next-token loss of the model as it is now on the
// held-back chunks.
func (s *Searcher) heldNLL() (float64, error) {
	var acc ppl.Accumulator
	err := s.score.Run(s.cfg.Context, s.held, nil, func(d *runner.Decoded) error {
		for i := range d.Count {
			ch := s.held[d.First+i]
			for k := 0; k+1 < len(ch); k++ {
				acc.Add(d.Logits(i, k), ch[k+1])
			}
		}
		return nil
	})
	return acc.Mean(), err
}

// apply makes candidate c tentatively: block c.Drop an identity, and with
// alignment the block before it aligned.
func (s *Searcher) apply(c *Candidate) error {
	var err error
	if c.Lambda < 1 {
		err = s.e.Fuse(c.Drop-1, c.Lambda, s.cfg.Suffixes)
	} else {
		err = s.e.Drop(c.Drop)
	}
	if err != nil {
		return err
	}
	if s.cfg.Align && c.align != nil {
		return s.e.Align(c.Drop-1, c.align)
	}
	return nil
}

// commit makes candidate c permanent.
func (s *Searcher) commit(c *Candidate) error {
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
	s.e.Commit(c.Drop)
	s.alns = append(s.alns[:c.Drop:c.Drop], s.alns[c.Drop+1:]...)
	return nil
}

// candidates returns the drops considered at this step: every current
// block but block 0, the ones with the lowest BI first when the
// statistics would not fit MaxStatsBytes.
func (s *Searcher) candidates(bi map[int]float64) []int {
	var drops []int
	for j := 1; j < s.e.Blocks(); j++ {
		drops = append(drops, j)
	}
	per := int64(3 * s.d * s.d * 8) // XᵀX, XᵀY in float64 and their float32 batch products
	limit := max(int(s.cfg.MaxStatsBytes/per), s.cfg.Candidates, 1)
	if len(drops) <= limit {
		return drops
	}
	sort.SliceStable(drops, func(a, b int) bool { return bi[drops[a]] < bi[drops[b]] })
	drops = drops[:limit]
	slices.Sort(drops)
	return drops
}

// Search removes n blocks, one per step: an alignment pass over the model
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
	res := &Result{}
	var steps []merge.Step
	bi := map[int]float64{}
	start := time.Now()
	bar := progress.New("merge search", n, "steps")
	defer bar.Done()
	for step := range n {
		if s.e.Blocks() < 2 {
			return nil, fmt.Errorf("pipeline: cannot remove %d blocks", n)
		}
		rep, cand, err := s.step(step, bi)
		if err != nil {
			return nil, err
		}
		st := merge.Step{Kind: merge.StepDrop, Blocks: [2]int{cand.Drop, cand.Drop}}
		if cand.Lambda < 1 {
			st = merge.Step{Kind: merge.StepFuse, Blocks: [2]int{cand.Drop - 1, cand.Drop}, Lambda: cand.Lambda}
		}
		steps = append(steps, st)
		res.Steps = append(res.Steps, rep)
		el := time.Since(start)
		eta := time.Duration(float64(el) / float64(step+1) * float64(n-step-1))
		bar.Set(step+1, fmt.Sprintf("removed blk %d, held-back loss %.4f, ETA %s", cand.Drop, cand.HeldNLL, eta.Round(time.Second)))
	}
	return s.finish(steps, res)
}

// step runs one step of Search.
func (s *Searcher) step(step int, bi map[int]float64) (StepReport, *Candidate, error) {
	t0 := time.Now()
	drops := s.candidates(bi)
	stats, sig, err := s.passStats(drops)
	if err != nil {
		return StepReport{}, nil, err
	}
	var cands []*Candidate
	for _, j := range drops {
		a, err := stats[j].Solve(s.cfg.Rho)
		if err != nil {
			return StepReport{}, nil, fmt.Errorf("step %d, block %d: %w", step+1, j, err)
		}
		c := &Candidate{Drop: j, Lambda: 1, Residual: a.Residual, Unaligned: a.Unaligned, Stream: a.Stream, StreamUnaligned: a.StreamUnaligned,
			BI: sig[j][0], Angular: sig[j][1], HeldNLL: math.NaN(), align: a}
		if s.cfg.Similarity != nil {
			c.NPIB = s.cfg.Similarity(s.e.Phys(j-1), s.e.Phys(j))
		}
		cands = append(cands, c)
	}
	clear(bi)
	for _, c := range cands {
		bi[c.Drop] = c.BI
	}
	filter := func(c *Candidate) float64 {
		if s.cfg.Align {
			return c.Stream
		}
		return c.StreamUnaligned
	}
	order := slices.Clone(cands)
	sort.SliceStable(order, func(a, b int) bool { return filter(order[a]) < filter(order[b]) })
	alignSec := time.Since(t0).Seconds()

	t1 := time.Now()
	final := order[:min(len(order), s.cfg.Candidates)]
	if s.cfg.ScoreAll {
		final = order
	}
	bar := progress.New(fmt.Sprintf("step %d: score candidates", step+1), len(final), "candidates")
	var best *Candidate
	for i, c := range final {
		if err := s.apply(c); err != nil {
			return StepReport{}, nil, err
		}
		nll, err := s.heldNLL()
		if rerr := s.e.Restore(); err == nil {
			err = rerr
		}
		if err != nil {
			bar.Done()
			return StepReport{}, nil, err
		}
		c.HeldNLL = nll
		if best == nil || nll < best.HeldNLL {
			best = c
		}
		bar.Set(i+1, fmt.Sprintf("best: drop blk %d, loss %.4f", best.Drop, best.HeldNLL))
	}
	bar.Done()
	if len(s.held) == 0 {
		best = final[0]
	}
	if len(s.cfg.FuseLambdas) > 0 && len(s.held) > 0 && s.alns[best.Drop-1] == nil && s.alns[best.Drop] == nil {
		for _, lam := range s.cfg.FuseLambdas {
			c, err := s.fusion(best.Drop, lam)
			if err != nil {
				return StepReport{}, nil, err
			}
			cands = append(cands, c)
			progress.Printf("  fuse blk %d + blk %d, λ=%.2f: held-back loss %.4f (residual %.4f)\n", best.Drop-1, best.Drop, lam, c.HeldNLL, c.Residual)
			if c.HeldNLL < best.HeldNLL {
				best = c
			}
		}
	}
	if s.cfg.Align && len(s.cfg.RhoGrid) > 0 && len(s.held) > 0 && best.Lambda == 1 {
		if err := s.tuneRho(best, stats[best.Drop]); err != nil {
			return StepReport{}, nil, err
		}
	}
	best.Chosen = true
	if err := s.commit(best); err != nil {
		return StepReport{}, nil, err
	}
	rep := StepReport{Step: step + 1, Drop: best.Drop, Survivor: best.Drop - 1, Lambda: best.Lambda, Residual: best.Residual, Unaligned: best.Unaligned,
		HeldNLL: best.HeldNLL, AlignSeconds: alignSec, ScoreSeconds: time.Since(t1).Seconds()}
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
	progress.Printf("step %d: remove blk %d (residual %.4f aligned, %.4f without), held-back loss %.4f (%d of %d candidates scored)\n",
		step+1, best.Drop, best.Residual, best.Unaligned, best.HeldNLL, len(final), len(cands))
	return rep, best, nil
}

// fusion returns the candidate that fuses current blocks j−1 and j with
// weight lam, aligned (when Config.Align) and scored on the held-back
// text. The fused block's alignment needs its own pass: per batch, the
// target H (block j's output) comes from a decode of the committed model,
// and F, X from a decode with the fusion applied.
func (s *Searcher) fusion(j int, lam float64) (*Candidate, error) {
	c := &Candidate{Drop: j, Lambda: lam, HeldNLL: math.NaN(), Residual: math.NaN(), Unaligned: math.NaN()}
	if s.cfg.Align {
		st, err := s.fusedStats(j, lam)
		if err != nil {
			return nil, err
		}
		if c.align, err = st.Solve(s.cfg.Rho); err != nil {
			return nil, err
		}
		c.Residual, c.Unaligned = c.align.Residual, c.align.Unaligned
		c.Stream, c.StreamUnaligned = c.align.Stream, c.align.StreamUnaligned
	}
	if err := s.apply(c); err != nil {
		return nil, err
	}
	nll, err := s.heldNLL()
	if rerr := s.e.Restore(); err == nil {
		err = rerr
	}
	c.HeldNLL = nll
	return c, err
}

// fusedStats accumulates the alignment of the fusion of blocks j−1 and j
// with weight lam to block j's output in the committed model.
func (s *Searcher) fusedStats(j int, lam float64) (*merge.AlignStats, error) {
	d, e := s.d, s.e
	pb, pj := e.Phys(j-1), e.Phys(j)
	st := merge.NewAlignStats(d)
	t := len(s.align[0])
	var count int
	var h, f, x, y []float32
	keep := func(data, dst []float32) []float32 { return s.fitRows(data, dst, count, t) }
	var hookErr error
	target := func(tn cgo.Tensor) bool {
		if tn.Layer == pj && tn.Kind == cgo.BlockOutput {
			h = keep(tn.Data, h)
		}
		return true
	}
	fused := func(tn cgo.Tensor) bool {
		if tn.Layer != pb {
			return true
		}
		switch tn.Kind {
		case cgo.FFNInput:
			f = keep(tn.Data, f)
		case cgo.BlockOutput:
			o := keep(tn.Data, nil)
			x = slices.Grow(x[:0], len(o))[:len(o)]
			y = slices.Grow(y[:0], len(o))[:len(o)]
			for i := range o {
				x[i] = o[i] - f[i]
				y[i] = h[i] - f[i]
			}
			st.AddTargetNorm(h)
			if err := st.Add(x, y, len(o)/d); err != nil {
				hookErr = err
				return false
			}
		}
		return true
	}
	before := func(_, n int) { count = n }
	k := s.cap.SeqsPerDecode()
	for first := 0; first < len(s.align); first += k {
		batch := s.align[first:min(len(s.align), first+k)]
		ts := s.cap
		if s.orig != nil {
			ts = s.orig
		}
		if err := ts.SetCapture(target, pj); err != nil {
			return nil, err
		}
		if err := ts.Run(s.cfg.Context, batch, before, nil); err != nil {
			return nil, err
		}
		ts.SetCapture(nil, -1)
		if err := e.Fuse(j-1, lam, s.cfg.Suffixes); err != nil {
			return nil, err
		}
		if err := s.cap.SetCapture(fused, pb); err != nil {
			return nil, err
		}
		err := s.cap.Run(s.cfg.Context, batch, before, nil)
		if rerr := e.Restore(); err == nil {
			err = rerr
		}
		if err == nil {
			err = hookErr
		}
		if err != nil {
			return nil, err
		}
	}
	s.cap.SetCapture(nil, -1)
	return st, nil
}

// tuneRho re-solves c's alignment with each ridge of RhoGrid, scores it on
// the held-back text and keeps the best in c.
func (s *Searcher) tuneRho(c *Candidate, st *merge.AlignStats) error {
	for _, rho := range s.cfg.RhoGrid {
		if rho == s.cfg.Rho {
			continue
		}
		a, err := st.Solve(rho)
		if err != nil {
			return err
		}
		trial := &Candidate{Drop: c.Drop, Lambda: 1, align: a}
		if err := s.apply(trial); err != nil {
			return err
		}
		nll, err := s.heldNLL()
		if rerr := s.e.Restore(); err == nil {
			err = rerr
		}
		if err != nil {
			return err
		}
		progress.Printf("  ridge %g: held-back loss %.4f (residual %.4f)\n", rho, nll, a.Residual)
		if nll < c.HeldNLL {
			c.HeldNLL, c.Residual, c.align = nll, a.Residual, a
		}
	}
	return nil
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
// (block 0 is removed without alignment). No held-back scoring.
func (s *Searcher) Apply(p *merge.Plan) (*Result, error) {
	res := &Result{}
	for i, st := range p.Steps {
		if st.Kind != merge.StepDrop {
			return nil, fmt.Errorf("pipeline: step %d is a %s; alignment of fusions with interior λ needs --align none", i+1, st.Kind)
		}
		t0 := time.Now()
		j := st.Blocks[0]
		c := &Candidate{Drop: j, HeldNLL: math.NaN()}
		rep := StepReport{Step: i + 1, Drop: j, Survivor: j - 1, Lambda: 1}
		if s.cfg.Align && j >= 1 {
			stats, _, err := s.passStats([]int{j})
			if err != nil {
				return nil, err
			}
			a, err := stats[j].Solve(s.cfg.Rho)
			if err != nil {
				return nil, fmt.Errorf("step %d, block %d: %w", i+1, j, err)
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
			progress.Printf("step %d: remove blk %d, align blk %d: residual %.4f (%.4f without)\n", i+1, j, j-1, rep.Residual, rep.Unaligned)
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
