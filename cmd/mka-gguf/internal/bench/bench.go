// Package bench measures throughput against baselines measured in the
// same run (the bench command): decode with and without the calibration
// hook, the Go kernels, the streaming rewrite, llama.cpp's quantizer and a
// whole merge, each as a ratio, never as an absolute time.
package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/files"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/progress"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/report"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/usage"
	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/gguf/synth"
	"github.com/mka-gguf/mka-gguf/simd"
)

// Options is one bench run.
type Options struct {
	Only  string // the parts, comma separated ("": all but merge)
	Model string // bench this file instead of a generated model
	// Size is the generated model (SizeNames); Blocks, Embd, FFN and
	// Vocab, when not 0, change its shape.
	Size                     string
	Blocks, Embd, FFN, Vocab int
	DecodeTokens             int      // tokens timed per decode measurement (0: the size's; 1024 with Model)
	Rounds                   int      // measurements of each case; the best counts
	CaptureOnly              bool     // decode: time only calibration
	Against                  []string // NAME=BIN: other binaries' calibration speed
	AgainstTokens            int      // tokens timed per measurement of each Against (0: DecodeTokens; 512 for builtin)
	Dir                      string   // work folder ("": a temporary one, removed afterwards)
	Threads                  int

	Version  string          // this binary's, for the report
	Backends Backends        // the ggml backends this process loaded
	Load     cgo.ModelParams // how llama.cpp loads models
	// Global are the global flags of the merge part's child process
	// (--cpu-variant, --gpu-layers), so that it runs as this process does.
	Global []string
	// MergeFlags are merge flags added to the merge part's child, e.g.
	// --fast (the ratio is then that mode's).
	MergeFlags []string
	// Given names the options given on the command line (by flag): a
	// generated model's shape does not go with Model.
	Given map[string]bool
}

// Backends describes the ggml backends of this process for the report.
type Backends struct {
	CPUVariant, CPUReason string
	GPU                   []string
}

// setup is what Options resolve to.
type setup struct {
	parts   map[string]bool
	size    size
	tokens  int
	against []*againstSpec
}

// Validate checks the options before any work.
func (o *Options) Validate() error {
	_, err := o.setup()
	return err
}

// setup checks the options and resolves the parts, the model size, the
// decode tokens and the --against binaries.
func (o *Options) setup() (*setup, error) {
	var s setup
	var err error
	if s.parts, err = ParseParts(o.Only); err != nil {
		return nil, err
	}
	if err := usage.AtLeast("rounds", o.Rounds, 1, "rounds"); err != nil {
		return nil, err
	}
	if err := usage.AtLeast("threads", o.Threads, 1, "threads"); err != nil {
		return nil, err
	}
	if s.size, err = o.modelSize(); err != nil {
		return nil, err
	}
	if s.parts["merge"] && o.Model == "" && s.size.cfg.Blocks <= MergeRemove {
		return nil, usage.Errorf("the merge part removes %d blocks and the %s model has %d (use --size merge-tiny, merge512mb or merge1gb, or --blocks)", MergeRemove, s.size.name, s.size.cfg.Blocks)
	}
	s.tokens = s.size.tokens
	if o.DecodeTokens != 0 || o.Given["decode-tokens"] {
		if s.tokens = o.DecodeTokens; s.tokens < 1 {
			return nil, usage.Errorf("--decode-tokens must be positive")
		}
	}
	if s.against, err = o.parseAgainst(s.tokens); err != nil {
		return nil, err
	}
	if len(s.against) > 0 && !s.parts["decode"] {
		return nil, usage.Errorf("--against compares decode speed: it needs the decode part in --only")
	}
	return &s, nil
}

// modelSize returns the generated model of Size with the shape options,
// or with Model the decode tokens of a given file.
func (o *Options) modelSize() (size, error) {
	if o.Model != "" {
		for _, f := range []string{"size", "blocks", "embd", "ffn", "vocab"} {
			if o.Given[f] {
				return size{}, usage.Errorf("--%s describes a generated model; it cannot go with --model", f)
			}
		}
		return size{tokens: 1024}, nil
	}
	i := slices.IndexFunc(sizes, func(z size) bool { return z.name == o.Size })
	if i < 0 {
		return size{}, usage.Errorf("unknown --size %q (want %s)", o.Size, strings.Join(SizeNames(), ", "))
	}
	z := sizes[i]
	for _, s := range []struct {
		flag string
		v    int
		dst  *int
	}{{"blocks", o.Blocks, &z.cfg.Blocks}, {"embd", o.Embd, &z.cfg.Embd}, {"ffn", o.FFN, &z.cfg.FFN}, {"vocab", o.Vocab, &z.cfg.Vocab}} {
		if s.v != 0 || o.Given[s.flag] {
			if s.v < 1 {
				return size{}, usage.Errorf("--%s must be positive", s.flag)
			}
			*s.dst = s.v
		}
	}
	if o.Embd != 0 {
		if z.cfg.Embd%64 != 0 {
			return size{}, usage.Errorf("--embd must be a multiple of 64")
		}
		z.cfg.Heads = z.cfg.Embd / 64
		z.cfg.KVHeads = z.cfg.Heads
		if z.cfg.Heads%4 == 0 {
			z.cfg.KVHeads = z.cfg.Heads / 4
		}
	}
	return z, nil
}

// Run measures the parts on the model (generated in the work folder, or
// Model) and returns the report.
func Run(ctx context.Context, o Options) (*Report, error) {
	start := time.Now()
	s, err := o.setup()
	if err != nil {
		return nil, err
	}
	rep := &Report{
		Head: report.Head{Version: o.Version, Command: "bench"}, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH,
		CPU: simd.Describe(), CPUVariant: o.Backends.CPUVariant, CPUReason: o.Backends.CPUReason, GoKernels: simd.Kernels(), GPU: o.Backends.GPU,
		Threads: o.Threads, Rounds: o.Rounds, Results: []Result{},
	}
	parts := s.parts
	needModel := parts["decode"] || parts["llamacpp"] || parts["rewrite"] || parts["quant"] || parts["merge"]
	dir := o.Dir
	if needModel || dir != "" {
		if dir == "" {
			if dir, err = os.MkdirTemp("", "mka-gguf-bench-"); err != nil {
				return nil, err
			}
			defer os.RemoveAll(dir)
		} else if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
	}
	var path string
	if needModel {
		if path, err = o.model(s.size, dir); err != nil {
			return nil, err
		}
		if rep.Model, err = describe(path); err != nil {
			return nil, err
		}
		rep.Model.Generated = s.size.name
	}
	mp, n := o.Load, o.Threads
	if parts["decode"] {
		if err := decode(ctx, rep, mp, path, n, s.tokens, o.Rounds, o.CaptureOnly, s.against); err != nil {
			return nil, err
		}
	}
	if parts["llamacpp"] {
		if err := llamaCppPart(ctx, rep, mp, path, dir, n, o.Rounds); err != nil {
			return nil, err
		}
	}
	if parts["simd"] {
		simdPart(ctx, rep)
	}
	if parts["rewrite"] {
		if err := rewritePart(ctx, rep, path, dir, o.Rounds); err != nil {
			return nil, err
		}
	}
	if parts["quant"] {
		if err := quantPart(ctx, &o, rep, path, dir); err != nil {
			return nil, err
		}
	}
	if parts["merge"] {
		if err := mergePart(ctx, &o, rep, path, dir); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rep.Seconds = time.Since(start).Seconds()
	return rep, nil
}

// model returns the model file to bench: Model, or the generated model of
// size z written in dir.
func (o *Options) model(z size, dir string) (string, error) {
	if o.Model != "" {
		return o.Model, nil
	}
	path := filepath.Join(dir, "bench-"+z.name+".gguf")
	progress.Printf("bench: generating the %s model (%s) in %s\n", z.name, files.Human(uint64(synth.Size(z.cfg))), dir)
	return path, synth.Write(path, z.cfg)
}

// Parts are the parts of a bench run, in the order they run.
var Parts = []string{"decode", "llamacpp", "simd", "rewrite", "quant", "merge"}

// size is a generated model and its default decode tokens.
type size struct {
	name   string
	cfg    synth.Config
	tokens int
}

// sizes are the --size choices. small makes the default run take
// about 1-2 minutes on 2 cores.
var sizes = []size{
	{"tiny", synth.Config{Arch: "llama", Blocks: 4, Embd: 256, FFN: 768, Heads: 4, KVHeads: 2, Vocab: 512, Ctx: 512, Type: gguf.TypeF16, Seed: 1}, 1024},
	{"small", synth.Config{Arch: "llama", Blocks: 8, Embd: 1024, FFN: 2816, Heads: 16, KVHeads: 4, Vocab: 4096, Ctx: 512, Type: gguf.TypeF16, Seed: 1}, 8192},
	{"1gb", synth.Config{Arch: "llama", Blocks: 9, Embd: 2048, FFN: 5632, Heads: 16, KVHeads: 4, Vocab: 32000, Ctx: 2048, Type: gguf.TypeF16, Seed: 1}, 1024},
	// For the merge part (at least 16 blocks): 1.5 MiB (a whole merge
	// takes seconds), 0.58 GiB, 1.02 GiB.
	{"merge-tiny", synth.Config{Arch: "llama", Blocks: 16, Embd: 64, FFN: 160, Heads: 4, KVHeads: 2, Vocab: 512, Ctx: 512, Type: gguf.TypeF16, Seed: 1}, 1024},
	{"merge512mb", synth.Config{Arch: "llama", Blocks: 16, Embd: 1024, FFN: 4096, Heads: 16, KVHeads: 4, Vocab: 32000, Ctx: 2048, Type: gguf.TypeF16, Seed: 1}, 1024},
	{"merge1gb", synth.Config{Arch: "llama", Blocks: 18, Embd: 1536, FFN: 4096, Heads: 24, KVHeads: 6, Vocab: 32000, Ctx: 2048, Type: gguf.TypeF16, Seed: 1}, 1024},
}

// SizeNames are the --size values.
func SizeNames() []string {
	var s []string
	for _, z := range sizes {
		s = append(s, z.name)
	}
	return s
}

// ChunkTokens is the length of one decode chunk; runner puts
// 512/128 = 4 chunks in one decode.
const (
	ChunkTokens = 128
	BatchTokens = 512
)

// Report is what bench prints with --json. Results are compared
// between commits by name.
type Report struct {
	report.Head
	Go         string    `json:"go"`
	Platform   string    `json:"platform"`
	CPU        string    `json:"cpu"`         // simd.Describe()
	CPUVariant string    `json:"cpu_variant"` // the ggml CPU code this process runs
	CPUReason  string    `json:"cpu_variant_reason"`
	GoKernels  string    `json:"go_kernels"`
	GPU        []string  `json:"gpu,omitempty"`
	Threads    int       `json:"threads"`
	Rounds     int       `json:"rounds"`
	Model      *Model    `json:"model,omitempty"`
	Decode     int       `json:"decode_tokens,omitempty"` // tokens timed per decode measurement
	Results    []Result  `json:"results"`
	Against    []Against `json:"against,omitempty"`
	Merge      *Merge    `json:"merge,omitempty"` // the merge part's details and projection
	Seconds    float64   `json:"seconds"`         // wall time of the whole run
}

// Model describes the model a run used.
type Model struct {
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

// Result is one measurement, with the baseline it is compared with:
// Ratio = Value / BaselineValue. A goal is met when Ratio >= Goal, or
// Ratio <= Goal with AtMost.
type Result struct {
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

// Against describes another binary's decode measurement.
type Against struct {
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

// againstSpec is one --against.
type againstSpec struct {
	name, bin string
	pre       []string // global flags before "bench"
	tokens    int
	slow      bool // more than slowRatio times slower: measured once
	res       Against
}

// ParseParts parses --only.
func ParseParts(only string) (map[string]bool, error) {
	parts := map[string]bool{}
	if strings.TrimSpace(only) == "" {
		for _, p := range Parts {
			parts[p] = p != "merge" // a whole merge: only when asked for
		}
		return parts, nil
	}
	for p := range strings.SplitSeq(only, ",") {
		p = strings.ToLower(strings.TrimSpace(p))
		if !slices.Contains(Parts, p) {
			return nil, usage.Errorf("unknown part %q in --only (want %s)", p, strings.Join(Parts, ", "))
		}
		parts[p] = true
	}
	return parts, nil
}

// parseAgainst parses --against NAME=BIN (or BIN); tokens is the tokens
// timed per measurement (--against-tokens when given).
func (o *Options) parseAgainst(tokens int) ([]*againstSpec, error) {
	var out []*againstSpec
	for _, a := range o.Against {
		name, bin, ok := strings.Cut(a, "=")
		if !ok {
			name, bin = filepath.Base(a), a
		}
		if name == "" || bin == "" {
			return nil, usage.Errorf("--against %q: want NAME=BIN", a)
		}
		if slices.ContainsFunc(out, func(s *againstSpec) bool { return s.name == name }) {
			return nil, usage.Errorf("--against: the name %q is given twice", name)
		}
		s := &againstSpec{name: name, bin: bin, tokens: tokens}
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
			s.tokens = BatchTokens
		}
		if o.AgainstTokens != 0 || o.Given["against-tokens"] {
			if s.tokens = o.AgainstTokens; s.tokens < 1 {
				return nil, usage.Errorf("--against-tokens must be positive")
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// describe reads the facts of a model file for the header.
func describe(path string) (*Model, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := &Model{Path: path, Arch: f.Arch(), Bytes: f.Size}
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
