package shrink

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/kld"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/pipeline"
	"github.com/mka-gguf/mka-gguf/merge"
)

// Result is what a method decided: the plan, the alignment folded into
// each output block that has one, and the search's steps.
type Result struct {
	Plan  *merge.Plan
	Align map[int]*merge.Alignment
	// Quality is the merged model against IN on the held-back chunks, from
	// the search's own decodes (pipeline.Config.Quality; nil without).
	Quality *kld.Summary
	Steps   []pipeline.StepReport
	Method  Method
	// Replace holds the healing stage's refitted tensors by output name
	// (edit.RewriteOptions.Replace) and Heal its report (nil: not run).
	Replace map[string][]float32
	Heal    *pipeline.HealReport
	// AlignMethod is "ls" or "none"; Seconds is the search and alignment
	// time (after calibration).
	AlignMethod string
	Seconds     float64
	// InLoss is IN's mean loss on the held-back text the steps' losses are
	// on, nats per token (NaN: not known; set by Run).
	InLoss float64
}

// mka returns the options of merge.PlanMKA: Order and a rule-based Lambda
// (the search plans with the paper's λ).
func (o *Options) mka() merge.MKAOptions {
	m := merge.MKAOptions{Order: merge.OrderGreedy, Lambda: merge.LambdaPaper}
	if o.Order == OrderBackToFront {
		m.Order = merge.OrderBackToFront
	}
	switch o.Lambda {
	case LambdaSearch, LambdaPaper:
	case LambdaCode:
		m.Lambda = merge.LambdaCode
	default:
		v, _ := strconv.ParseFloat(string(o.Lambda), 64) // checked by Validate
		m.Lambda, m.Fixed = merge.LambdaFixed, v
	}
	return m
}

// Shrink plans the removal of n blocks with method. mka with the λ search
// and the aligned baselines run on the loaded model (pipeline); the
// rule-based λ of mka and the unaligned baselines only plan.
func (j *Job) Shrink(method Method, align bool, n int) (*Result, error) {
	o := &j.o
	if !NeedsEdit(method, o.Lambda, align) {
		p, err := j.plan(method, n)
		if err != nil {
			return nil, err
		}
		return &Result{Method: method, AlignMethod: "none", Plan: p}, nil
	}
	if method == ReplaceMe {
		j.phases.Next("align", fmt.Sprintf("one run of %d blocks cut, one transform", n))
		return j.edit(method, align, func(s *pipeline.Searcher) (*pipeline.Result, error) { return s.ReplaceMe(n, j.res.Last) })
	}
	if method == MKA && o.Fast {
		j.phases.Next("search", fmt.Sprintf("%d of %d blocks, chosen by the closed-form filter (--fast)", n, j.blocks.Count))
		return j.edit(method, align, func(s *pipeline.Searcher) (*pipeline.Result, error) { return s.Fast(n) })
	}
	if method == MKA {
		j.phases.Next("search", fmt.Sprintf("%d of %d blocks, one at a time", n, j.blocks.Count))
		return j.edit(method, align, func(s *pipeline.Searcher) (*pipeline.Result, error) { return s.Search(n) })
	}
	p, err := j.plan(method, n)
	if err != nil {
		return nil, err
	}
	j.phases.Next("align", fmt.Sprintf("%d blocks removed, each aligned", n))
	return j.edit(method, align, func(s *pipeline.Searcher) (*pipeline.Result, error) { return s.Apply(p) })
}

// Apply removes the blocks of a given plan (--blocks, --plan): with align,
// the block before each dropped one is aligned (pipeline.Searcher.Apply);
// without, the plan is only written.
func (j *Job) Apply(p *merge.Plan, align bool) (*Result, error) {
	if !align {
		return &Result{Method: Method(p.Method), AlignMethod: "none", Plan: p}, nil
	}
	j.phases.Next("align", fmt.Sprintf("%d blocks removed, each aligned", p.Removed()))
	return j.edit(Method(p.Method), align, func(s *pipeline.Searcher) (*pipeline.Result, error) { return s.Apply(p) })
}

// edit runs do on a searcher over the loaded model (the λ search, or a
// plan of drops applied with their alignments) and returns its result as
// method's.
func (j *Job) edit(method Method, align bool, do func(s *pipeline.Searcher) (*pipeline.Result, error)) (*Result, error) {
	o := &j.o
	r := &Result{Method: method, AlignMethod: "none"}
	if align || method == ReplaceMe {
		r.AlignMethod = "ls"
	}
	start := time.Now()
	e, err := pipeline.NewEditor(j.model, j.file, j.blocks, Codec())
	if err != nil {
		return nil, err
	}
	defer e.Reset()
	var sim func(a, b int) float64
	if j.an != nil {
		m := j.an.BlockSimilarity()
		sim = func(a, b int) float64 { return m.At(a, b) }
	}
	// IN loaded read-only: the alignment target (--align-target original)
	// and the healing stage's reference.
	var ref, orig *cgo.Model
	heal := o.Heal && method == MKA && align && !o.Fast
	if o.AlignTarget == TargetOriginal || heal {
		if ref, err = cgo.LoadModel(o.In, o.Load); err != nil {
			return nil, err
		}
		defer ref.Close()
	}
	if o.AlignTarget == TargetOriginal {
		orig = ref
	}
	search := method == MKA && !o.fixed()
	cfg := pipeline.Config{
		Original: orig,
		Context:  j.ctx, Threads: o.Threads, Align: align, Rho: o.Rho,
		Candidates: o.Candidates, ScoreAll: o.ScoreAll, Race: o.Race, Similarity: sim,
		MaxStatsBytes: j.statsBytes, StreamBytes: j.streamBytes,
		Heal: heal, HealRho: healRho, Reference: ref,
		// The closing quality check, from the search's decodes: its
		// held-back chunks are the check's (qualityChunks). A quantized
		// OUT is not the model the search scored.
		Quality:     search && j.checkQuality && o.Quant == "" && !o.Fast,
		QualityTopK: referenceTopK(j.model.NVocab()),
	}
	if j.res != nil {
		cfg.InitialBI = j.res.BlockInfluence()
		if j.res.Samples > 0 {
			cfg.ChunkSeconds = j.res.Seconds / float64(j.res.Samples)
		}
	}
	if search && align {
		cfg.Prefill, j.prefill = j.prefill, nil // the first search only
	}
	chunks, held := j.align, j.held
	if method == ReplaceMe {
		// One fit on every calibration token, nothing held back.
		chunks, held, cfg.Align, cfg.Quality = j.chunks, nil, true, false
	}
	s, err := pipeline.NewSearcher(e, chunks, held, cfg)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	res, err := do(s)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.In, err)
	}
	res.Plan.Method = string(method)
	r.Plan, r.Align, r.Steps, r.Seconds = res.Plan, res.Align, res.Steps, time.Since(start).Seconds()
	r.Quality, r.Replace, r.Heal = res.Quality, res.ReplaceTensors(), res.Heal
	return r, nil
}

// healRho is the healing stage's ridge relative to tr(AᵀWA)/n_ff (the
// value measured in issue 26).
const healRho = 1e-3

// plan builds the plan of one method, which must keep what the
// architecture derives from the block index (arch.Model.CheckPlan).
func (j *Job) plan(method Method, n int) (p *merge.Plan, err error) {
	defer func() {
		if err == nil && p != nil {
			err = j.blocks.CheckPlan(p)
		}
	}()
	L := j.blocks.Count
	switch method {
	case PruneReverse:
		return merge.PlanPruneReverse(L, n)
	case PruneBI:
		return merge.PlanPruneBI(j.an.BI, n)
	case PruneAngular:
		return merge.PlanPruneAngular(j.an.AngularMatrix(), L, n)
	case MKA:
		return merge.PlanMKA(j.an.BlockSimilarity(), n, j.o.mka())
	}
	_, err = ParseMethod(string(method))
	return nil, err
}

// Describe returns the search's steps for people (every step drops a
// block; the block numbers are current ones, after the earlier steps),
// one line each, with the held-back loss beside IN's (InLoss, when known),
// e.g.
//
//	step 1: drop blk 4 (original 4), blk 3 aligned (residual 0.376, 0.477 without), held-back loss 1.874 nats/token (IN 1.620)
func (r *Result) Describe() string {
	inLoss := r.InLoss
	orig, _ := OriginalBlocks(r.Plan.Original, r.Plan.Steps)
	var b strings.Builder
	i := 0 // the plan step of st's first drop (a run of p drops is p plan steps)
	for _, st := range r.Steps {
		fmt.Fprintf(&b, "  step %d: drop blk %d", st.Step, st.Drop)
		if st.Run > 1 {
			fmt.Fprintf(&b, "..%d", st.Drop+st.Run-1)
		}
		if st.Run <= 1 && i < len(orig) && len(orig[i]) == 1 && orig[i][0] != st.Drop {
			fmt.Fprintf(&b, " (original %d)", orig[i][0])
		}
		i += max(st.Run, 1)
		if r.AlignMethod != "none" && st.Drop > 0 {
			fmt.Fprintf(&b, ", blk %d aligned (residual %.3f, %.3f without, ρ_rel=%g, %d tokens)", st.Drop-1, st.Residual, st.Unaligned, st.Rho, st.Tokens)
		}
		if !math.IsNaN(st.HeldNLL) && st.HeldNLL != 0 {
			fmt.Fprintf(&b, ", held-back loss %.3f nats/token", st.HeldNLL)
			if !math.IsNaN(inLoss) {
				fmt.Fprintf(&b, " (IN %.3f)", inLoss)
			}
		}
		b.WriteString("\n")
	}
	if h := r.Heal; h != nil {
		if h.Skipped != "" {
			fmt.Fprintf(&b, "  heal: skipped (%s)\n", h.Skipped)
		} else {
			var kept, tried []string
			for _, st := range h.Refits {
				tried = append(tried, strconv.Itoa(st.Block))
				if st.Kept {
					kept = append(kept, strconv.Itoa(st.Block))
				}
			}
			fmt.Fprintf(&b, "  heal: ffn_down refitted to IN in out blks [%s] of [%s], held-back loss %.4f -> %.4f\n",
				strings.Join(kept, " "), strings.Join(tried, " "), h.HeldBefore, h.HeldAfter)
		}
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// referenceTopK is how many tokens of IN's distributions the quality
// check keeps (all of them for vocabularies up to 4096).
func referenceTopK(vocab int) int {
	if vocab <= 4096 {
		return 0
	}
	return 1024
}
