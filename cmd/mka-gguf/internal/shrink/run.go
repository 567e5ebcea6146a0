package shrink

import (
	"context"
	"os"
	"runtime/debug"
	"time"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/calib"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/files"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/kld"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/pipeline"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/progress"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/usage"
	"github.com/mka-gguf/mka-gguf/merge"
)

// Report is what a merge did (the merge command's --report).
type Report struct {
	Version       string                `json:"mka_gguf_version"`
	Input         string                `json:"input"`
	InputSHA256   string                `json:"input_sha256"`
	Output        string                `json:"output,omitempty"`
	OutputSHA256  string                `json:"output_sha256,omitempty"`
	Method        Method                `json:"method"`
	Original      int                   `json:"blocks_before"`
	Remaining     int                   `json:"blocks_after"`
	Steps         []ReportStep          `json:"steps"`
	Layout        [][]merge.Weighted    `json:"layout"`
	Search        []pipeline.StepReport `json:"search,omitempty"`
	Align         string                `json:"align"`
	SearchSeconds float64               `json:"search_seconds,omitempty"`
	Heal          *pipeline.HealReport  `json:"heal,omitempty"`
	// Quality is OUT's KL divergence from IN on QualityText.
	Quality       *kld.Summary  `json:"quality,omitempty"`
	QualityText   string        `json:"-"` // "held-back calibration text" or "calibration text"
	Calibration   *calib.Result `json:"calibration,omitempty"`
	BytesBefore   int64         `json:"bytes_before"`
	BytesAfter    int64         `json:"bytes_after,omitempty"`
	Quant         string        `json:"quant,omitempty"`
	BitsPerWeight float64       `json:"bits_per_weight,omitempty"`
	Imatrix       string        `json:"imatrix,omitempty"`
	Seconds       float64       `json:"seconds"`
}

// ReportStep is one plan step as reports record it: a drop names the
// dropped block, a fusion its two blocks and λ, the weight of the first.
type ReportStep struct {
	Step       int      `json:"step"` // 1-based, as printed
	Kind       string   `json:"kind"` // "drop" or "fuse"
	Block      *int     `json:"block,omitempty"`
	Blocks     []int    `json:"blocks,omitempty"`
	Lambda     *float64 `json:"lambda,omitempty"`
	Similarity float64  `json:"similarity"`
}

// reportSteps converts plan steps for a report.
func reportSteps(steps []merge.Step) []ReportStep {
	out := make([]ReportStep, len(steps))
	for i, s := range steps {
		r := ReportStep{Step: i + 1, Kind: s.Kind.String(), Similarity: s.Similarity}
		if s.Kind == merge.StepDrop {
			b := s.Blocks[0]
			r.Block = &b
		} else {
			l := s.Lambda
			r.Blocks, r.Lambda = []int{s.Blocks[0], s.Blocks[1]}, &l
		}
		out[i] = r
	}
	return out
}

// Run validates o, plans the merge and, unless o.DryRun, writes o.Out
// (quantized with o.Quant) and checks its quality. planned, when set, is
// called with the plan before anything is written. The report's Output is
// o.Out: a caller that writes through a temporary file names the final
// file there.
func Run(ctx context.Context, o Options, planned func(*Result)) (*Report, error) {
	start := time.Now()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Out == "" && !o.DryRun {
		return nil, usage.Errorf("no OUT: give the output file, or --dry-run")
	}
	// The search's large, short-lived d×d buffers (alignment solves) would
	// let Go's heap grow to twice what is live; a lower GC target keeps the
	// peak memory near the model plus its working set (issue 11's budget).
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	j, err := Prepare(ctx, o, o.needs())
	if err != nil {
		return nil, err
	}
	defer j.Close()
	if j.res != nil {
		// The analysis has what it needs from the per-sample hidden
		// states; the search does not use them (memory). ReplaceMe's cut
		// is measured on the last-token states.
		j.res.Mean = nil
		if o.Method != ReplaceMe {
			j.res.Last = nil
		}
	}
	n, err := o.removeCount(j.blocks.Count)
	if err != nil {
		return nil, err
	}
	j.checkQuality = !o.DryRun && o.CheckQuality
	r, err := j.Shrink(o.Method, o.align(), n)
	if err != nil {
		return nil, err
	}
	if planned != nil {
		planned(r)
	}
	p := r.Plan
	sum, err := files.SHA256(o.In)
	if err != nil {
		return nil, err
	}
	rep := &Report{Version: o.Version, Input: o.In, InputSHA256: sum, Method: o.Method, Original: p.Original,
		Remaining: len(p.Layout), Steps: reportSteps(p.Steps), Layout: p.Layout, Search: r.Steps, Align: r.AlignMethod, Calibration: j.res,
		BytesBefore: j.file.Size, SearchSeconds: r.Seconds, Heal: r.Heal}
	if r.Seconds > 0 {
		progress.Printf("search and alignment: %.1f s after calibration\n", r.Seconds)
	}
	if j.checkQuality && r.Quality == nil && j.model != nil {
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
	return rep, nil
}

// writeOut writes OUT, quantized or not, and records it and its quality
// in rep.
func (j *Job) writeOut(ctx context.Context, r *Result, sum string, rep *Report) error {
	o := &j.o
	meta := Provenance(r, o.Version, sum)
	if o.Quant != "" {
		if err := j.writeQuantized(ctx, r, o.Out, meta, rep); err != nil {
			return err
		}
	} else if err := j.Write(ctx, r, o.Out, meta, o.Verify); err != nil {
		return err
	}
	st, err := os.Stat(o.Out)
	if err != nil {
		return err
	}
	if rep.OutputSHA256, err = files.SHA256(o.Out); err != nil {
		return err
	}
	rep.Output, rep.BytesAfter = o.Out, st.Size()
	switch {
	case r.Quality != nil:
		// The search's last round scored the merged model against IN on
		// the held-back text (the same model as OUT, within float
		// rounding: pipeline.TestSearchQualityEqualsFile).
		rep.Quality = r.Quality
	case j.checkQuality:
		q, err := j.quality(o.Out)
		if err != nil {
			return err
		}
		rep.Quality = &q
	}
	if rep.Quality != nil {
		rep.QualityText = j.qualityText()
	}
	return nil
}
