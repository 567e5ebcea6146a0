package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/analysis"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/calib"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/corpus"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/pipeline"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/progress"
)

// calibFlags are shared by analyze, merge and compare.
var calibFlags = []cli.Flag{
	&cli.StringFlag{Name: "calib", Aliases: []string{"f"}, Usage: "calibration text `FILE`: plain text (samples separated by blank lines) or JSONL with a \"text\" field", DefaultText: "the built-in set"},
	&cli.IntFlag{Name: "samples", Value: 128, Usage: "calibration samples: points of each layer's manifold, ≥ 8 (≥ 1 for imatrix)"},
	&cli.IntFlag{Name: "ctx", Aliases: []string{"c"}, Value: 256, Usage: "tokens per calibration sample, ≥ 8 (capped at the model's training context)"},
	&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "seed for the choice of calibration text"},
	&cli.StringFlag{Name: "rep", Value: "mean", Usage: "sample representation: mean (over tokens) or last (token)"},
	&cli.StringFlag{Name: "kernel", Value: "median", Usage: "diffusion kernel bandwidth: median (heuristic) or paper (exp(-sqrt(D/8)))"},
	&cli.IntFlag{Name: "batch", Aliases: []string{"b"}, Value: 512, Usage: "tokens per decode, ≥ 1 (several samples per decode)"},
	threadsFlag,
}

// calibSamples returns the samples of --calib or of the built-in set, and
// a name for messages.
func calibSamples(c *cli.Context) ([]corpus.Sample, string, error) {
	if p := c.String("calib"); p != "" {
		s, err := corpus.Load(p)
		return s, p, err
	}
	return corpus.Default(), corpus.DefaultName, nil
}

// calibTexts is calibSamples without the kinds.
func calibTexts(c *cli.Context) ([]string, string, error) {
	s, name, err := calibSamples(c)
	if err != nil {
		return nil, "", err
	}
	return texts(s), name, nil
}

// texts returns the samples' texts.
func texts(s []corpus.Sample) []string {
	out := make([]string, len(s))
	for i := range s {
		out[i] = s[i].Text
	}
	return out
}

// calibrate tokenizes texts and runs the calibration pass with a progress
// bar. It also returns the chunks it decoded.
//
// observe, when set, is called with the chunks' length and number before
// the pass and may return another pass to run on the same decodes (the
// merge's first alignment pass).
func calibrate(c *cli.Context, m *cgo.Model, texts []string, source string, observe func(t, chunks int) *pipeline.Prefill) (*calib.Result, [][]int32, error) {
	t := min(c.Int("ctx"), m.NCtxTrain())
	n := c.Int("samples")
	if n < 8 {
		return nil, nil, usageError(c, "--samples %d is too few for a manifold (need at least 8)", n)
	}
	chunks, err := calib.Tokens(m, texts, n, t, c.Uint64("seed"))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", source, err)
	}
	bar := progress.New("calibrate", n, "samples")
	opt := calib.Options{Context: c.Context, Samples: n, Ctx: t, Seed: c.Uint64("seed"), Threads: threads(c),
		BatchTokens: c.Int("batch"),
		Progress: func(done, total int, tps float64) {
			bar.Set(done, fmt.Sprintf("%.0f tok/s", tps))
		}}
	if observe != nil {
		if pf := observe(t, len(chunks)); pf != nil {
			opt.Observe, opt.ObserveBefore = pf.Capture, pf.Before
		}
	}
	res, err := calib.Run(m, chunks, opt)
	bar.Done()
	if err != nil {
		return nil, nil, err
	}
	return res, chunks, nil
}

// analyzeOptions reads --rep and --kernel.
func analyzeOptions(c *cli.Context) analysis.Options {
	return analysis.Options{Rep: c.String("rep"), Kernel: c.String("kernel")}
}

// fileSHA256 returns the hex SHA-256 of a file.
func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
