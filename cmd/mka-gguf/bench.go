package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/bench"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/files"
)

func init() {
	commands = append(commands, &cli.Command{
		Name:  "bench",
		Usage: "measure throughput against baselines measured in the same run",
		Description: `Every number is compared with a baseline measured in the same run, on the
same model, and printed as a ratio (never as an absolute-time check):

  decode   calibration tokens/s (llama.cpp decode + the capture hook) against
           the same decodes with no hook (goal: ratio >= 0.95)
  llamacpp eval's perplexity loop and the calibration pass against llama.cpp's
           own llama-perplexity (PATH or $MKA_LLAMA_PERPLEXITY; skipped
           without it): tokens/s on the same model, generated text,
           256-token windows and threads (goal: ratio >= 0.9)
  simd     each Go kernel's selected implementation against the pure-Go one
  rewrite  merge rewrite MB/s (one fusion; one pruned block) against a copy
  quant    llama.cpp quantization MB/s (Q8_0, Q4_K_M) against a copy, and
           the peak memory of "mka-gguf quantize" (a child process) against
           llama.cpp's own llama-quantize (PATH or $MKA_LLAMA_QUANTIZE;
           skipped without it) on the same model, type and threads: VmHWM
           and RssAnon (goal: ratio <= 1.2)
  merge    "merge --remove 4" with default settings (a child process): wall
           time against one calibration pass + one rewrite (goal <= 4),
           bytes written against the output (<= 1.05), peak RSS against the
           tensors + 2 blocks in float32 + 256 MiB (<= 1), and a projection
           for a Llama-3-8B-shaped model; measured once (not --rounds),
           and only when --only names it (sizes merge-tiny, merge512mb,
           merge1gb)

Measurements alternate and the best of --rounds counts. --against NAME=BIN
also runs "BIN bench --only decode --capture-only" on the same model file,
alternating with this process's own decode, and reports this/other for
calibration tokens/s; BIN = SELF is this binary with --cpu-variant NAME
(e.g. builtin=SELF: the baseline x86-64 code of a portable build, which
times a single decode). A binary more than 4 times slower than this one is
measured in the first round only. The model is generated (--size) in a
temporary folder unless --model names one.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "only", Usage: "parts to run, comma separated: " + strings.Join(bench.Parts, ", "), DefaultText: "all but merge"},
			&cli.StringFlag{Name: "size", Value: "small", Usage: "generated model: " + strings.Join(bench.SizeNames(), ", ")},
			&cli.IntFlag{Name: "blocks", Usage: "generated model: decoder blocks", DefaultText: "the size's"},
			&cli.IntFlag{Name: "embd", Usage: "generated model: embedding length, a multiple of 64 (64 per head)", DefaultText: "the size's"},
			&cli.IntFlag{Name: "ffn", Usage: "generated model: feed-forward length", DefaultText: "the size's"},
			&cli.IntFlag{Name: "vocab", Usage: "generated model: vocabulary size", DefaultText: "the size's"},
			&cli.StringFlag{Name: "model", Aliases: []string{"m"}, Usage: "bench this GGUF `FILE` instead of a generated model"},
			&cli.IntFlag{Name: "decode-tokens", Usage: "tokens timed per decode measurement, rounded up to whole decodes of 512", DefaultText: "the size's; 1024 with --model"},
			&cli.IntFlag{Name: "rounds", Value: 3, Usage: "measurements of each case; the best counts"},
			&cli.BoolFlag{Name: "capture-only", Usage: "decode: time only calibration, not bare decode (what an --against binary is asked for)"},
			&cli.StringSliceFlag{Name: "against", Usage: "NAME=BIN: compare calibration tokens/s with another mka-gguf binary (repeatable; BIN SELF: this binary with --cpu-variant NAME)"},
			&cli.IntFlag{Name: "against-tokens", Usage: "tokens timed per decode measurement of each --against binary", DefaultText: "--decode-tokens; 512 for builtin"},
			jsonFlag(),
			jsonFileFlag(),
			forceFlag(),
			&cli.StringFlag{Name: "merge-flags", Usage: "merge: flags added to the child's merge, space separated, e.g. --fast"},
			&cli.StringFlag{Name: "dir", Usage: "folder for the generated model and the outputs", DefaultText: "a temporary folder, removed afterwards"},
			newThreadsFlag(),
		},
		Action: runBench,
	})
}

// benchOptions turns bench's flags into bench.Options.
func benchOptions(c *cli.Context) *bench.Options {
	b := backends
	return &bench.Options{
		Only: c.String("only"), Model: c.String("model"), Size: c.String("size"),
		Blocks: c.Int("blocks"), Embd: c.Int("embd"), FFN: c.Int("ffn"), Vocab: c.Int("vocab"),
		DecodeTokens: c.Int("decode-tokens"), Rounds: c.Int("rounds"), CaptureOnly: c.Bool("capture-only"),
		Against: c.StringSlice("against"), AgainstTokens: c.Int("against-tokens"), Dir: c.String("dir"), Threads: threads(c),
		Version: version, Backends: bench.Backends{CPUVariant: b.CPU, CPUReason: b.Reason, GPU: b.GPU}, Load: modelParams(),
		Global: []string{"--cpu-variant", c.String("cpu-variant"), "--gpu-layers", strconv.Itoa(gpuLayers), "--no-mmap=" + strconv.FormatBool(noMmap)},
		Given:  givenFlags(c), MergeFlags: strings.Fields(c.String("merge-flags")),
	}
}

func runBench(c *cli.Context) error {
	if c.NArg() != 0 {
		return usageError(c, "takes no arguments, got %q", c.Args().First())
	}
	outs := files.New(c.Bool("force"), files.Input{What: typedName(c, "model"), Path: c.String("model")})
	jsonF := outs.File(c.String("json-file"), typedName(c, "json-file"))
	if err := outs.Begin(); err != nil {
		return err
	}
	defer outs.Cleanup()
	rep, err := bench.Run(c.Context, *benchOptions(c))
	if err != nil {
		return err
	}
	if err := outs.CommitJSON(c.Context, jsonF, rep); err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(rep)
	}
	benchHeader(rep)
	benchTable(rep)
	return nil
}

func benchHeader(r *bench.Report) {
	fmt.Printf("mka-gguf bench  %s (%s, %s)\n", r.Version, r.Go, r.Platform)
	fmt.Printf("cpu             %s\n", r.CPU)
	fmt.Printf("cpu variant     %s (%s)\n", r.CPUVariant, r.CPUReason)
	if len(r.GPU) > 0 {
		fmt.Printf("gpu             %s\n", strings.Join(r.GPU, " "))
	}
	fmt.Printf("threads         %d, best of %d rounds\n", r.Threads, r.Rounds)
	if m := r.Model; m != nil {
		what := m.Path
		if m.Generated != "" {
			what = "generated " + m.Generated
		}
		fmt.Printf("model           %s: %s, %d blocks, embd %d, ffn %d, vocab %d, %s, %.1fM params, %s (%d bytes)\n",
			what, m.Arch, m.Blocks, m.Embd, m.FFN, m.Vocab, m.Type, float64(m.Params)/1e6, files.Human(uint64(m.Bytes)), m.Bytes)
	}
	if r.Decode > 0 {
		fmt.Printf("decode          %d tokens timed per measurement (after one untimed decode), %d-token chunks, %d tokens per decode\n", r.Decode, bench.ChunkTokens, bench.BatchTokens)
	}
	fmt.Println()
}

// benchNum formats a value with 3-4 significant digits.
func benchNum(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// benchTable prints the results.
func benchTable(r *bench.Report) {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "name\tvalue\tunit\tbaseline\tratio\tgoal\tmet\tnote")
	for _, res := range r.Results {
		base, ratio, goal, met := "-", "-", "-", "-"
		if res.BaselineName != "" {
			base = res.BaselineName + " " + benchNum(res.BaselineValue)
			ratio = fmt.Sprintf("%.3f", res.Ratio)
		}
		if res.Goal > 0 {
			goal = fmt.Sprintf(">= %.2f", res.Goal)
			if res.AtMost {
				goal = fmt.Sprintf("<= %.2f", res.Goal)
			}
		}
		if res.GoalMet != nil {
			met = map[bool]string{true: "yes", false: "NO"}[*res.GoalMet]
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", res.Name, benchNum(res.Value), res.Unit, base, ratio, goal, met, res.Note)
	}
	w.Flush()
	for _, a := range r.Against {
		fmt.Printf("against %s: %s %s, cpu variant %s (%s), %d tokens timed per measurement, best of %d\n",
			a.Name, a.Bin, a.Version, a.CPUVariant, a.CPUReason, a.Tokens, len(a.Samples))
	}
	if r.Merge != nil {
		benchMergeTable(os.Stdout, r.Merge)
	}
	fmt.Printf("wall time %.1f s\n", r.Seconds)
}

// benchMergeTable prints the merge part's details and its projection.
func benchMergeTable(w io.Writer, bm *bench.Merge) {
	fmt.Fprintf(w, "\nmerge --remove %d: wall %.1f s (child: calibration %.1f s, search %.1f s, rest %.1f s); load %.1f s; %d alignment chunks, %d held-back chunks of %d tokens\n",
		bm.Remove, bm.WallSeconds, bm.ChildCalibSeconds, bm.ChildSearchSeconds, bm.WallSeconds-bm.ChildCalibSeconds-bm.ChildSearchSeconds, bm.LoadSeconds, bm.AlignChunks, bm.HeldChunks, bm.Ctx)
	for i, s := range bm.Steps {
		pass := fmt.Sprintf("pass to blk %d (blocks of %.1f whole chunk decodes)", s.Deepest, s.PassDepth)
		if s.Prefilled {
			pass = "statistics from the calibration pass"
		}
		fmt.Fprintf(w, "  step %d: drop blk %d, %d candidates fitted, %d scored (%d held-back chunks, blocks of %.1f whole decodes), %s: align %.1f s, score %.1f s\n",
			i+1, s.Drop, s.Candidates, s.Scored, s.HeldChunks, s.HeldDepth, pass, s.AlignSeconds, s.ScoreSeconds)
	}
	fmt.Fprintf(w, "  written %d bytes (report %d), output %d bytes; peak RSS %s, limit %s = tensors %s + 2 × %s + 256 MiB; peak anonymous %s (file %s), limit %s\n",
		bm.WrittenBytes, bm.ReportBytes, bm.OutputBytes, files.Human(uint64(bm.PeakRSS)), files.Human(uint64(bm.RSSLimit)), files.Human(uint64(bm.TensorBytes)), files.Human(uint64(bm.BlockF32Bytes)),
		files.Human(uint64(bm.PeakAnon)), files.Human(uint64(bm.PeakFile)), files.Human(uint64(bm.AnonLimit)))
	p := bm.Projection
	if p == nil {
		return
	}
	s := p.Shape
	fmt.Fprintf(w, "\nprojection: merge --remove %d of a %s-shaped F16 model (%d blocks, embd %d, ffn %d, %d/%d heads, vocab %d, %.2fB params, %s) at %.1f GFLOP/s:\n",
		p.Remove, s.Name, s.Blocks, s.Embd, s.FFN, s.Heads, s.KVHeads, s.Vocab, p.Params/1e9, files.Human(uint64(p.Bytes)), p.FLOPRate/1e9)
	for _, ph := range p.Phases {
		fmt.Fprintf(w, "  %-22s %9.0f s  %s\n", ph.Name, ph.Seconds, ph.Note)
	}
	fmt.Fprintf(w, "  %-22s %9.0f s  (%.1f h); calibration pass + rewrite %.0f s: ratio %.2f\n", "total", p.Seconds, p.Seconds/3600, p.Baseline, p.Ratio)
}
