package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/corpus"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/ppl"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/progress"
)

func init() {
	commands = append(commands, &cli.Command{
		Name:      "eval",
		Usage:     "measure perplexity, KL divergence against the original model (--base) or multiple-choice accuracy (--choices), as llama.cpp's perplexity tool does",
		ArgsUsage: "MODEL.gguf",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "text", Aliases: []string{"f"}, Usage: "text `FILE` to score (never the calibration text); needed unless --choices or --base-logits is given"},
			&cli.IntFlag{Name: "ctx", Aliases: []string{"c"}, Value: 512, Usage: "window length in tokens, ≥ 8 (capped at the model's training context); the second half of each window is scored"},
			&cli.IntFlag{Name: "windows", Aliases: []string{"chunks"}, Usage: "score at most this many windows, ≥ 1", DefaultText: "all"},
			&cli.IntFlag{Name: "batch", Aliases: []string{"b"}, Value: 512, Usage: "tokens per decode, ≥ 1"},
			jsonFlag(),
			jsonFileFlag(true),
			forceFlag(),
			modelFlag,
			threadsFlag,
		}, qualityFlags...),
		Action: runEval,
	})
}

// evalResult is what eval prints with --json.
type evalResult struct {
	Model string `json:"model"`
	Text  string `json:"text"`
	ppl.Result
}

func runEval(c *cli.Context) error {
	args := posArgs(c)
	if len(args) != 1 {
		return usageError(c, "want one MODEL.gguf, got %s", argumentCount(len(args)))
	}
	path := args[0]
	outs := newOutputs(c, namedPath{"MODEL", path}, namedPath{"--text", c.String("text")}, namedPath{"--base", c.String("base")},
		namedPath{"--base-logits", c.String("base-logits")}, namedPath{"--choices", c.String("choices")})
	jsonF := outs.file(c.String("json-file"), "--json-file")
	saveF := outs.file(c.String("save-base"), "--save-base")
	if err := outs.begin(); err != nil {
		return err
	}
	defer outs.cleanup()
	if err := checkModel(path, false); err != nil {
		return err
	}
	if wantsQuality(c) {
		return runEvalQuality(c, path, outs, jsonF, saveF)
	}
	if c.String("text") == "" {
		return usageError(c, `flag "text" not set: give --text F (perplexity; with --base, KL divergence) and/or --choices F (multiple choice)`)
	}
	text, err := corpus.ReadText(c.String("text"))
	if err != nil {
		return err
	}
	m, err := cgo.LoadModel(path, modelParams())
	if err != nil {
		return err
	}
	defer m.Close()
	n := min(c.Int("ctx"), m.NCtxTrain())
	bar := progress.New("eval", 0, "windows")
	r, err := ppl.Measure(m, text, ppl.Options{Context: c.Context, Ctx: n, MaxWindows: c.Int("windows"), Threads: threads(c), BatchTokens: c.Int("batch"),
		Progress: func(done, total int) {
			bar.SetTotal(total)
			bar.Set(done, "")
		}})
	bar.Done()
	if err != nil {
		return fmt.Errorf("%s: %w", c.String("text"), err)
	}
	res := evalResult{Model: path, Text: c.String("text"), Result: r}
	if err := outs.commitReport(c.Context, jsonF, res); err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(res)
	}
	fmt.Printf("%s: PPL = %.4f ± %.4f  (%d windows of %d tokens, %d tokens scored, %.0f tokens/s)\n",
		path, r.PPL, r.StdErr, r.Windows, r.Ctx, r.Scored, r.TokPerSec)
	return nil
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
