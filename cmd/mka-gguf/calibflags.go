package main

import (
	"strconv"

	"github.com/urfave/cli/v2"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/analysis"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/calib"
)

// calibFlags are shared by analyze, merge and compare (imatrix takes all
// but --rep and --kernel); the defaults are calib.DefaultSpec's.
var calibFlags = func() []cli.Flag {
	d := calib.DefaultSpec()
	return []cli.Flag{
		&cli.StringFlag{Name: "calib", Aliases: []string{"f"}, Usage: "calibration text `FILE`: plain text (samples separated by blank lines) or JSONL with a \"text\" field", DefaultText: "the built-in set"},
		&cli.IntFlag{Name: "samples", Value: d.Samples, Usage: "calibration samples: points of each layer's manifold, ≥ " + strconv.Itoa(calib.ManifoldMin) + " (≥ 1 for imatrix)"},
		&cli.IntFlag{Name: "ctx", Aliases: []string{"c"}, Value: d.Ctx, Usage: "tokens per calibration sample, ≥ 8 (capped at the model's training context)"},
		&cli.Uint64Flag{Name: "seed", Value: d.Seed, Usage: "seed for the choice of calibration text"},
		&cli.StringFlag{Name: "rep", Value: string(analysis.RepMean), Usage: "sample representation: mean (over tokens) or last (token)"},
		&cli.StringFlag{Name: "kernel", Value: string(analysis.KernelMedian), Usage: "diffusion kernel bandwidth: median (heuristic) or paper (exp(-sqrt(D/8)))"},
		&cli.IntFlag{Name: "batch", Aliases: []string{"b"}, Value: d.Batch, Usage: "tokens per decode, ≥ 1 (several samples per decode)"},
		threadsFlag,
	}
}()

// analysisOptions reads --rep and --kernel.
func analysisOptions(c *cli.Context) (analysis.Options, error) {
	rep, err := analysis.ParseRep(c.String("rep"))
	if err != nil {
		return analysis.Options{}, err
	}
	kernel, err := analysis.ParseKernel(c.String("kernel"))
	return analysis.Options{Rep: rep, Kernel: kernel}, err
}
