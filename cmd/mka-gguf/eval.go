package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/choice"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/eval"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/files"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/report"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/shrink"
)

func init() {
	commands = append(commands, &cli.Command{
		Name:      "eval",
		Usage:     "measure perplexity, KL divergence against the original model (--base) or multiple-choice accuracy (--choices), as llama.cpp's perplexity tool does",
		ArgsUsage: "MODEL.gguf",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "text", Aliases: []string{"f", "file"}, Usage: "text `FILE` to score (never the calibration text); needed unless --choices or --base-logits is given"},
			&cli.IntFlag{Name: "ctx", Aliases: []string{"c", "ctx-size"}, Value: 512, Usage: "window length in tokens, ≥ 8 (capped at the model's training context); the second half of each window is scored"},
			&cli.IntFlag{Name: "windows", Aliases: []string{"chunks"}, Usage: "score at most this many windows, ≥ 1", DefaultText: "all"},
			&cli.IntFlag{Name: "batch", Aliases: []string{"b", "batch-size"}, Value: 512, Usage: "tokens per decode, ≥ 1"},
			jsonFlag(),
			jsonFileFlag(),
			forceFlag(),
			modelFlag,
			newThreadsFlag(),
		}, qualityFlags...),
		Action: runEval,
	})
}

// qualityFlags are eval's flags for KL divergence and multiple choice.
var qualityFlags = []cli.Flag{
	&cli.StringFlag{Name: "base", Usage: "original model: KL divergence of MODEL's next-token distributions from its, on the --text windows (llama-perplexity --kl-divergence)"},
	&cli.StringFlag{Name: "save-base", Usage: "write MODEL's next-token log-probabilities on the --text windows to this file, for --base-logits"},
	&cli.StringFlag{Name: "base-logits", Usage: "KL divergence against base log-probabilities saved by --save-base (the base model is not loaded; --text, when given, must be the saved text)"},
	&cli.IntFlag{Name: "base-top", Value: 1024, Usage: "with --save-base: keep the N most probable tokens of each distribution and their tail mass (8·N bytes a token; 0: the whole vocabulary, exact, 4 bytes per vocabulary entry; vocabularies of up to 4096 tokens are always kept whole)"},
	&cli.StringFlag{Name: "choices", Usage: "multiple-choice tasks to score: JSONL {\"context\", \"endings\", \"label\"} or llama.cpp's HellaSwag text (mka-gguf make-choices builds one)"},
	&cli.IntFlag{Name: "tasks", Usage: "with --choices: score at most the first N tasks", DefaultText: "all"},
}

// evalOptions turns eval's flags into eval.Options.
func evalOptions(c *cli.Context) *eval.Options {
	o := &eval.Options{Text: c.String("text"), Ctx: c.Int("ctx"), Windows: c.Int("windows"), Batch: c.Int("batch"), Threads: threads(c),
		Base: c.String("base"), SaveBase: c.String("save-base"), BaseLogits: c.String("base-logits"), BaseTop: c.Int("base-top"),
		Choices: c.String("choices"), Tasks: c.Int("tasks"), Load: modelParams()}
	if args := posArgs(c); len(args) > 0 {
		o.Model = args[0]
	}
	return o
}

func runEval(c *cli.Context) error {
	args := posArgs(c)
	if len(args) != 1 {
		return usageError(c, "want one MODEL.gguf, got %s", argumentCount(len(args)))
	}
	o := evalOptions(c)
	path := o.Model
	outs := files.New(c.Bool("force"), files.Input{What: "MODEL", Path: path}, files.Input{What: typedName(c, "text"), Path: o.Text},
		files.Input{What: "--base", Path: o.Base}, files.Input{What: "--base-logits", Path: o.BaseLogits},
		files.Input{What: "--choices", Path: o.Choices})
	jsonF := outs.File(c.String("json-file"), typedName(c, "json-file"))
	saveF := outs.File(o.SaveBase, "--save-base")
	if err := outs.Begin(); err != nil {
		return err
	}
	defer outs.Cleanup()
	if err := shrink.CheckModel(path, false); err != nil {
		return err
	}
	var res *evalReport
	var show func()
	if o.Quality() {
		r, err := eval.Measure(c.Context, *o, saveF)
		if err != nil {
			return err
		}
		res, show = fromMeasure(r), func() { printQuality(r) }
	} else {
		r, err := eval.Perplexity(c.Context, *o)
		if err != nil {
			return err
		}
		res = &evalReport{In: report.In{Input: path}, Ctx: r.Ctx, Windows: r.Windows, Quality: report.FromPPL(r.Text, r.Result),
			TokPerSec: r.TokPerSec, Seconds: r.Seconds}
		show = func() {
			fmt.Printf("%s: PPL = %.4f ± %.4f  (%d windows of %d tokens, %d tokens scored, %.0f tokens/s)\n",
				path, r.PPL, r.StdErr, r.Windows, r.Ctx, r.Scored, r.TokPerSec)
		}
	}
	res.Head = head("eval")
	if jsonF != nil || c.Bool("json") {
		sum, err := files.SHA256(path)
		if err != nil {
			return err
		}
		res.InputSHA256 = sum
	}
	if err := outs.CommitJSON(c.Context, jsonF, res); err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(res)
	}
	show()
	return nil
}

// evalReport is eval's --json (docs/json.md): the perplexity of MODEL,
// and with --base or --base-logits the KL divergence, at "quality".
type evalReport struct {
	report.Head
	report.In
	Ctx       int             `json:"ctx"`
	Windows   int             `json:"windows"`
	Quality   *report.Quality `json:"quality,omitempty"`
	SavedBase string          `json:"saved_base,omitempty"`
	Choices   string          `json:"choices,omitempty"`
	Choice    *choice.Result  `json:"multiple_choice,omitempty"`
	// TokPerSec and Seconds time the perplexity's decodes (eval without
	// --base, or with --save-base).
	TokPerSec float64 `json:"tok_per_s,omitempty"`
	Seconds   float64 `json:"seconds,omitempty"`
}

// fromMeasure is the report of eval.Measure's result.
func fromMeasure(r *eval.Result) *evalReport {
	rep := &evalReport{In: report.In{Input: r.Model}, Ctx: r.Ctx, Windows: r.Windows, SavedBase: r.SavedBase, Choices: r.Choices, Choice: r.Choice}
	switch {
	case r.KLD != nil:
		rep.Quality = report.FromKLD(r.Text, r.Base, *r.KLD)
	case r.PPL != nil:
		rep.Quality = report.FromPPL(r.Text, *r.PPL)
		rep.Ctx, rep.Windows, rep.TokPerSec, rep.Seconds = r.PPL.Ctx, r.PPL.Windows, r.PPL.TokPerSec, r.PPL.Seconds
	}
	return rep
}

// printQuality prints eval.Measure's result.
func printQuality(r *eval.Result) {
	if p := r.PPL; p != nil {
		fmt.Printf("%s: PPL = %.4f ± %.4f  (%d windows of %d tokens, %d tokens scored)\n", r.Model, p.PPL, p.StdErr, p.Windows, p.Ctx, p.Scored)
	}
	if r.SavedBase != "" {
		if st, err := os.Stat(r.SavedBase); err == nil {
			fmt.Printf("wrote %s: its log-probabilities on those windows (%s), for eval --base-logits\n", r.SavedBase, files.Human(uint64(st.Size())))
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
