package main

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/pipeline"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/progress"
	"github.com/mka-gguf/mka-gguf/merge"
)

// shrinkResult is what a method decided: the plan, the alignment folded
// into each output block that has one, and the search's steps.
type shrinkResult struct {
	plan   *merge.Plan
	align  map[int]*merge.Alignment
	steps  []pipeline.StepReport
	method string
	// alignMethod is "ls" or "none"; seconds is the search and
	// alignment time (after calibration).
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
	s, err := pipeline.NewSearcher(e, j.align, j.held, pipeline.Config{
		Context: j.ctx, Threads: j.threads, BatchTokens: j.batch, Align: align, Rho: c.Float64("rho"),
		Candidates: c.Int("candidates"), ScoreAll: c.Bool("score-all"), Similarity: sim,
	})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	var res *pipeline.Result
	if method == "mka" {
		res, err = s.Search(n)
	} else {
		var p *merge.Plan
		if p, err = j.plan(method, n, opt); err != nil {
			return nil, err
		}
		res, err = s.Apply(p)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", j.in, err)
	}
	res.Plan.Method = method
	r.plan, r.align, r.steps, r.seconds = res.Plan, res.Align, res.Steps, time.Since(start).Seconds()
	return r, nil
}
