package shrink

import (
	"context"
	"fmt"
	"math"
	"os"
	"runtime/debug"
	"time"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/files"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/progress"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/report"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/usage"
)

// Run validates o, plans the merge and, unless o.DryRun, writes o.Out
// (quantized with o.Quant) and checks its quality. Every refusal comes
// before any work (Check's). planned, when set, is called with the plan
// before anything is written. The report's Output is o.Out: a caller that
// writes through a temporary file names the final file there. A failed
// quality gate (MaxKLD) returns the report and a *GateError, with o.Out
// written: the caller must not keep it.
func Run(ctx context.Context, o Options, planned func(*Result)) (*Report, error) {
	start := time.Now()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if err := o.checkApplies(); err != nil {
		return nil, err
	}
	if o.Out == "" && !o.DryRun {
		return nil, usage.Errorf("no OUT: give the output file, or --dry-run")
	}
	res, err := o.resolveFile(true)
	if err != nil {
		return nil, err
	}
	if res.align != "" && !o.Given["align"] {
		o.Align = res.align == "ls" // --plan: the report's alignment
	}
	sum, err := files.SHA256(o.In)
	if err != nil {
		return nil, err
	}
	// The search's large, short-lived d×d buffers (alignment solves) would
	// let Go's heap grow to twice what is live; a lower GC target keeps the
	// peak memory near the model plus its working set (issue 11's budget).
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	phases := o.phases()
	need := o.needs()
	need.Phases = phases
	j, err := Prepare(ctx, o, need)
	if err != nil {
		return nil, err
	}
	defer j.Close()
	j.phases = phases
	if j.res != nil {
		// The analysis has what it needs from the per-sample hidden
		// states; the search does not use them (memory). ReplaceMe's cut
		// is measured on the last-token states.
		j.res.Mean = nil
		if o.Method != ReplaceMe {
			j.res.Last = nil
		}
	}
	j.checkQuality = !o.DryRun && o.CheckQuality
	if err := j.checkDomain(); err != nil {
		return nil, err
	}
	var r *Result
	if res.plan != nil {
		r, err = j.Apply(res.plan, o.align())
	} else {
		r, err = j.Shrink(o.Method, o.align(), res.n)
	}
	if err != nil {
		return nil, err
	}
	if err := j.heldLoss(r); err != nil {
		return nil, err
	}
	r.InLoss = j.inLoss
	if planned != nil {
		planned(r)
	}
	p := r.Plan
	steps, err := reportSteps(p)
	if err != nil {
		return nil, err
	}
	rep := &Report{Head: report.Head{Version: o.Version, Command: "merge"}, DryRun: o.DryRun, In: report.In{Input: o.In, InputSHA256: sum},
		Method: r.Method, Original: p.Original, Remaining: len(p.Layout), RemovedBlocks: removedBlocks(p), Steps: steps, Layout: p.Layout,
		Search: r.Steps, Align: r.AlignMethod, Calibration: j.Calibration(), BytesBefore: j.file.Size,
		SearchSeconds: r.Seconds, Heal: r.Heal, PredictedBytes: o.predict(j.file, j.blocks, p.Removed())}
	if !math.IsNaN(j.inLoss) {
		rep.InHeldNLL = j.inLoss
	}
	if r.Seconds > 0 {
		progress.Printf("search and alignment: %.1f s after calibration\n", r.Seconds)
	}
	if j.checkQuality && r.Quality == nil && j.model != nil {
		phases.Next("quality check", "IN's distributions on "+j.qualityText())
		if err := j.keepReference(); err != nil {
			return nil, err
		}
	}
	// IN is not needed any more (the write streams from the file): closed
	// before OUT's load check, the two are never in memory together.
	j.model.Close()
	j.model = nil
	if !o.DryRun {
		if err := j.writeOut(ctx, r, sum, rep); err != nil {
			return nil, err
		}
	}
	rep.Seconds = time.Since(start).Seconds()
	if q := rep.Quality; q != nil && o.MaxKLD > 0 {
		rep.Gate = &Gate{MaxKLD: o.MaxKLD, Passed: q.KLD <= o.MaxKLD}
		if !rep.Gate.Passed {
			return rep, &GateError{KLD: q.KLD, Max: o.MaxKLD}
		}
	}
	return rep, nil
}

// phases are the phases of the merge of o, in order: the calibration pass
// (or loading IN for a given plan's alignment), the search or the
// alignment, IN's distributions for the quality check, the write, the
// importance matrix and the quantization, and the quality check.
func (o *Options) phases() *progress.Phases {
	var names []string
	need := o.needs()
	loaded := need.Calib || need.Edit
	switch {
	case need.Calib:
		names = append(names, "calibrate")
	case need.Edit:
		names = append(names, "load")
	}
	switch {
	case o.search():
		names = append(names, "search")
	case o.edits():
		names = append(names, "align")
	}
	checks := !o.DryRun && o.CheckQuality
	// The search's own decodes give the quality check of an unquantized
	// OUT (the healing stage's, when it changed the model); otherwise IN's
	// distributions are kept before the write (a loaded IN), or IN is
	// decoded beside OUT after it.
	fromSearch := o.search() && o.Quant == "" && !o.Fast
	if checks && !fromSearch && loaded {
		names = append(names, "quality check")
	}
	if o.DryRun {
		return progress.NewPhases(names...)
	}
	names = append(names, "write")
	if o.Quant != "" {
		if o.Imatrix == "" && o.ImatrixFrom != ImatrixNone {
			names = append(names, "importance matrix")
		}
		names = append(names, "quantize")
	}
	if checks && !fromSearch {
		names = append(names, "quality check")
	}
	return progress.NewPhases(names...)
}

// writeOut writes OUT, quantized or not, and records it and its quality
// in rep.
func (j *Job) writeOut(ctx context.Context, r *Result, sum string, rep *Report) error {
	o := &j.o
	meta := j.Metadata(r, sum)
	if o.Quant != "" {
		if err := j.writeQuantized(ctx, r, o.Out, meta, rep); err != nil {
			return err
		}
	} else {
		j.phases.Next("write", fmt.Sprintf("%d -> %d blocks", r.Plan.Original, len(r.Plan.Layout)))
		if err := j.Write(ctx, r, o.Out, meta, o.Verify); err != nil {
			return err
		}
	}
	st, err := os.Stat(o.Out)
	if err != nil {
		return err
	}
	if rep.OutputSHA256, err = files.SHA256(o.Out); err != nil {
		return err
	}
	rep.Output, rep.BytesAfter = o.Out, st.Size()
	text := j.qualityText()
	switch {
	case r.Quality != nil:
		// The search's last round scored the merged model against IN on
		// the held-back text (the same model as OUT, within float
		// rounding: pipeline.TestSearchQualityEqualsFile).
		rep.Quality = report.FromKLD(text, o.In, *r.Quality)
	case j.checkQuality:
		j.phases.Next("quality check", "OUT against IN on "+text)
		q, err := j.quality(o.Out)
		if err != nil {
			return err
		}
		rep.Quality = report.FromKLD(text, o.In, q)
	}
	return nil
}
