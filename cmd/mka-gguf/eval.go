package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/ppl"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/progress"
)

func init() {
	commands = append(commands, &cli.Command{
		Name:      "eval",
		Usage:     "measure perplexity, KL divergence against the original model (--base) or multiple-choice accuracy (--choices), as llama.cpp's perplexity tool does",
		ArgsUsage: "MODEL.gguf",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "text", Usage: "text file to score (never the calibration text); needed unless --choices or --base-logits is given"},
			&cli.IntFlag{Name: "ctx", Value: 512, Usage: "window length in tokens (capped at the model's context); the second half of each window is scored"},
			&cli.IntFlag{Name: "windows", Usage: "score at most this many windows (default: all)"},
			&cli.BoolFlag{Name: "json", Usage: "print the result as JSON"},
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
	if c.NArg() != 1 {
		return usageError(c, "want one MODEL.gguf, got %d arguments", c.NArg())
	}
	path := c.Args().First()
	if err := checkModel(path, false); err != nil {
		return err
	}
	if wantsQuality(c) {
		return runEvalQuality(c, path)
	}
	if c.String("text") == "" {
		return usageError(c, `flag "text" not set: give --text F (perplexity; with --base, KL divergence) and/or --choices F (multiple choice)`)
	}
	text, err := os.ReadFile(c.String("text"))
	if err != nil {
		return fmt.Errorf("read text: %w", err)
	}
	m, err := cgo.LoadModel(path, modelParams())
	if err != nil {
		return err
	}
	defer m.Close()
	n := min(c.Int("ctx"), m.NCtxTrain())
	bar := progress.New("eval", 0, "windows")
	r, err := ppl.Measure(m, string(text), ppl.Options{Context: c.Context, Ctx: n, MaxWindows: c.Int("windows"), Threads: threads(c),
		Progress: func(done, total int) {
			bar.SetTotal(total)
			bar.Set(done, "")
		}})
	bar.Done()
	if err != nil {
		return fmt.Errorf("%s: %w", c.String("text"), err)
	}
	if c.Bool("json") {
		return printJSON(evalResult{Model: path, Text: c.String("text"), Result: r})
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
