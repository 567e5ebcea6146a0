package compare

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/choice"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/kld"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/progress"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/shrink"
)

// quality measures a model against the base: one decode of the text gives
// its PPL, KLD and same-top share (the base's distributions are saved once
// to a temporary file), and --choices adds the accuracy.
type quality struct {
	ctx      context.Context
	basePath string
	file     string // saved base distributions
	tasks    []choice.Task
	basePPL  [2]float64 // the base's PPL and its standard error
	threads  int
	batch    int
	mp       cgo.ModelParams
}

// Figures are a model's quality numbers beside its PPL in
// compare's results (the original's KLD is 0 and same top 100 %).
type Figures struct {
	KLD        float64      `json:"kld"`
	KLDErr     float64      `json:"kld_stderr"`
	SameTop    float64      `json:"same_top_pct"`
	SameTopErr float64      `json:"same_top_pct_stderr"`
	Acc        float64      `json:"acc_pct,omitempty"`
	AccErr     float64      `json:"acc_pct_stderr,omitempty"`
	AccNorm    float64      `json:"acc_norm_pct,omitempty"`
	AccNormErr float64      `json:"acc_norm_pct_stderr,omitempty"`
	Chance     float64      `json:"chance_pct,omitempty"` // accuracy of a random guess
	KLDFull    *kld.Summary `json:"kl_divergence,omitempty"`
}

// measured is one model's PPL and quality figures.
type measured struct {
	PPL, StdErr float64
	Figures
}

// newQuality saves the base's distributions on text's windows of n tokens
// (at most windows of them) into a hidden file in o.Dir and loads
// o.Choices.
func newQuality(ctx context.Context, o *Options, text string, n int) (*quality, error) {
	q := &quality{ctx: ctx, basePath: o.Merge.In, threads: o.Merge.Threads, batch: o.Merge.Calib.Batch, mp: o.Merge.Load}
	if o.Base != "" {
		q.basePath = o.Base
	}
	if o.Choices != "" {
		var err error
		if q.tasks, err = choice.Load(o.Choices); err != nil {
			return nil, err
		}
		if t := o.Tasks; t > 0 && t < len(q.tasks) {
			q.tasks = q.tasks[:t]
		}
	}
	if err := shrink.CheckModel(q.basePath, false); err != nil {
		return nil, err
	}
	m, err := cgo.LoadModel(q.basePath, q.mp)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	chunks, err := kld.Windows(m, text, min(n, m.NCtxTrain()), o.Windows)
	if err != nil {
		return nil, err
	}
	k := kld.TopK(m.NVocab(), o.BaseTop)
	f, err := os.CreateTemp(o.Dir, ".mka-base-*.kld")
	if err != nil {
		return nil, err
	}
	q.file = f.Name()
	bar := progress.New("base distributions", len(chunks), "windows")
	q.basePPL[0], q.basePPL[1], err = kld.Save(f, m, chunks, kld.Options{Context: ctx, First: len(chunks[0]) / 2, Threads: q.threads, BatchTokens: q.batch, TopK: k,
		Progress: func(done, _ int) { bar.Set(done, "") }})
	bar.Done()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		q.close()
		return nil, fmt.Errorf("%s: %w", q.file, err)
	}
	return q, nil
}

func (q *quality) close() {
	if q != nil && q.file != "" {
		os.Remove(q.file)
	}
}

// original returns the figures of IN: when it is the base, its PPL from
// saving the base, KLD 0 and the same top token everywhere.
func (q *quality) original(in string) (measured, error) {
	if in != q.basePath {
		return q.measure(in)
	}
	f := measured{PPL: q.basePPL[0], StdErr: q.basePPL[1], Figures: Figures{SameTop: 100}}
	if len(q.tasks) == 0 {
		return f, nil
	}
	m, err := cgo.LoadModel(in, q.mp)
	if err != nil {
		return f, err
	}
	defer m.Close()
	err = q.choices(m, &f.Figures)
	return f, err
}

func (q *quality) choices(m *cgo.Model, f *Figures) error {
	bar := progress.New("choices", len(q.tasks), "tasks")
	r, err := choice.Score(m, q.tasks, choice.Options{Context: q.ctx, Threads: q.threads, Progress: func(done, _ int) { bar.Set(done, "") }})
	bar.Done()
	if err != nil {
		return fmt.Errorf("--choices: %w", err)
	}
	f.Acc, f.AccErr, f.AccNorm, f.AccNormErr, f.Chance = r.Acc, r.AccErr, r.AccNorm, r.AccNormErr, r.Chance
	return nil
}

// measure returns the PPL and quality figures of the model at path.
func (q *quality) measure(path string) (measured, error) {
	var f measured
	m, err := cgo.LoadModel(path, q.mp)
	if err != nil {
		return f, err
	}
	defer m.Close()
	bf, err := kld.OpenBase(q.file)
	if err != nil {
		return f, err
	}
	defer bf.Close()
	bar := progress.New("eval "+filepath.Base(path), len(bf.Chunks), "windows")
	s, err := kld.CompareFile(bf, m, kld.Options{Context: q.ctx, Threads: q.threads, BatchTokens: q.batch,
		Progress: func(done, _ int) { bar.Set(done, "") }})
	bar.Done()
	if err != nil {
		return f, err
	}
	f = measured{PPL: s.PPL, StdErr: s.PPLErr, Figures: Figures{KLD: s.KLD, KLDErr: s.KLDErr,
		SameTop: s.SameTop, SameTopErr: s.SameTopErr, KLDFull: &s}}
	if len(q.tasks) > 0 {
		err = q.choices(m, &f.Figures)
	}
	return f, err
}
