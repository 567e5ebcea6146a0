package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/analysis"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/calib"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/corpus"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/kld"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/pipeline"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/progress"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/runner"
	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/merge"
	"github.com/mka-gguf/mka-gguf/quant"
)

// methods are the --method values.
var methods = []string{"mka", "prune-reverse", "prune-bi", "prune-angular"}

var mergeFlags = append([]cli.Flag{
	&cli.StringFlag{Name: "method", Value: "mka", Usage: "mka | prune-reverse | prune-bi | prune-angular"},
	&cli.IntFlag{Name: "remove", Aliases: []string{"n"}, Usage: "blocks to remove, 1 to blocks−1", DefaultText: "a quarter of them, at least 1"},
	&cli.Float64Flag{Name: "ratio", Usage: "fraction of blocks to remove, in (0, 1) (removed / original, as in the MKA paper)", DefaultText: "none"},
	&cli.StringFlag{Name: "lambda", Value: "search", Usage: "fusion weight: search (pick by held-back calibration loss), paper (λ = similarity), code (the published code's rule) or a number in [0,1]"},
	&cli.IntFlag{Name: "candidates", Value: 6, Usage: "with --lambda search (≥ 1): candidates per removed block that the cheap filter (alignment residual) sends to the final round, scored by held-back loss"},
	&cli.StringFlag{Name: "align", Value: "ls", Usage: "fold a least-squares alignment into the block before each removed one (ls) or not (none)"},
	&cli.StringFlag{Name: "rho", Value: "1e-3", Usage: "ridge of the alignment, relative to tr(XᵀX)/d: a number ≥ 0"},
	&cli.StringFlag{Name: "align-target", Value: "merged", Usage: "alignment target: the removed block's output in the model as merged so far (merged) or in the original model (original: one more decode per alignment batch)"},
	&cli.IntFlag{Name: "align-samples", Value: 64, Usage: "calibration samples used by each alignment pass (at most --samples)"},
	&cli.BoolFlag{Name: "race", Value: true, Usage: "race the candidates on held-back text: all on the first 6 of 16 chunks, the best 3 on all 16, and stop one once its loss, paired by chunk, is 3 standard errors above the leader's minus 0.002 nats/token (--race=false scores each in full)"},
	&cli.BoolFlag{Name: "score-all", Usage: "score every candidate on held-back text, not only the filter's best (measures the filter's agreement)"},
	&cli.StringFlag{Name: "order", Value: "greedy", Usage: "pair order for mka: greedy (most similar pair anywhere) or back-to-front (the paper)"},
	&cli.StringFlag{Name: "norms", Value: "weighted", Usage: "norm weights of a fused block: weighted (like every tensor) or first (keep the first block's)"},
	&cli.Float64Flag{Name: "holdout", Value: 0.15, Usage: "fraction of the calibration text held back to score λ candidates, in (0, 0.9]"},
	&cli.BoolFlag{Name: "dry-run", Usage: "print the plan and write nothing"},
	&cli.StringFlag{Name: "report", Aliases: []string{"json-file"}, Usage: "write a JSON report of the plan, λ search and sizes to this `FILE`"},
	jsonFlag(),
	forceFlag(),
	modelFlag,
	&cli.BoolFlag{Name: "no-check-quality", Usage: "skip the closing KL divergence of OUT against IN on held-back calibration text"},
	&cli.BoolFlag{Name: "no-verify", Usage: "skip the llama.cpp load-and-decode check of OUT"},
	&cli.StringFlag{Name: "quant", Usage: "quantize the merged model to this type (Q8_0, Q4_K_M, IQ4_XS, ...) with llama.cpp's quantizer"},
	&cli.StringFlag{Name: "imatrix-from", Value: "merged", Usage: "with --quant: importance matrix from a calibration pass over the merged model (merged), the original model (original), or none"},
}, calibFlags...)

func init() {
	commands = append(commands, &cli.Command{
		Name:      "merge",
		Usage:     "remove decoder blocks by merging similar neighbours (MKA) or by a pruning baseline",
		ArgsUsage: "IN.gguf OUT.gguf",
		Flags:     mergeFlags,
		Action:    runMerge,
	})
}

// mergeReport is the --report JSON.
type mergeReport struct {
	Version       string                `json:"mka_gguf_version"`
	Input         string                `json:"input"`
	InputSHA256   string                `json:"input_sha256"`
	Output        string                `json:"output,omitempty"`
	OutputSHA256  string                `json:"output_sha256,omitempty"`
	Method        string                `json:"method"`
	Original      int                   `json:"blocks_before"`
	Remaining     int                   `json:"blocks_after"`
	Steps         []reportStep          `json:"steps"`
	Layout        [][]merge.Weighted    `json:"layout"`
	Search        []pipeline.StepReport `json:"search,omitempty"`
	Align         string                `json:"align"`
	SearchSeconds float64               `json:"search_seconds,omitempty"`
	// Quality is OUT's KL divergence from IN on held-back calibration text.
	Quality       *kld.Summary  `json:"quality,omitempty"`
	Calibration   *calib.Result `json:"calibration,omitempty"`
	BytesBefore   int64         `json:"bytes_before"`
	BytesAfter    int64         `json:"bytes_after,omitempty"`
	Quant         string        `json:"quant,omitempty"`
	BitsPerWeight float64       `json:"bits_per_weight,omitempty"`
	Imatrix       string        `json:"imatrix,omitempty"`
	Seconds       float64       `json:"seconds"`
}

// mergeJob holds what one merge needs; compare reuses it.
type mergeJob struct {
	in     string
	file   *gguf.File
	blocks *merge.Blocks
	model  *cgo.Model // loaded only when calibration is needed
	res    *calib.Result
	an     *analysis.Analysis
	held   [][]int32 // held-back chunks for the λ search
	align  [][]int32 // calibration chunks for the alignment passes
	// prefill is the search's first alignment pass, made during the
	// calibration pass (nil when the method has no search or no alignment).
	prefill *pipeline.Prefill
	// statsBytes bounds the alignment statistics of one pass: one block in
	// float32, at least minStatsBytes. The memory budget beyond the model
	// is two blocks in float32 and 256 MiB (issue 11); the other block is
	// the weight edits' working set and the alignments kept.
	statsBytes int64
	ref        *kld.Reference // IN's distributions for the quality check (keepReference)
	// checkQuality: the closing quality check runs (OUT is written and
	// --no-check-quality is not set); the search may make it (shrink).
	checkQuality bool
	threads      int
	batch        int
	ctx          context.Context // cancelled by Ctrl-C
}

func (j *mergeJob) close() {
	j.prefill.Close()
	j.model.Close()
	if j.file != nil {
		j.file.Close()
	}
}

// removeCount turns --remove / --ratio into a block count.
func removeCount(c *cli.Context, blocks int) (int, error) {
	n := c.Int("remove")
	if r := c.Float64("ratio"); r != 0 {
		if n != 0 {
			return 0, usageError(c, "give --remove or --ratio, not both")
		}
		if !(r > 0 && r < 1) {
			return 0, usageError(c, "--ratio %g is not in (0, 1)", r)
		}
		n = int(math.Round(r * float64(blocks)))
	}
	if n == 0 {
		n = max(1, blocks/4)
	}
	if n < 1 || n >= blocks {
		return 0, usageError(c, "cannot remove %d of %d blocks", n, blocks)
	}
	return n, nil
}

// minStatsBytes is the least the alignment statistics may take (of the
// 256 MiB beyond the model that the memory budget allows), so that small
// models give every candidate statistics.
const minStatsBytes = 64 << 20

// blockF32Bytes returns the size of block 0's tensors in float32.
func blockF32Bytes(f *gguf.File) int64 {
	var n int64
	for _, t := range f.Tensors {
		if strings.HasPrefix(t.Name, "blk.0.") {
			n += int64(t.Elements()) * 4
		}
	}
	return n
}

// checkSpace reports when the output folder has less free space than need.
func checkSpace(out string, need int64) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(out), &st); err != nil {
		return nil // unknown: let the write report it
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	if free < need+need/50 {
		return fmt.Errorf("%s: not enough disk space: need %s, %s free in %s", out, human(uint64(need)), human(uint64(free)), filepath.Dir(out))
	}
	return nil
}

// prepare opens IN, checks its structure and, when the method needs it,
// runs the calibration pass and the analysis.
//
// With needEdit the model is loaded with writable weights (the in-memory
// search and alignment edit it) and the alignment chunks are tokenized.
//
// With prefill the calibration pass also makes the search's first
// alignment pass (pipeline.Prefill).
func prepare(c *cli.Context, in string, needCalib, needHeld, needEdit, prefill bool) (*mergeJob, error) {
	f, err := gguf.Open(in)
	if err != nil {
		return nil, err
	}
	j := &mergeJob{in: in, file: f, threads: threads(c), batch: c.Int("batch"), ctx: c.Context}
	if j.blocks, err = merge.InspectBlocks(f); err != nil {
		j.close()
		return nil, err
	}
	j.statsBytes = max(blockF32Bytes(f), minStatsBytes)
	if !needCalib {
		return j, nil
	}
	samples, source, err := calibSamples(c)
	if err != nil {
		j.close()
		return nil, err
	}
	var held []corpus.Sample
	if needHeld {
		samples, held = corpus.Split(samples, c.Float64("holdout"), c.Uint64("seed"))
	}
	mp := modelParams()
	mp.NoMmap = needEdit
	if j.model, err = cgo.LoadModel(in, mp); err != nil {
		j.close()
		return nil, err
	}
	var chunks [][]int32
	var observe func(t, n int) *pipeline.Prefill
	if prefill && needEdit {
		observe = func(t, n int) *pipeline.Prefill {
			j.prefill = pipeline.NewPrefill(j.model, t, n, c.Int("align-samples"), runner.SeqsPerDecode(t, j.batch), j.threads, j.statsBytes, c.Int("candidates"))
			return j.prefill
		}
	}
	if j.res, chunks, err = calibrate(c, j.model, texts(samples), source, observe); err != nil {
		j.close()
		return nil, err
	}
	if j.an, err = analysis.Compute(j.res, analyzeOptions(c)); err != nil {
		j.close()
		return nil, err
	}
	if needEdit {
		// The alignment passes decode the first --align-samples calibration
		// chunks.
		j.align = chunks[:max(1, min(c.Int("align-samples"), len(chunks)))]
		if j.prefill != nil {
			j.align = j.prefill.AlignChunks(chunks)
		}
	}
	if needHeld {
		t := j.res.Ctx
		n := 16
		var short *calib.TooShortError
		for ; n >= 2; n /= 2 {
			if j.held, err = calib.Tokens(j.model, texts(held), n, t, c.Uint64("seed")); !errors.As(err, &short) {
				break
			}
		}
		if err != nil {
			j.close()
			if errors.As(err, &short) {
				return nil, fmt.Errorf("%s: held-back text for the λ search: %w (raise --holdout or give more text)", source, err)
			}
			return nil, fmt.Errorf("%s: held-back text for the λ search: %w", source, err)
		}
	}
	return j, nil
}

// mkaOptions reads --order and a rule-based --lambda.
func mkaOptions(c *cli.Context) (merge.MKAOptions, error) {
	var o merge.MKAOptions
	switch c.String("order") {
	case "greedy":
		o.Order = merge.OrderGreedy
	case "back-to-front":
		o.Order = merge.OrderBackToFront
	default:
		return o, usageError(c, "unknown --order %q (want greedy or back-to-front)", c.String("order"))
	}
	switch l := c.String("lambda"); l {
	case "search", "paper":
		o.Lambda = merge.LambdaPaper
	case "code":
		o.Lambda = merge.LambdaCode
	default:
		v, err := strconv.ParseFloat(l, 64)
		if err != nil || v < 0 || v > 1 {
			return o, usageError(c, "--lambda %q is not search, paper, code or a number in [0,1]", l)
		}
		o.Lambda, o.Fixed = merge.LambdaFixed, v
	}
	return o, nil
}

// plan builds the plan of one method.
func (j *mergeJob) plan(method string, n int, opt merge.MKAOptions) (*merge.Plan, error) {
	L := j.blocks.Count
	switch method {
	case "prune-reverse":
		return merge.PlanPruneReverse(L, n)
	case "prune-bi":
		return merge.PlanPruneBI(j.an.BI, n)
	case "prune-angular":
		return merge.PlanPruneAngular(j.an.AngularMatrix(), L, n)
	case "mka":
		return merge.PlanMKA(j.an.BlockSimilarity(), n, opt)
	}
	return nil, fmt.Errorf("unknown method %q (want %s)", method, strings.Join(methods, ", "))
}

// provenance returns the mka.* keys recorded in the output.
func provenance(sr *shrinkResult, srcSHA string) []gguf.KV {
	method, p := sr.method, sr.plan
	var lambdas []float32
	var layout []string
	for _, st := range p.Steps {
		if st.Kind == merge.StepFuse {
			lambdas = append(lambdas, float32(st.Lambda))
		}
	}
	for o, ws := range p.Layout {
		parts := make([]string, len(ws))
		for i, w := range ws {
			parts[i] = fmt.Sprintf("%d:%.4f", w.Block, w.W)
		}
		layout = append(layout, fmt.Sprintf("%d=%s", o, strings.Join(parts, "+")))
	}
	kvs := []gguf.KV{
		{Key: "mka.version", Value: gguf.String(version)},
		{Key: "mka.method", Value: gguf.String(method)},
		{Key: "mka.source_sha256", Value: gguf.String(srcSHA)},
		{Key: "mka.source_block_count", Value: gguf.Uint32(uint32(p.Original))},
		{Key: "mka.layout", Value: gguf.Strings(layout)},
	}
	if len(lambdas) > 0 {
		kvs = append(kvs, gguf.KV{Key: "mka.lambdas", Value: gguf.Float32s(lambdas)})
	}
	kvs = append(kvs, gguf.KV{Key: "mka.align.method", Value: gguf.String(sr.alignMethod)})
	if sr.alignMethod != "none" && len(sr.steps) > 0 {
		var res []float32
		var rho float32
		tokens := 0
		for _, st := range sr.steps {
			res = append(res, float32(st.Residual))
			rho, tokens = float32(st.Rho), max(tokens, st.Tokens)
		}
		kvs = append(kvs,
			gguf.KV{Key: "mka.align.residuals", Value: gguf.Float32s(res)},
			gguf.KV{Key: "mka.align.rho", Value: gguf.Float32(rho)},
			gguf.KV{Key: "mka.align.tokens", Value: gguf.Uint32(uint32(tokens))})
	}
	return kvs
}

// write rewrites the model to out through a temporary file beside it,
// checks that llama.cpp loads and decodes the temporary file, and only then
// renames it to out.
func (j *mergeJob) write(ctx context.Context, sr *shrinkResult, out string, norms merge.NormRule, meta []gguf.KV, verify bool) error {
	p := sr.plan
	total := merge.OutputSize(j.file, j.blocks, p)
	if err := checkSpace(out, total); err != nil {
		return err
	}
	return writeVerified(ctx, out, "written", len(p.Layout), verify, func(tmp string) error {
		bar := progress.New("write", int(total>>20)+1, "MiB")
		defer bar.Done()
		opt := merge.RewriteOptions{Norms: norms, Metadata: meta, Align: sr.align,
			Progress: func(done, _ int64) { bar.Set(int(done>>20), "") }}
		// The folds run on the product the search folded with in memory
		// (pipeline.Editor.UseProduct), so that the file is that model.
		if prod, err := cgo.NewProduct(j.threads); err == nil {
			defer prod.Close()
			opt.Product = prod.Compute
		}
		return merge.Rewrite(ctx, j.file, j.blocks, p, tmp, codecFor(), opt)
	})
}

// verifyModel loads path with llama.cpp, checks its block count, decodes a
// few tokens and checks the logits are finite.
func verifyModel(path string, blocks int) error {
	m, err := cgo.LoadModel(path, modelParams())
	if err != nil {
		return err
	}
	defer m.Close()
	if m.NLayer() != blocks {
		return fmt.Errorf("llama.cpp sees %d blocks, want %d", m.NLayer(), blocks)
	}
	toks, err := m.Tokenize("Once upon a time, there was a", m.AddBOS(), false)
	if err != nil {
		return err
	}
	ok := true
	_, err = runner.Run(m, [][]int32{toks}, runner.Options{Threads: 1, Logits: true}, func(d *runner.Decoded) error {
		for k := range toks {
			for _, v := range d.Logits(0, k) {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					ok = false
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("non-finite logits")
	}
	return nil
}

func runMerge(c *cli.Context) error {
	start := time.Now()
	// The search's large, short-lived d×d buffers (alignment solves) would
	// let Go's heap grow to twice what is live; a lower GC target keeps the
	// peak memory near the model plus its working set (issue 11's budget).
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	args := posArgs(c)
	if len(args) != 2 {
		return usageError(c, "want IN.gguf OUT.gguf, got %s", argumentCount(len(args)))
	}
	in, out := args[0], args[1]
	outs := newOutputs(c, namedPath{"IN", in}, namedPath{"--calib", c.String("calib")})
	var outF *outFile
	if !c.Bool("dry-run") {
		outF = outs.file(out, "OUT")
	}
	repF := outs.file(c.String("report"), "--report")
	if err := outs.begin(); err != nil {
		return err
	}
	defer outs.cleanup()
	method := c.String("method")
	if !slices.Contains(methods, method) {
		return usageError(c, "unknown --method %q (want %s)", method, strings.Join(methods, ", "))
	}
	norms, err := normRule(c)
	if err != nil {
		return err
	}
	opt, err := mkaOptions(c)
	if err != nil {
		return err
	}
	if err := checkQuantFlags(c); err != nil {
		return err
	}
	align, err := alignMode(c)
	if err != nil {
		return err
	}
	if c.Bool("dry-run") && method != "mka" {
		// A baseline's plan does not depend on the alignment: a dry run
		// skips its calibration passes.
		align = false
	}
	search := method == "mka" && c.String("lambda") == "search"
	edit := needsEdit(c, method, align)
	j, err := prepare(c, in, method != "prune-reverse" || edit, search, edit, search && align)
	if err != nil {
		return err
	}
	defer j.close()
	if j.res != nil {
		// The analysis has what it needs from the per-sample hidden
		// states; the search does not use them (memory).
		j.res.Mean, j.res.Last = nil, nil
	}
	n, err := removeCount(c, j.blocks.Count)
	if err != nil {
		return err
	}
	j.checkQuality = outF != nil && !c.Bool("no-check-quality")
	sr, err := j.shrink(c, method, align, n, opt)
	if err != nil {
		return err
	}
	p := sr.plan
	fmt.Fprintln(textOut(c), strings.TrimRight(p.String(), "\n"))
	if d := sr.describe(); d != "" {
		fmt.Fprintln(textOut(c), d)
	}

	sum, err := fileSHA256(in)
	if err != nil {
		return err
	}
	rep := mergeReport{Version: version, Input: in, InputSHA256: sum, Method: method, Original: p.Original,
		Remaining: len(p.Layout), Steps: reportSteps(p.Steps), Layout: p.Layout, Search: sr.steps, Align: sr.alignMethod, Calibration: j.res,
		BytesBefore: j.file.Size, SearchSeconds: sr.seconds}
	if sr.seconds > 0 {
		progress.Printf("search and alignment: %.1f s after calibration\n", sr.seconds)
	}
	var wrote string
	if j.checkQuality && sr.quality == nil && j.model != nil {
		if err := j.keepReference(c); err != nil {
			return err
		}
	}
	// IN is not needed any more (the write streams from the file): closed
	// before OUT's load check, the two are never in memory together.
	j.model.Close()
	j.model = nil
	if outF != nil {
		if q := c.String("quant"); q != "" {
			if err := j.writeQuantized(c, sr, outF.Tmp, norms, provenance(sr, sum), q, &rep); err != nil {
				return err
			}
		} else if err := j.write(c.Context, sr, outF.Tmp, norms, provenance(sr, sum), !c.Bool("no-verify")); err != nil {
			return err
		}
		st, err := os.Stat(outF.Tmp)
		if err != nil {
			return err
		}
		if rep.OutputSHA256, err = fileSHA256(outF.Tmp); err != nil {
			return err
		}
		rep.Output, rep.BytesAfter = out, st.Size()
		wrote = fmt.Sprintf("wrote %s: %d -> %d blocks, %s -> %s (%.1f%% smaller)", out, p.Original, len(p.Layout),
			human(uint64(j.file.Size)), human(uint64(st.Size())), 100*(1-float64(st.Size())/float64(j.file.Size)))
		switch {
		case sr.quality != nil:
			// The search's last round scored the merged model against IN
			// on the held-back text (the same model as OUT, within float
			// rounding: pipeline.TestSearchQualityEqualsFile).
			rep.Quality = sr.quality
			wrote += "\nquality lost: " + sr.quality.Line() + " of OUT against IN on " + j.qualityText()
		case j.checkQuality:
			q, err := j.quality(c, outF.Tmp)
			if err != nil {
				return err
			}
			rep.Quality = &q
			wrote += "\nquality lost: " + q.Line() + " of OUT against IN on " + j.qualityText()
		}
	}
	rep.Seconds = time.Since(start).Seconds()
	if err := outs.commitReport(c.Context, repF, rep); err != nil {
		return err
	}
	if wrote != "" {
		fmt.Fprintln(textOut(c), wrote)
	}
	return printJSONIf(c, rep)
}

// checkQuantFlags validates --quant and --imatrix-from before any work.
func checkQuantFlags(c *cli.Context) error {
	from := c.String("imatrix-from")
	if from != "merged" && from != "original" && from != "none" {
		return usageError(c, "--imatrix-from %q is not merged, original or none", from)
	}
	q := c.String("quant")
	if q == "" {
		return nil
	}
	ft, err := quant.Parse(q)
	if err != nil {
		return usageError(c, "--quant: %v", err)
	}
	if from == "none" && ft.NeedsImatrix {
		return fmt.Errorf("%s needs an importance matrix; use --imatrix-from merged or original", ft.Name)
	}
	return nil
}

// writeQuantized fuses into a temporary F32/F16 GGUF beside out, computes
// an importance matrix (from the merged or the original model), quantizes
// with llama.cpp's quantizer into another temporary file, checks it with
// llama.cpp and renames it to out. Temporary files are removed on success,
// error and Ctrl-C.
func (j *mergeJob) writeQuantized(c *cli.Context, sr *shrinkResult, out string, norms merge.NormRule, meta []gguf.KV, typ string, rep *mergeReport) error {
	p := sr.plan
	ft, err := quant.Parse(typ)
	if err != nil {
		return err
	}
	from := c.String("imatrix-from")
	fused := tempBeside(out, "mka-fused")
	defer os.Remove(fused)
	stages := 3
	if from == "none" {
		stages = 2
	}
	progress.Printf("[1/%d] merge: %d -> %d blocks\n", stages, p.Original, len(p.Layout))
	if err := j.write(c.Context, sr, fused, norms, meta, false); err != nil {
		return err
	}
	var imat map[string][]float32
	if from != "none" {
		src := fused
		if from == "original" {
			src = j.in
		}
		progress.Printf("[2/%d] importance matrix from the %s model\n", stages, from)
		m, err := cgo.LoadModel(src, modelParams())
		if err != nil {
			return err
		}
		texts, source, err := calibTexts(c)
		if err == nil {
			var chunks [][]int32
			t := min(c.Int("ctx"), m.NCtxTrain())
			if chunks, err = calib.Tokens(m, texts, c.Int("samples"), t, c.Uint64("seed")); err != nil {
				err = fmt.Errorf("%s: %w", source, err)
			} else {
				var im *quant.Imatrix
				if im, err = computeImatrix(c.Context, m, chunks, j.threads, j.batch); err == nil {
					imat = im.Values()
				}
			}
		}
		m.Close()
		if err != nil {
			return err
		}
		rep.Imatrix = from
	}
	if err := c.Context.Err(); err != nil {
		return err
	}
	progress.Printf("[%d/%d] quantize: %s with llama.cpp's quantizer (importance matrix: %s)\n", stages, stages, ft.Name, from)
	if err := writeVerified(c.Context, out, "quantized", len(p.Layout), !c.Bool("no-verify"), func(tmp string) error {
		return quant.File(fused, tmp, ft, quant.Options{Threads: j.threads, Imatrix: imat})
	}); err != nil {
		return err
	}
	rep.Quant = ft.Name
	if f, err := gguf.Open(out); err == nil {
		if s, err := f.Summary(); err == nil {
			rep.BitsPerWeight = s.BitsPerWeight
		}
		f.Close()
	}
	return nil
}

func normRule(c *cli.Context) (merge.NormRule, error) {
	switch c.String("norms") {
	case "weighted":
		return merge.NormsWeighted, nil
	case "first":
		return merge.NormsFirst, nil
	}
	return 0, usageError(c, "unknown --norms %q (want weighted or first)", c.String("norms"))
}

// qualityChunks returns the chunks the closing quality check scores: the
// held-back calibration chunks of the search, or else 8 chunks of the
// calibration text drawn with another seed.
func (j *mergeJob) qualityChunks(c *cli.Context, m *cgo.Model) ([][]int32, error) {
	if len(j.held) > 0 {
		return j.held, nil
	}
	tx, source, err := calibTexts(c)
	if err != nil {
		return nil, err
	}
	chunks, err := calib.Tokens(m, tx, 8, min(c.Int("ctx"), m.NCtxTrain()), c.Uint64("seed")+1)
	if err != nil {
		return nil, fmt.Errorf("%s: quality check: %w", source, err)
	}
	return chunks, nil
}

// qualityText names the text of the quality check.
func (j *mergeJob) qualityText() string {
	if len(j.held) > 0 {
		return "held-back calibration text"
	}
	return "calibration text"
}

// referenceTopK is how many tokens of IN's distributions the quality
// check keeps (all of them for vocabularies up to 4096).
func referenceTopK(vocab int) int {
	if vocab <= 4096 {
		return 0
	}
	return 1024
}

// keepReference decodes the quality check's chunks with IN (j.model, as the
// file holds it) and keeps IN's distributions in memory, then closes IN, so
// that IN and OUT are never loaded together (peak memory).
func (j *mergeJob) keepReference(c *cli.Context) error {
	chunks, err := j.qualityChunks(c, j.model)
	if err != nil {
		return err
	}
	bar := progress.New("quality check: IN's distributions", len(chunks), "chunks")
	j.ref, err = kld.NewReference(j.model, chunks, kld.Options{Context: j.ctx, Threads: j.threads, BatchTokens: j.batch,
		TopK: referenceTopK(j.model.NVocab()), Progress: func(done, _ int) { bar.Set(done, "") }})
	bar.Done()
	if err != nil {
		return err
	}
	j.model.Close()
	j.model = nil
	return nil
}

// quality returns the KL divergence of the model at path (OUT's temporary
// file) from IN, on qualityChunks, every position scored: against the
// reference kept by keepReference, or else decoding IN alongside.
func (j *mergeJob) quality(c *cli.Context, path string) (kld.Summary, error) {
	out, err := cgo.LoadModel(path, modelParams())
	if err != nil {
		return kld.Summary{}, err
	}
	defer out.Close()
	opt := kld.Options{Context: j.ctx, Threads: j.threads, BatchTokens: j.batch}
	if j.ref != nil {
		return kld.CompareReference(j.ref, out, opt)
	}
	base := j.model
	if base == nil {
		m, err := cgo.LoadModel(j.in, modelParams())
		if err != nil {
			return kld.Summary{}, err
		}
		defer m.Close()
		base = m
	}
	chunks, err := j.qualityChunks(c, base)
	if err != nil {
		return kld.Summary{}, err
	}
	return kld.Compare(base, out, chunks, opt)
}
