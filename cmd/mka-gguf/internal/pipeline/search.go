package pipeline

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"slices"
	"sort"
	"time"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/kld"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/progress"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/runner"
	"github.com/mka-gguf/mka-gguf/merge"
)

// Config configures a search or the application of a fixed plan.
//
// The search decodes one chunk at a time whatever the calibration's batch:
// its context's logits and compute buffers are then half those of two.
type Config struct {
	Context context.Context
	Threads int
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
	// FusePermute also tries each fusion with the removed block's FFN
	// neurons and attention KV groups first reordered to match the
	// survivor's (merge.MatchBlocks, weight matching).
	FusePermute bool
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
	// InitialBI, when set, is each loaded block's Block Influence from the
	// calibration pass: it picks the first step's candidates when
	// MaxStatsBytes does not hold all of them.
	InitialBI []float64
	// Prefill, when set and complete, is the first step's alignment pass,
	// made during the calibration pass (NewPrefill); the alignment chunks
	// must be its AlignChunks.
	Prefill *Prefill
	// AlignAttn also tries, for each step's chosen drop, aligning the
	// survivor's attention output before refitting its FFN alignment
	// (refineAttn), kept when the held-back loss is lower.
	AlignAttn bool
	// Race stops scoring a candidate on the held-back text once it cannot
	// beat the best candidate by more than raceTolerance: when, after at
	// least raceMinChunks chunks, its mean excess loss over the best,
	// paired by chunk, is above −raceTolerance by more than raceZ standard
	// errors (heldScore.cannotWin). With more than raceKeep candidates the
	// round has two stages (Searcher.round). ScoreAll turns it off.
	Race bool
	// WholeDecodes scores every held-back candidate with decodes of the
	// whole model; by default a candidate's decodes start at the first
	// block it changes, on the stream captured entering it (the same
	// logits, fewer blocks run: Searcher.captureHeld).
	WholeDecodes bool
	// Quality makes the search compare the merged model with the loaded
	// model as it was before the search (IN) on the held-back chunks, as
	// kld.CompareReference does with QualityTopK tokens kept (0: all),
	// from decodes the rounds make anyway: IN's distributions from step
	// 1's held-back decodes, run to the logits, and the merged model's from
	// the last round's winner (Result.Quality). It is off with FuseLambdas,
	// RhoGrid or AlignAttn, whose last changes the round did not score.
	Quality     bool
	QualityTopK int
	// ChunkSeconds, when known, is the time one calibration chunk took to
	// decode through every block (no logits): the progress lines' ETA
	// predicts an alignment pass from it before one is measured.
	ChunkSeconds float64
}

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
	// RaceChunks is the number of held-back chunks scored before the
	// candidate lost the race (Config.Race; 0: scored in full), and
	// Partial its mean loss on them.
	RaceChunks int      `json:"race_chunks,omitempty"`
	Partial    *float64 `json:"heldback_nll_partial,omitempty"`
	Chosen     bool     `json:"chosen"`
	// Lambda is the survivor's weight: 1 for a drop, in (0, 1) for a
	// fusion of the survivor with the removed block.
	Lambda float64 `json:"lambda"`
	// AttnHeldNLL is the held-back loss with the attention output aligned
	// too (Config.AlignAttn, the chosen candidate only), and AttnResidual
	// the attention fit's residual when that won.
	AttnHeldNLL  *float64 `json:"heldback_nll_attn,omitempty"`
	AttnResidual *float64 `json:"attn_residual,omitempty"`
	// Permuted says the fusion reordered the removed block to match the
	// survivor first (Config.FusePermute).
	Permuted bool `json:"permuted,omitempty"`

	align *merge.Alignment
	perm  merge.BlockPerm  // of the removed block, for a permuted fusion
	attn  *merge.Alignment // of the attention output, when aligned too
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
	// Prefilled says the step's alignment statistics came from the
	// calibration pass (Prefill), not from a pass of its own.
	Prefilled bool `json:"prefilled,omitempty"`
	// HeldBlocks counts the blocks the step's held-back decodes ran, one
	// per block and chunk (a whole decode of a chunk runs every loaded
	// block; one resumed at block b runs the blocks from b on; a capture
	// of the stream entering the candidates' blocks runs up to the
	// deepest), and HeldLogits the chunks decoded with the output layer.
	HeldBlocks int `json:"heldback_blocks"`
	HeldLogits int `json:"heldback_logits"`
	// PassBlocks counts the blocks the step's alignment pass ran, one per
	// block and chunk (a pass stops after its deepest candidate).
	PassBlocks int `json:"pass_blocks"`
}

// Result is the outcome: the plan in current-block steps (drops), the
// alignment of each output block that has one (of its FFN output, and of
// its attention output with Config.AlignAttn), and the report.
type Result struct {
	Plan      *merge.Plan
	Align     map[int]*merge.Alignment
	AlignAttn map[int]*merge.Alignment
	// Permute maps a loaded (input) block to its reordering before the
	// fusion it is part of (merge.RewriteOptions.Permute).
	Permute map[int]merge.BlockPerm
	Steps   []StepReport
	// Quality is the merged model against the loaded one before the
	// search on the held-back chunks (Config.Quality; nil without it).
	Quality *kld.Summary
}

// Searcher holds one loaded, editable model and its two contexts.
type Searcher struct {
	e     *Editor
	cfg   Config
	align [][]int32 // chunks for the alignment passes
	held  [][]int32 // held-back chunks for the final round
	d     int
	skip  int // leading rows of each chunk left out of the fit (BOS)

	cap   *runner.Session         // capture hook, stops early
	orig  *runner.Session         // capture hook on Config.Original
	score *runner.Session         // logits
	perms map[int]merge.BlockPerm // per loaded block, of the permuted fusions committed
	alns  []*merge.Alignment      // per current block: its FFN alignment so far
	attn  []*merge.Alignment      // per current block: its attention-output alignment so far

	// resume: held-back candidates are scored from their first changed
	// block on (captureHeld, runner.Session.RunFrom).
	resume bool
	// heldBlocks, heldLogits: the held-back decodes' work so far
	// (StepReport.HeldBlocks, HeldLogits).
	heldBlocks, heldLogits int
	// passBlocks: the alignment passes' blocks run so far, one per block
	// and chunk (StepReport.PassBlocks).
	passBlocks int
	// quality (Config.Quality): ref holds IN's distributions per held-back
	// chunk (from step 1), lastStep is Search's last step, whose winner's
	// comparison is qualitySum.
	quality    bool
	ref        [][]kld.Dist
	lastStep   int
	qualitySum *kld.Summary
	// The search's clock (searchETA): the step under way, when its
	// current phase (alignment pass or held-back round) started, and how
	// long the last pass and round took (0: none yet).
	curStep             int
	phaseStart          time.Time
	passTime, roundTime time.Duration

	bi      []float64 // per current block, from the last pass
	pool    []*merge.AlignStats
	scratch *merge.AlignScratch
	gram    *cgo.Gram
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
	// One chunk per decode: the context's output and compute buffers
	// (logits of every token) are half those of two, at the same speed.
	one := len(align[0])
	var err error
	s.resume = !cfg.WholeDecodes && e.m.CanResume() == nil
	s.lastStep = -1 // (Search sets it)
	if s.quality = cfg.Quality && len(held) > 0 && len(cfg.FuseLambdas) == 0 && len(cfg.RhoGrid) == 0 && !cfg.AlignAttn; s.quality {
		s.ref = make([][]kld.Dist, len(held))
	}
	// With resumed decodes, every decode also leaves out the blocks the
	// search has made identities (committed or pending drops): the same
	// logits, fewer blocks run.
	var live func() []int
	if s.resume {
		live = e.Live
	}
	if s.cap, err = runner.NewSession(e.m, runner.SessionOptions{T: len(align[0]), Threads: cfg.Threads, BatchTokens: one, Capture: true, Resumable: s.resume, Layers: live}); err != nil {
		return nil, err
	}
	if cfg.Original != nil {
		if s.orig, err = runner.NewSession(cfg.Original, runner.SessionOptions{T: len(align[0]), Threads: cfg.Threads, BatchTokens: one, Capture: true}); err != nil {
			s.cap.Close()
			return nil, err
		}
	}
	switch {
	case len(held) > 0 && len(held[0]) == len(align[0]):
		s.score = s.cap // one context for both (memory)
	case len(held) > 0:
		if s.score, err = runner.NewSession(e.m, runner.SessionOptions{T: len(held[0]), Threads: cfg.Threads, BatchTokens: len(held[0]), Capture: s.resume, Resumable: s.resume, Layers: live}); err != nil {
			s.cap.Close()
			s.orig.Close()
			return nil, err
		}
	}
	if len(cfg.InitialBI) == e.Blocks() {
		s.bi = slices.Clone(cfg.InitialBI)
	}
	s.alns = make([]*merge.Alignment, e.Blocks())
	s.attn = make([]*merge.Alignment, e.Blocks())
	e.UseProduct(cfg.Threads)
	return s, nil
}

// Close frees the contexts.
func (s *Searcher) Close() {
	if s.score != s.cap {
		s.score.Close()
	}
	s.gram.Close()
	s.cap.Close()
	s.orig.Close()
	s.e.Close()
}

// passStats runs one alignment pass over the model as it is now and
// returns, for each candidate drop j (current blocks, j ≥ 1), the
// statistics of aligning block j−1 to reproduce block j's output, and every
// current block's BI and angular distance.
func (s *Searcher) passStats(drops []int) (map[int]*merge.AlignStats, map[int][2]float64, error) {
	e := s.e
	phys := make([]int, e.Blocks())
	for c := range phys {
		phys[c] = e.Phys(c)
	}
	p := newPass(s.d, len(s.align[0]), s.skip, phys, 0, len(s.align))
	pool := s.takeStats(len(drops))
	for i, j := range drops {
		p.stats[j] = pool[i]
	}
	deepest := p.deepest()
	s.passBlocks += len(s.align) * (s.cap.Blocks(0) - s.cap.Blocks(deepest+1))
	if s.orig == nil {
		sig, err := s.runPass(p, drops, deepest)
		if err != nil {
			return nil, nil, err
		}
		return p.stats, sig, nil
	}
	var err error
	// Config.Original: per batch, the original model's outputs at the
	// target blocks, then the merged model's pass.
	p.useOrig, p.origH = true, map[int][]float32{}
	targets := map[int]bool{}
	for _, j := range drops {
		targets[e.Phys(j)] = true
	}
	if err := s.orig.SetCapture(func(tn cgo.Tensor) bool {
		if targets[tn.Layer] && tn.Kind == cgo.BlockOutput && tn.Cols == s.d {
			_, _, c1 := p.window()
			p.origH[tn.Layer] = p.rows(tn.Data, p.origH[tn.Layer], 0, c1)
		}
		return true
	}, deepest); err != nil {
		return nil, nil, err
	}
	if err := s.cap.SetCapture(p.capture, deepest); err != nil {
		return nil, nil, err
	}
	k := s.cap.SeqsPerDecode()
	for first := 0; first < len(s.align) && err == nil; first += k {
		batch := s.align[first:min(len(s.align), first+k)]
		before := func(f, n int) { p.before(first+f, n) }
		if err = s.orig.Run(s.cfg.Context, batch, before, nil); err == nil {
			err = s.cap.Run(s.cfg.Context, batch, before, nil)
		}
	}
	s.orig.SetCapture(nil, -1)
	s.cap.SetCapture(nil, -1)
	if p.err != nil {
		return nil, nil, p.err
	}
	if err != nil {
		return nil, nil, err
	}
	return p.stats, p.signals(), nil
}

// ownStats returns empty statistics outside the pool (kept by the caller
// beyond the next pass) that share the pool's scratch.
func (s *Searcher) ownStats() *merge.AlignStats {
	s.takeStats(0) // makes the scratch
	return merge.NewAlignStatsShared(s.d, s.scratch)
}

// releaseStats drops the statistics pool, the scratch and the products'
// buffers, and returns the memory to the system.
func (s *Searcher) releaseStats() {
	s.pool, s.scratch = nil, nil
	s.gram.Close()
	s.gram = nil
	freeMemory()
}

// takeStats returns n empty statistics, reusing those of earlier passes
// (they share one scratch), so that the search allocates them once.
func (s *Searcher) takeStats(n int) []*merge.AlignStats {
	if s.scratch == nil {
		s.scratch, s.gram = newScratch(s.d, s.cfg.Threads)
	}
	for len(s.pool) < n {
		s.pool = append(s.pool, merge.NewAlignStatsShared(s.d, s.scratch))
	}
	for _, st := range s.pool[:n] {
		st.Reset()
	}
	return s.pool[:n]
}

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

// heldNLL scores the model as it is now on the held-back chunks. With best
// (and Config.Race), it stops as soon as the model loses the race against
// best, and says so.
func (s *Searcher) heldNLL(best *heldScore) (h *heldScore, lost bool, err error) {
	h = &heldScore{}
	lost, err = s.heldMore(h, len(s.held), best, nil)
	return h, lost, err
}

// heldMore scores the model as it is now on the held-back chunks after
// those h has, up to chunk upTo, appending to h; with best it races as
// heldNLL does. With in holding the stream entering a block at or below
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
			if h.acc != nil && s.ref[from+d.First+i] != nil {
				// The same sum as ChunkNLL's, one softmax per position.
				sum = h.acc.AddChunk(s.ref[from+d.First+i], ch, logits)
			} else {
				sum = kld.ChunkNLL(ch, logits)
			}
			h.sum = append(h.sum, sum)
			h.n = append(h.n, len(ch)-1)
		}
		s.heldBlocks += d.Count * s.score.Blocks(start)
		s.heldLogits += d.Count
		// A candidate scored in full is judged by its full score.
		if race && len(h.sum) < upTo && h.cannotWin(best, raceTolerance) {
			return errLost
		}
		return nil
	}
	if rows != nil {
		err = s.score.RunFrom(s.cfg.Context, rows, start, after)
	} else {
		err = s.score.Run(s.cfg.Context, s.held[from:upTo], nil, after)
	}
	if errors.Is(err, errLost) {
		return true, nil
	}
	return false, err
}

// apply makes candidate c tentatively: block c.Drop an identity, and with
// alignment the block before it aligned.
func (s *Searcher) apply(c *Candidate) error {
	var err error
	if c.Lambda < 1 {
		err = s.e.Fuse(c.Drop-1, c.Lambda, s.cfg.Suffixes, c.perm)
	} else {
		err = s.e.Drop(c.Drop)
	}
	if err != nil {
		return err
	}
	if s.cfg.Align && c.align != nil {
		if err := s.e.Align(c.Drop-1, c.align); err != nil {
			return err
		}
	}
	if s.cfg.Align && c.attn != nil {
		return s.e.AlignAttn(c.Drop-1, c.attn)
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
	if s.cfg.Align && c.attn != nil {
		prev := s.attn[c.Drop-1]
		if prev == nil {
			prev = merge.Identity(s.d)
		}
		s.attn[c.Drop-1] = prev.Then(c.attn)
	}
	if c.perm != nil {
		if s.perms == nil {
			s.perms = map[int]merge.BlockPerm{}
		}
		s.perms[s.e.Phys(c.Drop)] = c.perm
	}
	s.e.Commit(c.Drop)
	freeMemory() // the round's transient weight copies (peak memory)
	s.alns = append(s.alns[:c.Drop:c.Drop], s.alns[c.Drop+1:]...)
	s.attn = append(s.attn[:c.Drop:c.Drop], s.attn[c.Drop+1:]...)
	if c.Drop < len(s.bi) {
		s.bi = append(s.bi[:c.Drop:c.Drop], s.bi[c.Drop+1:]...)
	}
	return nil
}

// maxCandidates returns how many candidates one pass gives statistics:
// as many as Config.MaxStatsBytes holds (merge.AlignStatsBytes each), at
// least Config.Candidates.
func (s *Searcher) maxCandidates() int {
	return max(int(s.cfg.MaxStatsBytes/merge.AlignStatsBytes(s.d)), s.cfg.Candidates, 1)
}

// candidates returns the drops considered at this step: every current
// block but block 0, the ones with the lowest BI first (bi: per current
// block, from the last pass) when the statistics would not fit
// MaxStatsBytes.
func (s *Searcher) candidates(bi []float64) []int {
	if len(bi) != s.e.Blocks() {
		bi = make([]float64, s.e.Blocks())
	}
	return lowestBI(bi, s.maxCandidates())
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
	s.lastStep = n - 1
	bar := progress.New("merge search", n, "steps")
	defer bar.Done()
	for step := range n {
		if s.e.Blocks() < 2 {
			return nil, fmt.Errorf("pipeline: cannot remove %d blocks", n)
		}
		s.curStep = step
		rep, cand, err := s.step(step)
		if err != nil {
			return nil, err
		}
		st := merge.Step{Kind: merge.StepDrop, Blocks: [2]int{cand.Drop, cand.Drop}}
		if cand.Lambda < 1 {
			st = merge.Step{Kind: merge.StepFuse, Blocks: [2]int{cand.Drop - 1, cand.Drop}, Lambda: cand.Lambda}
		}
		steps = append(steps, st)
		res.Steps = append(res.Steps, rep)
		bar.Set(step+1, fmt.Sprintf("removed blk %d, held-back loss %.4f", cand.Drop, cand.HeldNLL))
	}
	res.Quality = s.qualitySum
	return s.finish(steps, res)
}

// step runs one step of Search.
func (s *Searcher) step(step int) (StepReport, *Candidate, error) {
	t0 := time.Now()
	var (
		drops     []int
		stats     map[int]*merge.AlignStats
		sig       map[int][2]float64
		err       error
		prefilled bool
	)
	pass0 := s.passBlocks
	if step == 0 && s.cfg.Prefill != nil && s.cfg.Prefill.done() {
		prefilled = true
		// The calibration pass already was this step's alignment pass.
		drops, stats, sig = s.cfg.Prefill.result()
		s.scratch, s.gram = s.cfg.Prefill.scratch, s.cfg.Prefill.gram
		s.cfg.Prefill.gram = nil // the searcher closes it
		for _, j := range drops {
			s.pool = append(s.pool, stats[j]) // reused by the next passes
		}
		s.cfg.Prefill = nil
	} else {
		drops = s.candidates(s.bi)
		if stats, sig, err = s.passStats(drops); err != nil {
			return StepReport{}, nil, err
		}
	}
	s.bi = make([]float64, s.e.Blocks())
	for j, v := range sig {
		s.bi[j] = v[0]
	}
	var cands []*Candidate
	filter := func(c *Candidate) float64 {
		if s.cfg.Align {
			return c.Stream
		}
		return c.StreamUnaligned
	}
	// Each candidate's statistics are dropped once solved (its alignment,
	// d² float32, is half their size), unless --rho auto re-solves the
	// chosen one; the pool, the products' scratch and buffers go back to
	// the system before the round's weight edits, so that the peak memory
	// is that of one phase, not both.
	keepStats := s.cfg.Align && len(s.cfg.RhoGrid) > 0 && len(s.held) > 0
	s.releaseStats() // the pass's products and their buffers, before the solves'
	for _, j := range drops {
		a, err := stats[j].Solve(s.cfg.Rho)
		if err != nil {
			return StepReport{}, nil, fmt.Errorf("step %d, block %d: %w", step+1, j, err)
		}
		if !keepStats {
			delete(stats, j)
		}
		c := &Candidate{Drop: j, Lambda: 1, Residual: a.Residual, Unaligned: a.Unaligned, Stream: a.Stream, StreamUnaligned: a.StreamUnaligned,
			BI: sig[j][0], Angular: sig[j][1], HeldNLL: math.NaN(), align: a}
		if s.cfg.Similarity != nil {
			c.NPIB = s.cfg.Similarity(s.e.Phys(j-1), s.e.Phys(j))
		}
		cands = append(cands, c)
	}
	order := slices.Clone(cands)
	sort.SliceStable(order, func(a, b int) bool { return filter(order[a]) < filter(order[b]) })
	alignSec := time.Since(t0).Seconds()
	if !prefilled {
		s.passTime = time.Since(t0) // the pass and the fits (searchETA)
	}

	t1 := time.Now()
	blocks0, logits0 := s.heldBlocks, s.heldLogits
	passBlocks := s.passBlocks - pass0
	final := order[:min(len(order), s.cfg.Candidates)]
	if s.cfg.ScoreAll {
		final = order
	}
	if len(s.held) == 0 {
		final = order[:1] // no held-back text: the filter decides
	}
	for _, c := range order[len(final):] {
		c.align = nil // only the final round's alignments are kept (d² each)
	}
	s.releaseStats()
	var best *Candidate
	if len(s.held) == 0 {
		best = final[0]
	} else if best, err = s.round(step, final); err != nil {
		return StepReport{}, nil, err
	}
	if len(s.cfg.FuseLambdas) > 0 && len(s.held) > 0 && s.alns[best.Drop-1] == nil && s.alns[best.Drop] == nil && s.attn[best.Drop-1] == nil && s.attn[best.Drop] == nil {
		perms := []merge.BlockPerm{nil}
		if s.cfg.FusePermute {
			perm, err := merge.MatchBlocks(s.e.BlockTensors(best.Drop-1), s.e.BlockTensors(best.Drop), s.e.m.NHead(), s.e.m.NHeadKV())
			if err != nil {
				return StepReport{}, nil, err
			}
			perms = append(perms, perm)
		}
		for _, perm := range perms {
			for _, lam := range s.cfg.FuseLambdas {
				c, err := s.fusion(best.Drop, lam, perm)
				if err != nil {
					return StepReport{}, nil, err
				}
				cands = append(cands, c)
				how := ""
				if perm != nil {
					how = " (permuted to match)"
				}
				progress.Printf("  fuse blk %d + blk %d%s, λ=%.2f: held-back loss %.4f (residual %.4f)\n", best.Drop-1, best.Drop, how, lam, c.HeldNLL, c.Residual)
				if c.HeldNLL < best.HeldNLL {
					best = c
				}
			}
		}
	}
	if s.cfg.Align && len(s.cfg.RhoGrid) > 0 && len(s.held) > 0 && best.Lambda == 1 {
		if err := s.tuneRho(best, stats[best.Drop]); err != nil {
			return StepReport{}, nil, err
		}
	}
	if s.cfg.Align && s.cfg.AlignAttn && len(s.held) > 0 && best.Lambda == 1 {
		if err := s.refineAttn(best); err != nil {
			return StepReport{}, nil, err
		}
	}
	best.Chosen = true
	if err := s.commit(best); err != nil {
		return StepReport{}, nil, err
	}
	rep := StepReport{Step: step + 1, Drop: best.Drop, Survivor: best.Drop - 1, Lambda: best.Lambda, Residual: best.Residual, Unaligned: best.Unaligned,
		HeldNLL: best.HeldNLL, AlignSeconds: alignSec, ScoreSeconds: time.Since(t1).Seconds(), Prefilled: prefilled,
		HeldBlocks: s.heldBlocks - blocks0, HeldLogits: s.heldLogits - logits0, PassBlocks: passBlocks}
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
	compare := step == s.lastStep && s.quality
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
	s.phaseStart = time.Now()
	defer func() { s.roundTime = time.Since(s.phaseStart) }()
	// inputs captures, for the chunks of a stage, the stream entering the
	// first block each of its candidates changes.
	inputs := func(idx []int, from, upTo int) (*heldInputs, error) {
		var starts []int
		for _, i := range idx {
			starts = append(starts, s.startOf(final[i]))
		}
		return s.captureHeld(starts, from, upTo, step == 0 && s.quality)
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
			bar.Set(done, fmt.Sprintf("first %d chunks: drop blk %d, loss %.4f%s", raceMinChunks, final[i].Drop, scores[i].mean(), s.searchETA(false, frac())))
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
		bar.Set(done, fmt.Sprintf("best: drop blk %d, loss %.4f%s", best.Drop, best.HeldNLL, s.searchETA(false, frac())))
	}
	if compare && best != nil && s.refReady() && bestScore.acc.N() == s.heldTokens() {
		q := bestScore.acc.Summary()
		q.TopK = s.cfg.QualityTopK
		s.qualitySum, s.ref = &q, nil
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

// fusion returns the candidate that fuses current blocks j−1 and j with
// weight lam, aligned (when Config.Align) and scored on the held-back
// text. The fused block's alignment needs its own pass: per batch, the
// target H (block j's output) comes from a decode of the committed model,
// and F, X from a decode with the fusion applied.
func (s *Searcher) fusion(j int, lam float64, perm merge.BlockPerm) (*Candidate, error) {
	c := &Candidate{Drop: j, Lambda: lam, HeldNLL: math.NaN(), Residual: math.NaN(), Unaligned: math.NaN(), perm: perm, Permuted: perm != nil}
	if s.cfg.Align {
		st, err := s.editedStats(j, func() error { return s.e.Fuse(j-1, lam, s.cfg.Suffixes, perm) })
		if err != nil {
			return nil, err
		}
		if c.align, err = st.Solve(s.cfg.Rho); err != nil {
			return nil, err
		}
		c.Residual, c.Unaligned = c.align.Residual, c.align.Unaligned
		c.Stream, c.StreamUnaligned = c.align.Stream, c.align.StreamUnaligned
	}
	var err error
	c.HeldNLL, err = s.scoreTrial(c)
	return c, err
}

// scoreTrial applies c, scores it in full on the held-back text and
// restores the model.
func (s *Searcher) scoreTrial(c *Candidate) (float64, error) {
	if err := s.apply(c); err != nil {
		return math.NaN(), err
	}
	h, _, err := s.heldNLL(nil)
	if rerr := s.e.Restore(); err == nil {
		err = rerr
	}
	if err != nil {
		return math.NaN(), err
	}
	return h.mean(), nil
}

// editedStats accumulates the FFN alignment of current block j−1, as edit
// (applied per batch, then restored) leaves it, to block j's output in
// the committed model: per batch, a decode of the committed model gives
// the target and a decode with the edit X and F.
func (s *Searcher) editedStats(j int, edit func() error) (*merge.AlignStats, error) {
	d, e := s.d, s.e
	pb, pj := e.Phys(j-1), e.Phys(j)
	st := s.ownStats()
	t := len(s.align[0])
	var count int
	var h, f, x, y []float32
	keep := func(data, dst []float32) []float32 { return fitRows(data, dst, d, t, s.skip, 0, count) }
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
		if err := edit(); err != nil {
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
		nll, err := s.scoreTrial(&Candidate{Drop: c.Drop, Lambda: 1, align: a})
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
	res.Permute = s.perms
	res.Align, res.AlignAttn = map[int]*merge.Alignment{}, map[int]*merge.Alignment{}
	for o, a := range s.alns {
		if a != nil {
			res.Align[o] = a
		}
	}
	for o, a := range s.attn {
		if a != nil {
			res.AlignAttn[o] = a
		}
	}
	return res, nil
}

// freeMemory returns what Go's heap and the C heap have freed to the
// system now, not at the next GC cycle: the transient buffers of one
// phase would otherwise stack up to the peak memory.
func freeMemory() {
	debug.FreeOSMemory()
	cgo.TrimHeap()
}

// searchETA returns ", search ETA …" for a progress line of the phase
// under way (an alignment pass when inPass, else a held-back round), frac
// of it done: the rest of the phase at its rate so far, plus the round of
// this step after a pass, plus a pass and a round for every later step,
// each as long as the last one measured (a pass not yet measured, as
// Config.ChunkSeconds predicts it: len(align) chunks through every current
// block). "" outside Search or before any progress.
func (s *Searcher) searchETA(inPass bool, frac float64) string {
	if s.lastStep < 0 || frac <= 0 {
		return ""
	}
	spent := time.Since(s.phaseStart)
	phase := time.Duration(float64(spent) / frac)
	left := phase - spent
	pass, round := s.passTime, s.roundTime
	if inPass && pass == 0 {
		pass = phase
	}
	if pass == 0 {
		pass = time.Duration(float64(len(s.align)) * s.cfg.ChunkSeconds * float64(s.e.Blocks()) / float64(s.e.m.NLayer()) * float64(time.Second))
	}
	if !inPass && round == 0 {
		round = phase
	}
	if inPass {
		left += round
	}
	left += time.Duration(s.lastStep-s.curStep) * (pass + round)
	return fmt.Sprintf(", search ETA %s", left.Round(time.Second))
}
