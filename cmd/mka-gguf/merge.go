package main

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/files"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/shrink"
	"github.com/mka-gguf/mka-gguf/merge"
)

// mergeFlags are merge's flags; compare takes most of them. The defaults
// are shrink.Defaults.
var mergeFlags = func() []cli.Flag {
	d := shrink.Defaults()
	return append([]cli.Flag{
		&cli.StringFlag{Name: "method", Value: string(d.Method), Usage: strings.Join(methodNames(), " | ")},
		&cli.IntFlag{Name: "remove", Aliases: []string{"n"}, Usage: "blocks to remove, 1 to blocks−1", DefaultText: "a quarter of them, at least 1"},
		&cli.Float64Flag{Name: "ratio", Usage: "fraction of blocks to remove, in (0, 1) (removed / original, as in the MKA paper)", DefaultText: "none"},
		&cli.StringFlag{Name: "lambda", Value: string(d.Lambda), Usage: "fusion weight: search (pick by held-back calibration loss), paper (λ = similarity), code (the published code's rule) or a number in [0,1]"},
		&cli.IntFlag{Name: "candidates", Value: d.Candidates, Usage: "with --lambda search (≥ 1): candidates per removed block that the cheap filter (alignment residual) sends to the final round, scored by held-back loss"},
		&cli.StringFlag{Name: "align", Value: alignName(d.Align), Usage: "fold a least-squares alignment into the block before each removed one (ls) or not (none)"},
		&cli.StringFlag{Name: "rho", Value: strconv.FormatFloat(d.Rho, 'g', -1, 64), Usage: "ridge of the alignment, relative to tr(XᵀX)/d: a number ≥ 0"},
		&cli.StringFlag{Name: "align-target", Value: string(d.AlignTarget), Usage: "alignment target: the removed block's output in the model as merged so far (merged) or in the original model (original: one more decode per alignment batch)"},
		&cli.BoolFlag{Name: "heal", Value: d.Heal, Usage: "after the mka search, refit the ffn_down of each block from the first removal on to the original model's stream (weighted ridge, kept only where the held-back loss falls; --heal=false: off)"},
		&cli.BoolFlag{Name: "fast", Usage: "one calibration pass: each removal chosen by the closed-form filter from the pass's alignment fits, without held-back scoring or healing (for 8 B+ models on a CPU; the default search is slower and better)"},
		&cli.IntFlag{Name: "align-samples", Value: d.AlignSamples, Usage: "calibration samples used by each alignment pass (at most --samples)"},
		&cli.BoolFlag{Name: "race", Value: d.Race, Usage: "race the candidates on held-back text: all on the first 6 of 16 chunks, the best 3 on all 16, and stop one once its loss, paired by chunk, is 3 standard errors above the leader's minus 0.002 nats/token (--race=false scores each in full)"},
		&cli.BoolFlag{Name: "score-all", Usage: "score every candidate on held-back text, not only the filter's best (measures the filter's agreement)"},
		&cli.StringFlag{Name: "order", Value: string(d.Order), Usage: "pair order for mka: greedy (most similar pair anywhere) or back-to-front (the paper)"},
		&cli.StringFlag{Name: "norms", Value: string(d.Norms), Usage: "norm weights of a fused block: weighted (like every tensor) or first (keep the first block's)"},
		&cli.Float64Flag{Name: "holdout", Value: d.Holdout, Usage: "fraction of the calibration text held back to score λ candidates, in (0, 0.9]"},
		&cli.StringFlag{Name: "blocks", Usage: "remove exactly these blocks of IN, numbered from 0 as inspect and the reports number them, e.g. 3,5,6 (no search; each aligned as --align says)"},
		&cli.StringFlag{Name: "target-size", Usage: "remove the fewest blocks (and with --quant quantize) that make OUT fit this `SIZE`, e.g. 40MiB or 1.5G (predicted from IN's metadata)"},
		&cli.StringFlag{Name: "plan", Usage: "apply the plan of a merge --dry-run report (its --json-file `FILE`) as it is: no search"},
		&cli.BoolFlag{Name: "dry-run", Usage: "print the plan and OUT's predicted size, and write nothing"},
		&cli.StringFlag{Name: "json-file", Aliases: []string{"report"}, Usage: "write the JSON report (plan, search, sizes, quality) to this `FILE`"},
		jsonFlag(),
		forceFlag(),
		modelFlag,
		&cli.BoolFlag{Name: "no-check-quality", Usage: "skip the closing KL divergence of OUT against IN (on the held-back calibration text of --lambda search, else on calibration text)"},
		&cli.Float64Flag{Name: "max-kld", Usage: "quality gate: when the closing quality check's mean KL divergence is above `X` (nats per token), write no OUT and exit with status 3", DefaultText: "none"},
		&cli.BoolFlag{Name: "no-verify", Usage: "skip the llama.cpp load-and-decode check of OUT"},
		&cli.StringFlag{Name: "quant", Usage: "quantize the merged model to this type (Q8_0, Q4_K_M, IQ4_XS, ...) with llama.cpp's quantizer"},
		&cli.StringFlag{Name: "imatrix-from", Value: string(d.ImatrixFrom), Usage: "with --quant: importance matrix from a calibration pass over the merged model (merged), the original model (original), or none"},
		&cli.StringFlag{Name: "imatrix", Usage: "with --quant: this importance matrix `FILE` of IN (mka-gguf imatrix, or llama.cpp's), instead of --imatrix-from"},
		&cli.BoolFlag{Name: "allow-requantize", Usage: "with --quant: quantize an already quantized IN again (llama.cpp's --allow-requantize; the quality suffers)"},
	}, calibFlags("merge")...)
}()

func init() {
	commands = append(commands, &cli.Command{
		Name:      "merge",
		Usage:     "remove decoder blocks by merging similar neighbours (MKA) or by a pruning baseline",
		ArgsUsage: "IN.gguf OUT.gguf",
		Flags:     mergeFlags,
		Action:    runMerge,
	})
}

// methodNames are the --method values.
func methodNames() []string {
	var s []string
	for _, m := range shrink.Methods {
		s = append(s, string(m))
	}
	return s
}

func alignName(align bool) string {
	if align {
		return "ls"
	}
	return "none"
}

// mergeOptions turns merge's flags into shrink.Options.
func mergeOptions(c *cli.Context) (*shrink.Options, error) {
	o, err := shrinkOptions(c)
	if err != nil {
		return nil, err
	}
	args := posArgs(c)
	if len(args) > 0 {
		o.In = args[0]
	}
	o.Remove, o.Ratio, o.DryRun = c.Int("remove"), c.Float64("ratio"), c.Bool("dry-run")
	o.PlanFile, o.Imatrix, o.MaxKLD, o.AllowRequantize = c.String("plan"), c.String("imatrix"), c.Float64("max-kld"), c.Bool("allow-requantize")
	if len(args) > 1 && !o.DryRun {
		o.Out = args[1]
	}
	if o.Method, err = shrink.ParseMethod(c.String("method")); err != nil {
		return nil, err
	}
	if s := c.String("blocks"); c.IsSet("blocks") {
		if o.Blocks, err = shrink.ParseBlocks(s); err != nil {
			return nil, err
		}
	}
	if s := c.String("target-size"); c.IsSet("target-size") {
		if o.TargetSize, err = shrink.ParseSize(s); err != nil {
			return nil, err
		}
	}
	if o.ImatrixFrom, err = shrink.ParseImatrixFrom(c.String("imatrix-from")); err != nil {
		return nil, err
	}
	o.Align, err = shrink.ParseAlign(c.String("align"))
	return o, err
}

// shrinkOptions turns the flags merge and compare share into
// shrink.Options: all but IN, OUT, --method, --align and the blocks to
// remove.
func shrinkOptions(c *cli.Context) (*shrink.Options, error) {
	o := &shrink.Options{
		Version: version, Candidates: c.Int("candidates"), Race: c.Bool("race"), ScoreAll: c.Bool("score-all"), Holdout: c.Float64("holdout"),
		AlignSamples: c.Int("align-samples"), Heal: c.Bool("heal"), Fast: c.Bool("fast"), Calib: calibSpec(c),
		Quant: c.String("quant"), CheckQuality: !c.Bool("no-check-quality"), Verify: !c.Bool("no-verify"),
		Threads: threads(c), Load: modelParams(), Given: givenFlags(c), Warn: warnf,
		ImatrixFrom: shrink.ImatrixNone, // merge reads --imatrix-from; compare does not quantize
	}
	var err error
	if o.Lambda, err = shrink.ParseLambda(c.String("lambda")); err != nil {
		return nil, err
	}
	if o.Order, err = shrink.ParseOrder(c.String("order")); err != nil {
		return nil, err
	}
	if o.Norms, err = shrink.ParseNorms(c.String("norms")); err != nil {
		return nil, err
	}
	if o.Rho, err = shrink.ParseRho(c.String("rho")); err != nil {
		return nil, err
	}
	if o.AlignTarget, err = shrink.ParseAlignTarget(c.String("align-target")); err != nil {
		return nil, err
	}
	o.Analysis, err = analysisOptions(c)
	return o, err
}

func runMerge(c *cli.Context) error {
	args := posArgs(c)
	if len(args) != 2 {
		return usageError(c, "want IN.gguf OUT.gguf, got %s", argumentCount(len(args)))
	}
	o, err := mergeOptions(c)
	if err != nil {
		return err
	}
	in, out := args[0], args[1]
	outs := files.New(c.Bool("force"), files.Input{What: "IN", Path: in}, files.Input{What: typedName(c, "calib"), Path: c.String("calib")},
		files.Input{What: "--plan", Path: o.PlanFile}, files.Input{What: "--imatrix", Path: o.Imatrix})
	var outF *files.File
	if !o.DryRun {
		outF = outs.File(out, "OUT")
		o.Out = outF.Tmp
	}
	repF := outs.File(c.String("json-file"), typedName(c, "json-file"))
	if err := outs.Begin(); err != nil {
		return err
	}
	defer outs.Cleanup()
	w := textOut(c)
	rep, err := shrink.Run(c.Context, *o, func(r *shrink.Result) {
		fmt.Fprintln(w, strings.TrimRight(r.Plan.String(), "\n"))
		if d := r.Describe(); d != "" {
			fmt.Fprintln(w, d)
		}
	})
	var gate *shrink.GateError
	if errors.As(err, &gate) {
		rep.Output, rep.OutputSHA256 = "", "" // not kept
		if perr := printJSONIf(c, rep); perr != nil {
			return perr
		}
		return err
	}
	if err != nil {
		return err
	}
	if outF != nil {
		rep.Output = out
	}
	if err := outs.CommitJSON(c.Context, repF, rep); err != nil {
		return err
	}
	printMergeResult(w, rep, out)
	return printJSONIf(c, rep)
}

// printMergeResult prints the closing lines of a merge: what was written
// (or predicted, in a dry run), the quality and which original blocks went.
func printMergeResult(w io.Writer, rep *shrink.Report, out string) {
	if rep.DryRun {
		fmt.Fprintf(w, "dry run: %d -> %d blocks; OUT would take %s (%s now)\n", rep.Original, rep.Remaining,
			files.Human(uint64(rep.PredictedBytes)), files.Human(uint64(rep.BytesBefore)))
	} else {
		fmt.Fprintf(w, "wrote %s: %d -> %d blocks, %s -> %s (%.1f%% smaller)\n", out, rep.Original, rep.Remaining,
			files.Human(uint64(rep.BytesBefore)), files.Human(uint64(rep.BytesAfter)), 100*(1-float64(rep.BytesAfter)/float64(rep.BytesBefore)))
	}
	if q := rep.Quality; q != nil && q.Summary != nil {
		fmt.Fprintf(w, "quality lost: %s; PPL %.2f (IN) -> %.2f (OUT) on %s\n", q.Line(), q.BasePPL, q.PPL, q.Text)
		if q.SameTop < 50 && q.KLD < 0.05 {
			fmt.Fprintf(w, "note: IN's next-token distributions on this text are nearly flat (PPL %.0f), so its most probable token is often a near-tie that\n"+
				"  a tiny change flips: \"same top token\" says little here, the mean KLD is the measure\n", q.BasePPL)
		}
	}
	if g := rep.Gate; g != nil {
		fmt.Fprintf(w, "quality gate passed: mean KLD %.4f <= --max-kld %g\n", rep.Quality.KLD, g.MaxKLD)
	}
	fmt.Fprintln(w, shrink.Removed(&merge.Plan{Original: rep.Original, Layout: rep.Layout}))
}
