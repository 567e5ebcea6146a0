package main

import (
	"slices"
	"strconv"

	"github.com/urfave/cli/v2"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/analysis"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/calib"
)

// calibFlags returns the calibration flags of the command cmd: analyze,
// merge and compare take them all, imatrix all but --rep and --kernel; the
// defaults are calib.DefaultSpec's. Each command gets its own flags, with
// help true for it.
func calibFlags(cmd string) []cli.Flag {
	d := calib.DefaultSpec()
	samples := "calibration samples: points of each layer's manifold, ≥ " + strconv.Itoa(calib.ManifoldMin)
	if cmd == "imatrix" {
		samples = "calibration samples (chunks of --ctx tokens), ≥ 1"
	}
	flags := []cli.Flag{
		&cli.StringFlag{Name: "calib", Aliases: []string{"f", "file"}, Usage: "calibration text `FILE`: plain text (samples separated by blank lines) or JSONL with a \"text\" field", DefaultText: "the built-in set"},
		&cli.IntFlag{Name: "samples", Value: d.Samples, Usage: samples},
		&cli.IntFlag{Name: "ctx", Aliases: []string{"c", "ctx-size"}, Value: d.Ctx, Usage: "tokens per calibration sample, ≥ 8 (capped at the model's training context)"},
		&cli.Uint64Flag{Name: "seed", Value: d.Seed, Usage: "seed for the choice of calibration text"},
		&cli.StringFlag{Name: "rep", Value: string(analysis.RepMean), Usage: "sample representation: mean (over tokens) or last (token)"},
		&cli.StringFlag{Name: "kernel", Value: string(analysis.KernelMedian), Usage: "diffusion kernel bandwidth: median (heuristic) or paper (exp(-sqrt(D/8)))"},
		&cli.IntFlag{Name: "batch", Aliases: []string{"b", "batch-size"}, Value: d.Batch, Usage: "tokens per decode, ≥ 1 (several samples per decode)"},
		newThreadsFlag(),
	}
	if cmd == "imatrix" {
		flags = slices.DeleteFunc(flags, func(f cli.Flag) bool { n := f.Names()[0]; return n == "rep" || n == "kernel" })
	}
	return flags
}

// analysisOptions reads --rep and --kernel.
func analysisOptions(c *cli.Context) (analysis.Options, error) {
	rep, err := analysis.ParseRep(c.String("rep"))
	if err != nil {
		return analysis.Options{}, err
	}
	kernel, err := analysis.ParseKernel(c.String("kernel"))
	return analysis.Options{Rep: rep, Kernel: kernel}, err
}
