package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/kld"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/pipeline"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/progress"
	"github.com/mka-gguf/mka-gguf/merge"
)

// shrinkResult is what a method decided: the plan, the alignment folded
// into each output block that has one, and the search's steps.
type shrinkResult struct {
	plan  *merge.Plan
	align map[int]*merge.Alignment
	// quality is the merged model against IN on the held-back chunks, from
	// the search's own decodes (pipeline.Config.Quality; nil without).
	quality *kld.Summary
	steps   []pipeline.StepReport
	method  string
	// alignMethod is "ls" or "none"; seconds is the search and alignment
	// time (after calibration).
	alignMethod string
	seconds     float64
}

// alignMode reads --align.
func alignMode(c *cli.Context) (bool, error) {
	switch c.String("align") {
	case "ls":
		return true, nil
	case "none":
		return false, nil
	}
	return false, usageError(c, "unknown --align %q (want ls or none)", c.String("align"))
}

// rhoFlag reads --rho: a relative ridge ≥ 0.
func rhoFlag(c *cli.Context) (float64, error) {
	v := c.String("rho")
	r, err := strconv.ParseFloat(v, 64)
	if err != nil || !(r >= 0) || math.IsInf(r, 0) {
		return 0, usageError(c, "--rho %q is not a number ≥ 0", v)
	}
	return r, nil
}

// needsEdit reports whether method runs on the in-memory editor: the search
// (mka with --lambda search) always, a pruning baseline when aligned.
func needsEdit(c *cli.Context, method string, align bool) bool {
	if method == "mka" {
		return c.String("lambda") == "search"
	}
	return align
}

// shrink plans the removal of n blocks with method. mka with --lambda
// search and the aligned baselines run on the loaded model (pipeline);
// the rule-based λ of mka and the unaligned baselines only plan.
func (j *mergeJob) shrink(c *cli.Context, method string, align bool, n int, opt merge.MKAOptions) (*shrinkResult, error) {
	var err error
	r := &shrinkResult{method: method, alignMethod: "none"}
	if !needsEdit(c, method, align) {
		if r.plan, err = j.plan(method, n, opt); err != nil {
			return nil, err
		}
		if align && method == "mka" {
			progress.Printf("note: --align ls applies to --lambda search and the pruning methods; --lambda %s fuses without it\n", c.String("lambda"))
		}
		return r, nil
	}
	if align {
		r.alignMethod = "ls"
	}
	start := time.Now()
	e, err := pipeline.NewEditor(j.model, j.file, j.blocks, codecFor())
	if err != nil {
		return nil, err
	}
	defer e.Reset()
	var sim func(a, b int) float64
	if j.an != nil {
		m := j.an.BlockSimilarity()
		sim = func(a, b int) float64 { return m.At(a, b) }
	}
	rho, err := rhoFlag(c)
	if err != nil {
		return nil, err
	}
	var orig *cgo.Model
	switch c.String("align-target") {
	case "merged":
	case "original":
		if orig, err = cgo.LoadModel(j.in, modelParams()); err != nil {
			return nil, err
		}
		defer orig.Close()
	default:
		return nil, usageError(c, "unknown --align-target %q (want merged or original)", c.String("align-target"))
	}
	cfg := pipeline.Config{
		Original: orig,
		Context:  j.ctx, Threads: j.threads, Align: align, Rho: rho,
		Candidates: c.Int("candidates"), ScoreAll: c.Bool("score-all"), Race: c.Bool("race"), Similarity: sim,
		MaxStatsBytes: j.statsBytes,
		// The closing quality check, from the search's decodes: its
		// held-back chunks are the check's (qualityChunks). A quantized
		// OUT is not the model the search scored.
		Quality:     method == "mka" && j.checkQuality && c.String("quant") == "",
		QualityTopK: referenceTopK(j.model.NVocab()),
	}
	if j.res != nil {
		cfg.InitialBI = j.res.BlockInfluence()
		if j.res.Samples > 0 {
			cfg.ChunkSeconds = j.res.Seconds / float64(j.res.Samples)
		}
	}
	if method == "mka" && align {
		cfg.Prefill, j.prefill = j.prefill, nil // the first search only
	}
	s, err := pipeline.NewSearcher(e, j.align, j.held, cfg)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	var res *pipeline.Result
	planner := "mka"
	if method == "mka" {
		res, err = s.Search(n)
	} else {
		var p *merge.Plan
		if p, err = j.plan(method, n, opt); err != nil {
			return nil, err
		}
		planner = p.Method
		res, err = s.Apply(p)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", j.in, err)
	}
	res.Plan.Method = planner
	r.plan, r.align, r.steps, r.seconds = res.Plan, res.Align, res.Steps, time.Since(start).Seconds()
	r.quality = res.Quality
	return r, nil
}

// describe returns the search's steps for stdout, one line each, e.g.
//
//	step 1: drop blk 4, blk 3 aligned (residual 0.376, 0.477 without), held-back loss 1.874
func (r *shrinkResult) describe() string {
	var b strings.Builder
	for _, st := range r.steps {
		what := fmt.Sprintf("drop blk %d", st.Drop)
		if st.Lambda < 1 {
			what = fmt.Sprintf("fuse blk %d + blk %d (λ=%.2f)", st.Drop-1, st.Drop, st.Lambda)
		}
		fmt.Fprintf(&b, "  step %d: %s", st.Step, what)
		if r.alignMethod != "none" && st.Drop > 0 {
			fmt.Fprintf(&b, ", blk %d aligned (residual %.3f, %.3f without, ρ_rel=%g, %d tokens)", st.Drop-1, st.Residual, st.Unaligned, st.Rho, st.Tokens)
		}
		if !math.IsNaN(st.HeldNLL) && st.HeldNLL != 0 {
			fmt.Fprintf(&b, ", held-back loss %.4f", st.HeldNLL)
		}
		b.WriteString("\n")
	}
	return strings.TrimSuffix(b.String(), "\n")
}
