package main

import (
	"fmt"
	"os"
	"slices"

	"github.com/urfave/cli/v2"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/choice"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/corpus"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/kld"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/ppl"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/progress"
)

// qualityFlags are eval's flags for KL divergence and multiple choice.
var qualityFlags = []cli.Flag{
	&cli.StringFlag{Name: "base", Usage: "original model: KL divergence of MODEL's next-token distributions from its, on the --text windows (llama-perplexity --kl-divergence)"},
	&cli.StringFlag{Name: "save-base", Usage: "write MODEL's next-token log-probabilities on the --text windows to this file, for --base-logits"},
	&cli.StringFlag{Name: "base-logits", Usage: "KL divergence against base log-probabilities saved by --save-base (the base model is not loaded; --text, when given, must be the saved text)"},
	&cli.IntFlag{Name: "base-top", Value: 1024, Usage: "with --save-base: keep the N most probable tokens of each distribution and their tail mass (8·N bytes a token; 0: the whole vocabulary, exact, 4 bytes per vocabulary entry; vocabularies of up to 4096 tokens are always kept whole)"},
	&cli.StringFlag{Name: "choices", Usage: "multiple-choice tasks to score: JSONL {\"context\", \"endings\", \"label\"} or llama.cpp's HellaSwag text (mka-gguf make-choices builds one)"},
	&cli.IntFlag{Name: "tasks", Usage: "with --choices: score at most the first N tasks (default: all)"},
}

// wantsQuality reports whether eval has more to do than a perplexity.
func wantsQuality(c *cli.Context) bool {
	return slices.ContainsFunc([]string{"base", "save-base", "base-logits", "choices"}, func(n string) bool { return c.String(n) != "" })
}

// qualityResult is eval's --json with --base, --base-logits, --save-base or
// --choices.
type qualityResult struct {
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

// runEvalQuality is eval with --base, --save-base, --base-logits or
// --choices; its outputs (--save-base, --json-file) were declared by
// runEval.
func runEvalQuality(c *cli.Context, path string, outs *outputSet, jsonF, saveF *outFile) error {
	modes := 0
	for _, n := range []string{"base", "save-base", "base-logits"} {
		if c.String(n) != "" {
			modes++
		}
	}
	if modes > 1 {
		return usageError(c, "give one of --base, --save-base and --base-logits")
	}
	text := c.String("text")
	if text == "" && (c.String("base") != "" || c.String("save-base") != "") {
		return usageError(c, "--base and --save-base need --text F")
	}
	if c.Int("base-top") < 0 || c.Int("tasks") < 0 || c.Int("windows") < 0 {
		return usageError(c, "--base-top, --tasks and --windows cannot be negative")
	}
	m, err := cgo.LoadModel(path, modelParams())
	if err != nil {
		return err
	}
	defer m.Close()
	res := qualityResult{Model: path, Text: text}
	if err := evalText(c, m, &res, saveF); err != nil {
		return err
	}
	if f := c.String("choices"); f != "" {
		tasks, err := choice.Load(f)
		if err != nil {
			return err
		}
		bar := progress.New("choices", 0, "tasks")
		r, err := choice.Score(m, tasks, choice.Options{Context: c.Context, Threads: threads(c), MaxTasks: c.Int("tasks"),
			Progress: func(done, total int) { bar.SetTotal(total); bar.Set(done, "") }})
		bar.Done()
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		res.Choices, res.Choice = f, &r
	}
	if res.Choice != nil {
		r := *res.Choice
		r.Scores = nil // per-task scores are for library callers, not the report
		res.Choice = &r
	}
	if err := outs.commitReport(c.Context, jsonF, res); err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(res)
	}
	printQuality(res)
	return nil
}

// evalText does the --text part of eval: perplexity, saving the base, or
// KL divergence.
func evalText(c *cli.Context, m *cgo.Model, res *qualityResult, saveF *outFile) error {
	text, n := c.String("text"), min(c.Int("ctx"), m.NCtxTrain())
	var data string
	if text != "" {
		var err error
		if data, err = corpus.ReadText(text); err != nil {
			return err
		}
	}
	bar := progress.New("eval", 0, "windows")
	defer bar.Done()
	opt := kld.Options{Context: c.Context, First: n / 2, Threads: threads(c), TopK: baseTopK(c, m.NVocab()),
		Progress: func(done, total int) { bar.SetTotal(total); bar.Set(done, "") }}
	switch {
	case c.String("save-base") != "":
		chunks, err := kld.Windows(m, data, n, c.Int("windows"))
		if err != nil {
			return fmt.Errorf("%s: %w", text, err)
		}
		out := saveF.Path
		af, err := os.Create(saveF.Tmp)
		if err != nil {
			return err
		}
		p, se, err := kld.Save(af, m, chunks, opt)
		if cerr := af.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("%s: %w", out, err)
		}
		res.Ctx, res.Windows, res.SavedBase = n, len(chunks), out
		res.PPL = &ppl.Result{PPL: p, StdErr: se, Scored: len(chunks) * (n - 1 - n/2), Windows: len(chunks), Ctx: n}
	case c.String("base") != "":
		b := c.String("base")
		if err := checkModel(b, false); err != nil {
			return err
		}
		base, err := cgo.LoadModel(b, modelParams())
		if err != nil {
			return err
		}
		defer base.Close()
		n = min(n, base.NCtxTrain())
		opt.First = n / 2
		chunks, err := kld.Windows(base, data, n, c.Int("windows"))
		if err != nil {
			return fmt.Errorf("%s: %w", text, err)
		}
		s, err := kld.Compare(base, m, chunks, opt)
		if err != nil {
			return err
		}
		res.Base, res.Ctx, res.Windows, res.KLD = b, n, len(chunks), &s
	case c.String("base-logits") != "":
		bf, err := kld.OpenBase(c.String("base-logits"))
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
		r, err := ppl.Measure(m, data, ppl.Options{Context: c.Context, Ctx: n, MaxWindows: c.Int("windows"), Threads: threads(c),
			Progress: func(done, total int) { bar.SetTotal(total); bar.Set(done, "") }})
		if err != nil {
			return fmt.Errorf("%s: %w", text, err)
		}
		res.Ctx, res.Windows, res.PPL = n, r.Windows, &r
	}
	return nil
}

func printQuality(r qualityResult) {
	if p := r.PPL; p != nil {
		fmt.Printf("%s: PPL = %.4f ± %.4f  (%d windows of %d tokens, %d tokens scored)\n", r.Model, p.PPL, p.StdErr, p.Windows, p.Ctx, p.Scored)
	}
	if r.SavedBase != "" {
		if st, err := os.Stat(r.SavedBase); err == nil {
			fmt.Printf("wrote %s: its log-probabilities on those windows (%s), for eval --base-logits\n", r.SavedBase, human(uint64(st.Size())))
		}
	}
	if s := r.KLD; s != nil {
		fmt.Printf("%s against %s: %d windows of %d tokens, %d tokens scored", r.Model, r.Base, r.Windows, r.Ctx, s.Tokens)
		if s.TopK > 0 {
			fmt.Printf(" (base: top %d tokens + tail)", s.TopK)
		}
		fmt.Println()
		fmt.Printf("  PPL(model)            %10.4f ± %.4f\n", s.PPL, s.PPLErr)
		fmt.Printf("  PPL(base)             %10.4f ± %.4f\n", s.BasePPL, s.BasePPLErr)
		fmt.Printf("  ln(PPL(model/base))   %10.4f ± %.4f\n", s.LnPPLRatio, s.LnPPLRatioErr)
		fmt.Printf("  mean KLD              %10.4f ± %.4f\n", s.KLD, s.KLDErr)
		fmt.Printf("  KLD median %.4f, 90%% %.4f, 95%% %.4f, 99%% %.4f, 99.9%% %.4f, max %.4f\n",
			s.KLDMedian, s.KLDP90, s.KLDP95, s.KLDP99, s.KLDP999, s.KLDMax)
		fmt.Printf("  same top token        %10.2f ± %.2f %%\n", s.SameTop, s.SameTopErr)
		fmt.Printf("  RMS Δp                %10.3f ± %.3f %%\n", s.RMSDP, s.RMSDPErr)
	}
	if ch := r.Choice; ch != nil {
		fmt.Printf("%s on %s: %d tasks (chance %.1f %%)\n", r.Model, r.Choices, ch.Tasks, ch.Chance)
		fmt.Printf("  accuracy, summed log-prob          %6.2f ± %.2f %%\n", ch.Acc, ch.AccErr)
		fmt.Printf("  accuracy, per-token mean (norm)    %6.2f ± %.2f %%\n", ch.AccNorm, ch.AccNormErr)
	}
}

// baseTopK is --base-top for a vocabulary of n tokens: 0 (all) up to 4096
// tokens, where the whole distribution costs little.
func baseTopK(c *cli.Context, n int) int {
	if n <= 4096 {
		return 0
	}
	return c.Int("base-top")
}
