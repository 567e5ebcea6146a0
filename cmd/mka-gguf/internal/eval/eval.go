// Package eval measures one model as llama.cpp's perplexity tool does:
// perplexity on a text, KL divergence from a base model (loaded, or its
// log-probabilities saved before) and multiple-choice accuracy.
package eval

import (
	"context"
	"fmt"
	"os"
	"slices"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/choice"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/corpus"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/files"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/kld"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/ppl"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/progress"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/usage"
	"github.com/mka-gguf/mka-gguf/gguf"
)

// Options is one evaluation of Model.
type Options struct {
	Model   string
	Text    string // text to score (never the calibration text)
	Ctx     int    // window length; the second half of each window is scored
	Windows int    // at most this many windows (0: all)
	Batch   int    // tokens per decode of a plain perplexity
	Threads int

	// At most one of Base (a model to compare with), SaveBase (write
	// Model's log-probabilities on the windows there) and BaseLogits (a
	// file SaveBase wrote).
	Base, SaveBase, BaseLogits string
	BaseTop                    int    // tokens kept of each saved distribution (kld.TopK)
	Choices                    string // multiple-choice tasks to score
	Tasks                      int    // at most this many of them (0: all)

	Load cgo.ModelParams // how llama.cpp loads models
}

// Quality reports whether o asks for more than a perplexity: KL divergence,
// saved log-probabilities or multiple choice.
func (o *Options) Quality() bool {
	return o.Base != "" || o.SaveBase != "" || o.BaseLogits != "" || o.Choices != ""
}

// Validate checks the options before any work.
func (o *Options) Validate() error {
	if err := usage.AtLeast("ctx", o.Ctx, 8, "tokens"); err != nil {
		return err
	}
	if err := usage.AtLeast("batch", o.Batch, 1, "tokens per decode"); err != nil {
		return err
	}
	if !o.Quality() {
		if o.Text == "" {
			return usage.Errorf(`flag "text" not set: give --text F (perplexity; with --base, KL divergence) and/or --choices F (multiple choice)`)
		}
		return nil
	}
	modes := 0
	for _, s := range []string{o.Base, o.SaveBase, o.BaseLogits} {
		if s != "" {
			modes++
		}
	}
	if modes > 1 {
		return usage.Errorf("give one of --base, --save-base and --base-logits")
	}
	if o.Text == "" && (o.Base != "" || o.SaveBase != "") {
		return usage.Errorf("--base and --save-base need --text F")
	}
	if o.BaseTop < 0 || o.Tasks < 0 || o.Windows < 0 {
		return usage.Errorf("--base-top, --tasks and --windows cannot be negative")
	}
	return nil
}

// PPLResult is a plain perplexity (eval without --base, --save-base,
// --base-logits or --choices).
type PPLResult struct {
	Model string `json:"model"`
	Text  string `json:"text"`
	ppl.Result
}

// Perplexity measures Model's perplexity on Text.
func Perplexity(ctx context.Context, o Options) (*PPLResult, error) {
	text, err := corpus.ReadText(o.Text)
	if err != nil {
		return nil, err
	}
	m, err := cgo.LoadModel(o.Model, o.Load)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	n := min(o.Ctx, m.NCtxTrain())
	bar := progress.New("eval", 0, "windows")
	r, err := ppl.Measure(m, text, ppl.Options{Context: ctx, Ctx: n, MaxWindows: o.Windows, Threads: o.Threads, BatchTokens: o.Batch,
		Progress: func(done, total int) {
			bar.SetTotal(total)
			bar.Set(done, "")
		}})
	bar.Done()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.Text, err)
	}
	return &PPLResult{Model: o.Model, Text: o.Text, Result: r}, nil
}

// Result is eval with Base, BaseLogits, SaveBase or Choices.
type Result struct {
	Model     string         `json:"model"`
	Text      string         `json:"text,omitempty"`
	Base      string         `json:"base,omitempty"`
	Ctx       int            `json:"ctx,omitempty"`
	Windows   int            `json:"windows,omitempty"`
	PPL       *ppl.Result    `json:"perplexity,omitempty"`
	KLD       *kld.Summary   `json:"kl_divergence,omitempty"`
	SavedBase string         `json:"saved_base,omitempty"`
	Choices   string         `json:"choices,omitempty"`
	Choice    *choice.Result `json:"multiple_choice,omitempty"`
}

// Measure is eval with Base, BaseLogits, SaveBase or Choices; save is the
// output of SaveBase (its Tmp is written, its Path reported).
func Measure(ctx context.Context, o Options, save *files.File) (*Result, error) {
	m, err := cgo.LoadModel(o.Model, o.Load)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	res := &Result{Model: o.Model, Text: o.Text}
	if err := o.text(ctx, m, res, save); err != nil {
		return nil, err
	}
	if f := o.Choices; f != "" {
		tasks, err := choice.Load(f)
		if err != nil {
			return nil, err
		}
		bar := progress.New("choices", 0, "tasks")
		r, err := choice.Score(m, tasks, choice.Options{Context: ctx, Threads: o.Threads, MaxTasks: o.Tasks,
			Progress: func(done, total int) { bar.SetTotal(total); bar.Set(done, "") }})
		bar.Done()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		r.Scores = nil // per-task scores are for library callers, not the report
		res.Choices, res.Choice = f, &r
	}
	return res, nil
}

// text does the Text part of Measure: perplexity, saving the base, or KL
// divergence.
func (o *Options) text(ctx context.Context, m *cgo.Model, res *Result, save *files.File) error {
	text, n := o.Text, min(o.Ctx, m.NCtxTrain())
	var data string
	if text != "" {
		var err error
		if data, err = corpus.ReadText(text); err != nil {
			return err
		}
	}
	bar := progress.New("eval", 0, "windows")
	defer bar.Done()
	opt := kld.Options{Context: ctx, First: n / 2, Threads: o.Threads, TopK: kld.TopK(m.NVocab(), o.BaseTop),
		Progress: func(done, total int) { bar.SetTotal(total); bar.Set(done, "") }}
	switch {
	case o.SaveBase != "":
		chunks, err := kld.Windows(m, data, n, o.Windows)
		if err != nil {
			return fmt.Errorf("%s: %w", text, err)
		}
		af, err := os.Create(save.Tmp)
		if err != nil {
			return err
		}
		p, se, err := kld.Save(af, m, chunks, opt)
		if cerr := af.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("%s: %w", save.Path, err)
		}
		res.Ctx, res.Windows, res.SavedBase = n, len(chunks), save.Path
		res.PPL = &ppl.Result{PPL: p, StdErr: se, Scored: len(chunks) * (n - 1 - n/2), Windows: len(chunks), Ctx: n}
	case o.Base != "":
		return o.compare(m, data, n, opt, res)
	case o.BaseLogits != "":
		bf, err := kld.OpenBase(o.BaseLogits)
		if err != nil {
			return err
		}
		defer bf.Close()
		if text != "" {
			chunks, err := kld.Windows(m, data, bf.Ctx, len(bf.Chunks))
			if err != nil || !slices.EqualFunc(chunks, bf.Chunks, slices.Equal[[]int32]) {
				return fmt.Errorf("%s was not saved from %s with --ctx %d (its tokens differ); leave out --text to use the saved text", bf.Path, text, bf.Ctx)
			}
		}
		s, err := kld.CompareFile(bf, m, opt)
		if err != nil {
			return err
		}
		res.Base, res.Ctx, res.Windows, res.KLD = bf.Path, bf.Ctx, len(bf.Chunks), &s
	case text != "":
		r, err := ppl.Measure(m, data, ppl.Options{Context: ctx, Ctx: n, MaxWindows: o.Windows, Threads: o.Threads,
			Progress: func(done, total int) { bar.SetTotal(total); bar.Set(done, "") }})
		if err != nil {
			return fmt.Errorf("%s: %w", text, err)
		}
		res.Ctx, res.Windows, res.PPL = n, r.Windows, &r
	}
	return nil
}

// compare measures m's KL divergence from the Base model on data's windows
// of n tokens (at most Base's training context).
func (o *Options) compare(m *cgo.Model, data string, n int, opt kld.Options, res *Result) error {
	f, err := gguf.Open(o.Base)
	if err != nil {
		return err
	}
	f.Close()
	base, err := cgo.LoadModel(o.Base, o.Load)
	if err != nil {
		return err
	}
	defer base.Close()
	n = min(n, base.NCtxTrain())
	opt.First = n / 2
	chunks, err := kld.Windows(base, data, n, o.Windows)
	if err != nil {
		return fmt.Errorf("%s: %w", o.Text, err)
	}
	s, err := kld.Compare(base, m, chunks, opt)
	if err != nil {
		return err
	}
	res.Base, res.Ctx, res.Windows, res.KLD = o.Base, n, len(chunks), &s
	return nil
}
