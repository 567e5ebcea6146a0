package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/calib"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/progress"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/runner"
	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/gguf/synth"
	"github.com/mka-gguf/mka-gguf/internal/benchenv"
	"github.com/mka-gguf/mka-gguf/merge"
	"github.com/mka-gguf/mka-gguf/quant"
	"github.com/mka-gguf/mka-gguf/simd"
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
  quant    llama.cpp quantization MB/s (Q8_0, Q4_K_M) against a copy
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
			&cli.StringFlag{Name: "only", Usage: "parts to run, comma separated: " + strings.Join(benchParts, ", "), DefaultText: "all but merge"},
			&cli.StringFlag{Name: "size", Value: "small", Usage: "generated model: " + strings.Join(benchSizeNames(), ", ")},
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
			jsonFileFlag(false),
			forceFlag(),
			&cli.StringFlag{Name: "dir", Usage: "folder for the generated model and the outputs", DefaultText: "a temporary folder, removed afterwards"},
			threadsFlag,
		},
		Action: runBench,
	})
}

// benchParts are the parts of a bench run, in the order they run.
var benchParts = []string{"decode", "llamacpp", "simd", "rewrite", "quant", "merge"}

// benchSize is a generated model and its default decode tokens.
type benchSize struct {
	name   string
	cfg    synth.Config
	tokens int
}

// benchSizes are the --size choices. small makes the default run take
// about 1-2 minutes on 2 cores.
var benchSizes = []benchSize{
	{"tiny", synth.Config{Arch: "llama", Blocks: 4, Embd: 256, FFN: 768, Heads: 4, KVHeads: 2, Vocab: 512, Ctx: 512, Type: gguf.TypeF16, Seed: 1}, 1024},
	{"small", synth.Config{Arch: "llama", Blocks: 8, Embd: 1024, FFN: 2816, Heads: 16, KVHeads: 4, Vocab: 4096, Ctx: 512, Type: gguf.TypeF16, Seed: 1}, 8192},
	{"1gb", synth.Config{Arch: "llama", Blocks: 9, Embd: 2048, FFN: 5632, Heads: 16, KVHeads: 4, Vocab: 32000, Ctx: 2048, Type: gguf.TypeF16, Seed: 1}, 1024},
	// For the merge part (at least 16 blocks): 1.5 MiB (a whole merge
	// takes seconds), 0.58 GiB, 1.02 GiB.
	{"merge-tiny", synth.Config{Arch: "llama", Blocks: 16, Embd: 64, FFN: 160, Heads: 4, KVHeads: 2, Vocab: 512, Ctx: 512, Type: gguf.TypeF16, Seed: 1}, 1024},
	{"merge512mb", synth.Config{Arch: "llama", Blocks: 16, Embd: 1024, FFN: 4096, Heads: 16, KVHeads: 4, Vocab: 32000, Ctx: 2048, Type: gguf.TypeF16, Seed: 1}, 1024},
	{"merge1gb", synth.Config{Arch: "llama", Blocks: 18, Embd: 1536, FFN: 4096, Heads: 24, KVHeads: 6, Vocab: 32000, Ctx: 2048, Type: gguf.TypeF16, Seed: 1}, 1024},
}

func benchSizeNames() []string {
	var s []string
	for _, z := range benchSizes {
		s = append(s, z.name)
	}
	return s
}

// benchChunkTokens is the length of one decode chunk; runner puts
// 512/128 = 4 chunks in one decode.
const (
	benchChunkTokens = 128
	benchBatchTokens = 512
)

// benchReport is what bench prints with --json. Results are compared
// between commits by name.
type benchReport struct {
	Version    string         `json:"version"`
	Go         string         `json:"go"`
	Platform   string         `json:"platform"`
	CPU        string         `json:"cpu"`         // simd.Describe()
	CPUVariant string         `json:"cpu_variant"` // the ggml CPU code this process runs
	CPUReason  string         `json:"cpu_variant_reason"`
	GoKernels  string         `json:"go_kernels"`
	GPU        []string       `json:"gpu,omitempty"`
	Threads    int            `json:"threads"`
	Rounds     int            `json:"rounds"`
	Model      *benchModel    `json:"model,omitempty"`
	Decode     int            `json:"decode_tokens,omitempty"` // tokens timed per decode measurement
	Results    []benchResult  `json:"results"`
	Against    []benchAgainst `json:"against,omitempty"`
	Merge      *benchMerge    `json:"merge,omitempty"` // the merge part's details and projection
	Seconds    float64        `json:"seconds"`         // wall time of the whole run
}

// benchModel describes the model a run used.
type benchModel struct {
	Path      string `json:"path"`
	Generated string `json:"generated,omitempty"` // the --size, when generated
	Arch      string `json:"arch"`
	Bytes     int64  `json:"bytes"`
	Params    uint64 `json:"params"`
	Blocks    int    `json:"blocks"`
	Embd      int    `json:"embd"`
	FFN       int    `json:"ffn,omitempty"`
	Vocab     int    `json:"vocab,omitempty"`
	Type      string `json:"type,omitempty"`
}

// benchResult is one measurement, with the baseline it is compared with:
// Ratio = Value / BaselineValue. A goal is met when Ratio >= Goal, or
// Ratio <= Goal with AtMost.
type benchResult struct {
	Name          string    `json:"name"`
	Value         float64   `json:"value"`
	Unit          string    `json:"unit"`
	BaselineName  string    `json:"baseline_name,omitempty"`
	BaselineValue float64   `json:"baseline_value,omitempty"`
	Ratio         float64   `json:"ratio,omitempty"`
	Goal          float64   `json:"goal,omitempty"`
	AtMost        bool      `json:"goal_at_most,omitempty"`
	GoalMet       *bool     `json:"goal_met,omitempty"`
	Note          string    `json:"note,omitempty"`
	Samples       []float64 `json:"samples,omitempty"` // every round's value
}

// benchAgainst describes another binary's decode measurement.
type benchAgainst struct {
	Name       string    `json:"name"`
	Bin        string    `json:"bin"`
	Args       []string  `json:"args"`
	Version    string    `json:"version"`
	CPU        string    `json:"cpu"`
	CPUVariant string    `json:"cpu_variant"`
	CPUReason  string    `json:"cpu_variant_reason"`
	Tokens     int       `json:"decode_tokens"`
	Capture    float64   `json:"capture_tok_per_s"` // best of the rounds
	Samples    []float64 `json:"capture_samples"`   // one per round it ran
}

// benchAgainstSpec is one --against.
type benchAgainstSpec struct {
	name, bin string
	pre       []string // global flags before "bench"
	tokens    int
	slow      bool // more than benchSlow times slower: measured once
	res       benchAgainst
}

func runBench(c *cli.Context) error {
	start := time.Now()
	if c.NArg() != 0 {
		return usageError(c, "takes no arguments, got %q", c.Args().First())
	}
	outs := newOutputs(c, namedPath{"--model", c.String("model")})
	jsonF := outs.file(c.String("json-file"), "--json-file")
	if err := outs.begin(); err != nil {
		return err
	}
	defer outs.cleanup()
	parts, err := benchSelect(c.String("only"))
	if err != nil {
		return usageError(c, "%v", err)
	}
	rounds := c.Int("rounds")
	if rounds < 1 {
		return usageError(c, "--rounds must be at least 1")
	}
	var size benchSize
	if c.String("model") == "" {
		i := slices.IndexFunc(benchSizes, func(z benchSize) bool { return z.name == c.String("size") })
		if i < 0 {
			return usageError(c, "unknown --size %q (want %s)", c.String("size"), strings.Join(benchSizeNames(), ", "))
		}
		size = benchSizes[i]
		for _, o := range []struct {
			flag string
			dst  *int
		}{{"blocks", &size.cfg.Blocks}, {"embd", &size.cfg.Embd}, {"ffn", &size.cfg.FFN}, {"vocab", &size.cfg.Vocab}} {
			if c.IsSet(o.flag) {
				if c.Int(o.flag) < 1 {
					return usageError(c, "--%s must be positive", o.flag)
				}
				*o.dst = c.Int(o.flag)
			}
		}
		if c.IsSet("embd") {
			if size.cfg.Embd%64 != 0 {
				return usageError(c, "--embd must be a multiple of 64")
			}
			size.cfg.Heads = size.cfg.Embd / 64
			size.cfg.KVHeads = size.cfg.Heads
			if size.cfg.Heads%4 == 0 {
				size.cfg.KVHeads = size.cfg.Heads / 4
			}
		}
	} else {
		for _, f := range []string{"size", "blocks", "embd", "ffn", "vocab"} {
			if c.IsSet(f) {
				return usageError(c, "--%s describes a generated model; it cannot go with --model", f)
			}
		}
		size.tokens = 1024
	}
	if parts["merge"] && c.String("model") == "" && size.cfg.Blocks <= benchMergeRemove {
		return usageError(c, "the merge part removes %d blocks and the %s model has %d (use --size merge-tiny, merge512mb or merge1gb, or --blocks)", benchMergeRemove, size.name, size.cfg.Blocks)
	}
	tokens := size.tokens
	if c.IsSet("decode-tokens") {
		if tokens = c.Int("decode-tokens"); tokens < 1 {
			return usageError(c, "--decode-tokens must be positive")
		}
	}
	against, err := benchAgainstSpecs(c, tokens)
	if err != nil {
		return err
	}
	if len(against) > 0 && !parts["decode"] {
		return usageError(c, "--against compares decode speed: it needs the decode part in --only")
	}

	b := backends
	n := threads(c)
	rep := &benchReport{
		Version: version, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH,
		CPU: simd.Describe(), CPUVariant: b.CPU, CPUReason: b.Reason, GoKernels: simd.Kernels(), GPU: b.GPU,
		Threads: n, Rounds: rounds, Results: []benchResult{},
	}

	// The model: generated in the work folder, or --model.
	needModel := parts["decode"] || parts["llamacpp"] || parts["rewrite"] || parts["quant"] || parts["merge"]
	dir := c.String("dir")
	if needModel || dir != "" {
		if dir == "" {
			if dir, err = os.MkdirTemp("", "mka-gguf-bench-"); err != nil {
				return err
			}
			defer os.RemoveAll(dir)
		} else if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	var path string
	if needModel {
		path = c.String("model")
		if path == "" {
			path = filepath.Join(dir, "bench-"+size.name+".gguf")
			progress.Printf("bench: generating the %s model (%s) in %s\n", size.name, human(uint64(synth.Size(size.cfg))), dir)
			if err := synth.Write(path, size.cfg); err != nil {
				return err
			}
		}
		if rep.Model, err = benchDescribe(path); err != nil {
			return err
		}
		rep.Model.Generated = size.name
	}

	ctx := c.Context
	if parts["decode"] {
		if err := benchDecode(ctx, rep, path, n, tokens, rounds, c.Bool("capture-only"), against); err != nil {
			return err
		}
	}
	if parts["llamacpp"] {
		if err := benchLlamaCpp(ctx, rep, path, dir, n, rounds); err != nil {
			return err
		}
	}
	if parts["simd"] {
		benchSIMD(ctx, rep)
	}
	if parts["rewrite"] {
		if err := benchRewrite(ctx, rep, path, dir, rounds); err != nil {
			return err
		}
	}
	if parts["quant"] {
		if err := benchQuant(ctx, rep, path, dir, n, rounds); err != nil {
			return err
		}
	}
	if parts["merge"] {
		if err := benchMergeRun(c, rep, path, dir, n); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	rep.Seconds = time.Since(start).Seconds()
	if err := writeJSONTo(jsonF, rep); err != nil {
		return err
	}
	if err := outs.commit(ctx); err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(rep)
	}
	benchHeader(rep)
	benchTable(rep)
	return nil
}

// benchSelect parses --only.
func benchSelect(only string) (map[string]bool, error) {
	parts := map[string]bool{}
	if strings.TrimSpace(only) == "" {
		for _, p := range benchParts {
			parts[p] = p != "merge" // a whole merge: only when asked for
		}
		return parts, nil
	}
	for p := range strings.SplitSeq(only, ",") {
		p = strings.ToLower(strings.TrimSpace(p))
		if !slices.Contains(benchParts, p) {
			return nil, fmt.Errorf("unknown part %q in --only (want %s)", p, strings.Join(benchParts, ", "))
		}
		parts[p] = true
	}
	return parts, nil
}

// benchAgainstSpecs parses --against NAME=BIN (or BIN).
func benchAgainstSpecs(c *cli.Context, tokens int) ([]*benchAgainstSpec, error) {
	var out []*benchAgainstSpec
	for _, a := range c.StringSlice("against") {
		name, bin, ok := strings.Cut(a, "=")
		if !ok {
			name, bin = filepath.Base(a), a
		}
		if name == "" || bin == "" {
			return nil, usageError(c, "--against %q: want NAME=BIN", a)
		}
		if slices.ContainsFunc(out, func(s *benchAgainstSpec) bool { return s.name == name }) {
			return nil, usageError(c, "--against: the name %q is given twice", name)
		}
		s := &benchAgainstSpec{name: name, bin: bin, tokens: tokens}
		if bin == "SELF" {
			exe, err := os.Executable()
			if err != nil {
				return nil, fmt.Errorf("--against %s: %w", a, err)
			}
			s.bin = exe
			s.pre = []string{"--cpu-variant", name}
		} else {
			p, err := exec.LookPath(bin)
			if err != nil {
				return nil, fmt.Errorf("--against %s: %w", a, err)
			}
			if s.bin, err = filepath.Abs(p); err != nil {
				return nil, err
			}
		}
		if name == simd.Builtin {
			// The baseline x86-64 code is tens of times slower; tokens/s
			// does not depend on how many decodes are timed.
			s.tokens = benchBatchTokens
		}
		if c.IsSet("against-tokens") {
			if s.tokens = c.Int("against-tokens"); s.tokens < 1 {
				return nil, usageError(c, "--against-tokens must be positive")
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// benchDescribe reads the facts of a model file for the header.
func benchDescribe(path string) (*benchModel, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := &benchModel{Path: path, Arch: f.Arch(), Bytes: f.Size}
	for _, t := range f.Tensors {
		m.Params += t.Elements()
	}
	get := func(key string) int {
		v, _ := f.Uint(m.Arch + "." + key)
		return int(v)
	}
	m.Blocks, m.Embd, m.FFN = get("block_count"), get("embedding_length"), get("feed_forward_length")
	if i, ok := f.Tensor("token_embd.weight"); ok {
		t := f.Tensors[i]
		m.Type = t.Type.String()
		if len(t.Dims) == 2 {
			m.Vocab = int(t.Dims[1])
		}
	}
	if i, ok := f.Tensor("blk.0.ffn_up.weight"); ok {
		m.Type = f.Tensors[i].Type.String()
	}
	return m, nil
}

func benchHeader(r *benchReport) {
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
			what, m.Arch, m.Blocks, m.Embd, m.FFN, m.Vocab, m.Type, float64(m.Params)/1e6, human(uint64(m.Bytes)), m.Bytes)
	}
	if r.Decode > 0 {
		fmt.Printf("decode          %d tokens timed per measurement (after one untimed decode), %d-token chunks, %d tokens per decode\n", r.Decode, benchChunkTokens, benchBatchTokens)
	}
	fmt.Println()
}

// add appends a result; with a baseline it computes the ratio and whether
// the goal is met.
func (r *benchReport) add(res benchResult) {
	if res.BaselineValue > 0 {
		res.Ratio = res.Value / res.BaselineValue
		if res.Goal > 0 {
			met := res.Ratio >= res.Goal
			if res.AtMost {
				met = res.Ratio <= res.Goal
			}
			res.GoalMet = &met
		}
	}
	r.Results = append(r.Results, res)
}

// best returns the largest value.
func best(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	return slices.Max(v)
}

// benchTokens returns the chunks of a decode measurement: one untimed
// decode, then whole decodes of 4 chunks of 128 tokens holding about tokens
// tokens; the same on every run.
func benchTokens(m *cgo.Model, tokens int) [][]int32 {
	t := min(benchChunkTokens, m.NCtxTrain())
	per := runner.SeqsPerDecode(t, benchBatchTokens)
	n := (1 + max(1, (tokens+per*t-1)/(per*t))) * per
	v := max(m.NVocab()-3, 1)
	chunks := make([][]int32, n)
	for i := range chunks {
		chunks[i] = make([]int32, t)
		for j := range chunks[i] {
			chunks[i][j] = int32(3 + (i*131+j*17)%v)
		}
		if bos := m.BOS(); bos >= 0 {
			chunks[i][0] = bos
		}
	}
	return chunks
}

// decodeClock measures steady-state throughput from runner's progress
// calls: from the end of the first decode to the end of the last. The first
// decode of a fresh llama.cpp context takes about twice as long as the
// others (buffers, graph), which would otherwise make tokens/s depend on how
// many decodes are timed.
type decodeClock struct {
	t           int // tokens per chunk
	start, end  time.Time
	first, last int // chunks done at start and end
}

func (c *decodeClock) tick(done int) {
	now := time.Now()
	if c.start.IsZero() {
		c.start, c.first = now, done
	}
	c.end, c.last = now, done
}

func (c *decodeClock) tokPerSec() (float64, error) {
	sec := c.end.Sub(c.start).Seconds()
	if c.last <= c.first || sec <= 0 {
		return 0, errors.New("decode: fewer than two decodes timed")
	}
	return float64((c.last-c.first)*c.t) / sec, nil
}

// benchSlow is how many times slower than this process an --against binary
// may be and still be measured in every round; at larger ratios a round's
// noise does not matter and a slow binary would take minutes.
const benchSlow = 4

// benchDecode measures bare decode and calibration (decode + capture) on
// the same chunks, alternating, and each --against binary in between.
func benchDecode(ctx context.Context, rep *benchReport, path string, threads, tokens, rounds int, captureOnly bool, against []*benchAgainstSpec) error {
	m, err := cgo.LoadModel(path, modelParams())
	if err != nil {
		return err
	}
	defer m.Close()
	chunks := benchTokens(m, tokens)
	t := len(chunks[0])
	rep.Decode = (len(chunks) - runner.SeqsPerDecode(t, benchBatchTokens)) * t
	bareRun := func() (float64, error) {
		c := decodeClock{t: t}
		_, err := runner.Run(m, chunks, runner.Options{Ctx: ctx, Threads: threads, BatchTokens: benchBatchTokens, Logits: true,
			PlainAttention: true, Progress: func(done int, _ float64) { c.tick(done) }}, nil)
		if err != nil {
			return 0, err
		}
		return c.tokPerSec()
	}
	calibRun := func(keepLogits bool) (float64, error) {
		c := decodeClock{t: t}
		_, err := calib.Run(m, chunks, calib.Options{Context: ctx, Threads: threads, BatchTokens: benchBatchTokens,
			KeepLogits: keepLogits, Progress: func(done, _ int, _ float64) { c.tick(done) }})
		if err != nil {
			return 0, err
		}
		return c.tokPerSec()
	}
	tmp, err := os.MkdirTemp("", "mka-gguf-bench-against-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	// bare: plain decode with logits; hook: the calibration hook on the
	// same graph (its own cost); capture: calibration as merge runs it,
	// which also skips the unused output layer.
	var bare, hook, capture []float64
	for r := range rounds {
		modes := []string{"bare", "hook", "capture"}
		if captureOnly {
			modes = []string{"capture"}
		}
		// Rotate the order so that a drift favours no mode.
		modes = append(modes[r%len(modes):], modes[:r%len(modes)]...)
		for _, mode := range modes {
			var v float64
			var err error
			switch mode {
			case "bare":
				if v, err = bareRun(); err == nil {
					bare = append(bare, v)
				}
			case "hook":
				if v, err = calibRun(true); err == nil {
					hook = append(hook, v)
				}
			default:
				if v, err = calibRun(false); err == nil {
					capture = append(capture, v)
				}
			}
			if err != nil {
				return err
			}
		}
		if captureOnly {
			progress.Printf("bench: decode round %d/%d: capture %.1f tok/s\n", r+1, rounds, capture[r])
		} else {
			progress.Printf("bench: decode round %d/%d: bare %.1f tok/s, hook %.1f tok/s, capture %.1f tok/s\n", r+1, rounds, bare[r], hook[r], capture[r])
		}
		for _, a := range against {
			if a.slow {
				continue
			}
			if err := a.run(ctx, path, threads, tmp); err != nil {
				return err
			}
			v := a.res.Samples[len(a.res.Samples)-1]
			a.slow = v*benchSlow < best(capture)
			more := ""
			if a.slow && r+1 < rounds {
				more = fmt.Sprintf(" (%.1fx slower: not measured again)", best(capture)/v)
			}
			progress.Printf("bench: decode round %d/%d: %s [%s]: capture %.1f tok/s%s\n", r+1, rounds, a.name, a.res.CPUVariant, v, more)
		}
	}
	const captureNote = "calibration: decode + capture hook, output layer skipped"
	if captureOnly {
		rep.add(benchResult{Name: "decode.capture", Value: best(capture), Unit: "tok/s", Samples: capture, Note: captureNote})
	} else {
		rep.add(benchResult{Name: "decode.bare", Value: best(bare), Unit: "tok/s", Samples: bare,
			Note: "llama.cpp decode with logits, no capture, plain attention as calibration"})
		rep.add(benchResult{Name: "decode.hook", Value: best(hook), Unit: "tok/s", Samples: hook,
			BaselineName: "decode.bare", BaselineValue: best(bare), Goal: 0.95, Note: "capture hook on the same graph, logits too"})
		rep.add(benchResult{Name: "decode.capture", Value: best(capture), Unit: "tok/s", Samples: capture,
			BaselineName: "decode.bare", BaselineValue: best(bare), Goal: 0.95, Note: captureNote})
	}
	for _, a := range against {
		rep.Against = append(rep.Against, a.res)
		rep.add(benchResult{Name: "against." + a.name, Value: best(capture), Unit: "tok/s",
			BaselineName: a.name + ".decode.capture", BaselineValue: a.res.Capture,
			Note: fmt.Sprintf("calibration, this [%s] / %s [%s]", rep.CPUVariant, a.name, a.res.CPUVariant)})
	}
	return nil
}

// run runs one round of the other binary's decode benchmark and records
// its result.
func (a *benchAgainstSpec) run(ctx context.Context, model string, threads int, tmp string) error {
	out := filepath.Join(tmp, a.name+".json")
	args := append(slices.Clone(a.pre), "--quiet", "bench", "--only", "decode", "--capture-only", "--model", model,
		"--rounds", "1", "--decode-tokens", fmt.Sprint(a.tokens), "--threads", fmt.Sprint(threads), "--json-file", out)
	cmd := exec.CommandContext(ctx, a.bin, args...)
	// The other binary chooses its own CPU code unless pre forces one.
	cmd.Env = slices.DeleteFunc(os.Environ(), func(e string) bool { return strings.HasPrefix(e, simd.CPUVariantEnv+"=") })
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		msg := strings.TrimSpace(stderr.String())
		if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
			msg = msg[i+1:]
		}
		return fmt.Errorf("--against %s: %s %s: %v: %s", a.name, a.bin, strings.Join(args, " "), err, msg)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		return fmt.Errorf("--against %s: %w", a.name, err)
	}
	var o benchReport
	if err := json.Unmarshal(data, &o); err != nil {
		return fmt.Errorf("--against %s: %s: %w", a.name, out, err)
	}
	var capture float64
	for _, r := range o.Results {
		if r.Name == "decode.capture" {
			capture = r.Value
		}
	}
	if capture <= 0 {
		return fmt.Errorf("--against %s: %s reported no decode.capture result", a.name, out)
	}
	a.res.Name, a.res.Bin, a.res.Args = a.name, a.bin, args
	a.res.Version, a.res.CPU, a.res.CPUVariant, a.res.CPUReason, a.res.Tokens = o.Version, o.CPU, o.CPUVariant, o.CPUReason, o.Decode
	a.res.Capture = max(a.res.Capture, capture)
	a.res.Samples = append(a.res.Samples, capture)
	return nil
}

// benchSIMD compares every Go kernel's selected implementation with the
// pure-Go one (simd.Speedup, slices of 4096 elements).
func benchSIMD(ctx context.Context, rep *benchReport) {
	for kv := range strings.FieldsSeq(simd.Kernels()) {
		if ctx.Err() != nil {
			return
		}
		name, impl, _ := strings.Cut(kv, "=")
		s := simd.Speedup(name, 4096)
		progress.Printf("bench: simd %s (%s): %.2fx pure Go\n", name, impl, s)
		rep.add(benchResult{Name: "simd." + name, Value: s, Unit: "x", BaselineName: "pure Go", BaselineValue: 1,
			Note: impl + ", 4096 elements"})
	}
}

// benchTimed runs f after removing out and returns out's size in MB per
// second of f.
func benchTimed(out string, bytesOf func() (int64, error), f func() error) (float64, error) {
	if err := os.Remove(out); err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, err
	}
	t0 := time.Now()
	if err := f(); err != nil {
		return 0, err
	}
	sec := time.Since(t0).Seconds()
	n, err := bytesOf()
	if err != nil {
		return 0, err
	}
	os.Remove(out)
	return float64(n) / 1e6 / max(sec, 1e-9), nil
}

// benchCases runs named cases round-robin for rounds rounds and returns
// every case's samples.
func benchCases(ctx context.Context, what string, names []string, rounds int, run func(name string) (float64, error)) (map[string][]float64, error) {
	s := map[string][]float64{}
	for r := range rounds {
		var line []string
		for _, n := range names {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			v, err := run(n)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", what, n, err)
			}
			s[n] = append(s[n], v)
			line = append(line, fmt.Sprintf("%s %.0f MB/s", n, v))
		}
		progress.Printf("bench: %s round %d/%d: %s\n", what, r+1, rounds, strings.Join(line, ", "))
	}
	return s, nil
}

// benchRewrite times merge.Rewrite with a one-fusion plan and a one-drop
// plan against a copy (synced, as Rewrite syncs), in MB written per second.
func benchRewrite(ctx context.Context, rep *benchReport, path, dir string, rounds int) error {
	f, err := gguf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	blocks, err := merge.InspectBlocks(f)
	if err != nil {
		return err
	}
	if blocks.Count < 2 {
		return fmt.Errorf("rewrite: %s has %d blocks, needs 2", path, blocks.Count)
	}
	mid := blocks.Count / 2
	plans := map[string][]merge.Step{
		"fuse":  {{Kind: merge.StepFuse, Blocks: [2]int{mid - 1, mid}, Lambda: 0.5}},
		"prune": {{Kind: merge.StepDrop, Blocks: [2]int{mid, mid}}},
	}
	out := filepath.Join(dir, "bench-rewrite.gguf")
	size := func() (int64, error) {
		st, err := os.Stat(out)
		if err != nil {
			return 0, err
		}
		return st.Size(), nil
	}
	s, err := benchCases(ctx, "rewrite", []string{"copy", "fuse", "prune"}, rounds, func(name string) (float64, error) {
		return benchTimed(out, size, func() error {
			if name == "copy" {
				return benchenv.CopyFile(path, out, true)
			}
			p, err := merge.NewPlan(name, blocks.Count, plans[name])
			if err != nil {
				return err
			}
			return merge.Rewrite(ctx, f, blocks, p, out, codecFor(), merge.RewriteOptions{})
		})
	})
	if err != nil {
		return err
	}
	rep.add(benchResult{Name: "rewrite.copy", Value: best(s["copy"]), Unit: "MB/s", Samples: s["copy"],
		Note: "io.Copy + fsync, MB written/s"})
	rep.add(benchResult{Name: "rewrite.fuse", Value: best(s["fuse"]), Unit: "MB/s", Samples: s["fuse"],
		BaselineName: "rewrite.copy", BaselineValue: best(s["copy"]), Note: fmt.Sprintf("blocks %d+%d fused, MB written/s", mid-1, mid)})
	rep.add(benchResult{Name: "rewrite.prune", Value: best(s["prune"]), Unit: "MB/s", Samples: s["prune"],
		BaselineName: "rewrite.copy", BaselineValue: best(s["copy"]), Note: fmt.Sprintf("block %d dropped, MB written/s", mid)})
	return nil
}

// benchQuant times llama.cpp's quantizer (Q8_0, Q4_K_M) against a copy, in
// MB of input per second.
func benchQuant(ctx context.Context, rep *benchReport, path, dir string, threads, rounds int) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	in := func() (int64, error) { return st.Size(), nil }
	out := filepath.Join(dir, "bench-quant.gguf")
	types := []string{"Q8_0", "Q4_K_M"}
	s, err := benchCases(ctx, "quant", append([]string{"copy"}, types...), rounds, func(name string) (float64, error) {
		return benchTimed(out, in, func() error {
			if name == "copy" {
				return benchenv.CopyFile(path, out, false)
			}
			ft, err := quant.Parse(name)
			if err != nil {
				return err
			}
			return quant.File(path, out, ft, quant.Options{Threads: threads})
		})
	})
	if err != nil {
		return err
	}
	rep.add(benchResult{Name: "quant.copy", Value: best(s["copy"]), Unit: "MB/s", Samples: s["copy"], Note: "io.Copy, MB read/s"})
	for _, t := range types {
		rep.add(benchResult{Name: "quant." + t, Value: best(s[t]), Unit: "MB/s", Samples: s[t],
			BaselineName: "quant.copy", BaselineValue: best(s["copy"]), Note: "llama.cpp quantizer, MB read/s"})
	}
	return nil
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
func benchTable(r *benchReport) {
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
