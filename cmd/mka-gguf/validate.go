package main

// One place that validates every number and choice of a command before any
// work: validateFlags runs as each command's Before (after flag parsing,
// before the action), checks the flags the command has against the ranges
// below, and checks what depends on the model (its training context, its
// block count) from the GGUF metadata, before anything is loaded or
// calibrated. Every message states the valid range.

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/quant"
)

// intRule is the valid range of an integer flag: at least min. onlySet
// flags have a default meaning for their zero value ("all", "a quarter")
// and are checked only when given.
type intRule struct {
	name    string
	min     int
	what    string
	onlySet bool
}

var intRules = []intRule{
	{"ctx", 8, "tokens", false},
	{"eval-ctx", 8, "tokens", false},
	{"samples", 1, "samples", false},
	{"candidates", 1, "candidates per removed block scored on held-back text", false},
	{"align-samples", 1, "calibration samples per alignment pass", false},
	{"batch", 1, "tokens per decode", false},
	{"windows", 1, "windows", true},
	{"threads", 1, "threads", true},
	{"remove", 1, "blocks", true},
	{"blocks", 1, "blocks", true},
	{"rounds", 1, "rounds", false},
}

// enumRule lists the values of a choice flag.
type enumRule struct {
	name   string
	values []string
}

var enumRules = []enumRule{
	{"method", methods},
	{"order", []string{"greedy", "back-to-front"}},
	{"norms", []string{"weighted", "first"}},
	{"imatrix-from", []string{"merged", "original", "none"}},
	{"kernel", []string{"median", "paper"}},
	{"rep", []string{"mean", "last"}},
	{"align-target", []string{"merged", "original"}},
	{"preset", synthPresets},
	{"arch", []string{"llama", "qwen2", "qwen3"}},
}

// synthPresets are synth's --preset values.
var synthPresets = []string{"tiny", "demo", "1gb"}

// manifoldMin is the fewest samples a layer manifold (diffusion map) is
// computed from.
const manifoldMin = 8

// validateFlags checks every flag of the command c before any work; see
// the file comment.
func validateFlags(c *cli.Context) error {
	flag := func(name string) cli.Flag {
		for _, f := range c.Command.Flags {
			if slices.Contains(f.Names(), name) {
				return f
			}
		}
		return nil
	}
	has := func(name string) bool { return flag(name) != nil }
	for _, r := range intRules {
		if _, ok := flag(r.name).(*cli.IntFlag); !ok || (r.onlySet && !c.IsSet(r.name)) {
			continue
		}
		if v := c.Int(r.name); v < r.min {
			return usageError(c, "--%s %d is out of range: want an integer ≥ %d (%s)", r.name, v, r.min, r.what)
		}
	}
	if needsManifold(c) && c.Int("samples") < manifoldMin {
		return usageError(c, "--samples %d is out of range: want ≥ %d (points of each layer's manifold)", c.Int("samples"), manifoldMin)
	}
	for _, r := range enumRules {
		if !has(r.name) || (!c.IsSet(r.name) && c.String(r.name) == "") {
			continue
		}
		if v := c.String(r.name); !slices.Contains(r.values, v) {
			return usageError(c, "--%s %q is not one of %s", r.name, v, strings.Join(r.values, ", "))
		}
	}
	if has("methods") {
		for _, m := range strings.Split(c.String("methods"), ",") {
			if !slices.Contains(methods, m) {
				return usageError(c, "--methods: %q is not one of %s", m, strings.Join(methods, ", "))
			}
		}
	}
	if has("lambda") {
		switch l := c.String("lambda"); l {
		case "search", "paper", "code":
		default:
			if v, err := strconv.ParseFloat(l, 64); err != nil || !(v >= 0 && v <= 1) {
				return usageError(c, "--lambda %q is not search, paper, code or a number in [0, 1]", l)
			}
		}
	}
	if has("align") {
		for _, a := range strings.Split(c.String("align"), ",") {
			if a != "ls" && a != "none" {
				return usageError(c, "--align %q is not one of ls, none", a)
			}
		}
	}
	if has("rho") {
		if _, err := rhoFlag(c); err != nil {
			return err
		}
	}
	if has("holdout") {
		if h := c.Float64("holdout"); !(h > 0 && h <= 0.9) {
			return usageError(c, "--holdout %g is out of range: want a fraction in (0, 0.9]", h)
		}
	}
	if has("ratio") && c.IsSet("ratio") {
		if r := c.Float64("ratio"); !(r > 0 && r < 1) {
			return usageError(c, "--ratio %g is out of range: want a fraction in (0, 1) (blocks removed / blocks)", r)
		}
		if c.IsSet("remove") {
			return usageError(c, "give --remove or --ratio, not both")
		}
	}
	if has("quant") && c.String("quant") != "" {
		if _, err := quant.Parse(c.String("quant")); err != nil {
			return usageError(c, "--quant: %v", err)
		}
	}
	if has("type") && c.String("type") != "" {
		if t := strings.ToUpper(c.String("type")); !slices.Contains([]string{"F32", "F16", "BF16"}, t) {
			return usageError(c, "--type %q is not one of F32, F16, BF16 (synth writes float weights; quantize the model afterwards)", c.String("type"))
		}
	}
	if has("threads") && c.IsSet("threads") {
		if n, most := c.Int("threads"), runtime.NumCPU(); n > most {
			warnf("--threads %d is more than the %d CPUs this process may use; using %d", n, most, most)
			if err := c.Set("threads", strconv.Itoa(most)); err != nil {
				return err
			}
		}
	}
	return validateModel(c, has)
}

// needsManifold reports whether the command computes layer manifolds
// from its calibration samples.
func needsManifold(c *cli.Context) bool {
	switch c.Command.Name {
	case "analyze", "compare":
		return true
	case "merge":
		return c.String("method") != "prune-reverse"
	}
	return false
}

// validateModel checks what depends on the model from its GGUF metadata,
// before it is loaded: --ctx and --eval-ctx are capped at the training
// context (with one warning line when the value was given), and the block
// counts to remove must leave at least one block.
func validateModel(c *cli.Context, has func(string) bool) error {
	switch c.Command.Name {
	case "merge", "analyze", "eval", "compare", "imatrix":
	default:
		return nil
	}
	args := posArgs(c)
	if len(args) == 0 {
		return nil // the action reports the missing argument
	}
	path := args[0]
	f, err := gguf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	arch := f.Arch()
	if train, ok := f.Uint(arch + ".context_length"); ok && train > 0 {
		for _, name := range []string{"ctx", "eval-ctx"} {
			if !has(name) || uint64(c.Int(name)) <= train {
				continue
			}
			if c.IsSet(name) {
				warnf("--%s %d is above %s's training context of %d tokens; using %d", name, c.Int(name), path, train, train)
			}
			if err := c.Set(name, strconv.FormatUint(train, 10)); err != nil {
				return err
			}
		}
	}
	blocks, ok := f.Uint(arch + ".block_count")
	if !ok {
		return nil // merge.InspectBlocks names what is missing
	}
	L := int(blocks)
	switch c.Command.Name {
	case "merge":
		if c.IsSet("ratio") {
			r := c.Float64("ratio")
			if n := int(math.Round(r * float64(L))); n < 1 || n > L-1 {
				return usageError(c, "--ratio %g removes %d of %s's %d blocks; want 1 to %d (a ratio in [%.3g, %.3g])",
					r, n, path, L, L-1, 0.5/float64(L), (float64(L)-1.5)/float64(L))
			}
		}
		if n := c.Int("remove"); c.IsSet("remove") && n > L-1 {
			return usageError(c, "--remove %d is out of range for %s's %d blocks: want 1 to %d", n, path, L, L-1)
		}
		if L < 2 {
			return fmt.Errorf("%s: %d block: nothing can be removed", path, L)
		}
	case "compare":
		counts, err := parseInts(c.String("remove"))
		if err != nil {
			return usageError(c, "--remove: %v", err)
		}
		for _, n := range counts {
			if n > L-1 {
				return usageError(c, "--remove %d is out of range for %s's %d blocks: want 1 to %d", n, path, L, L-1)
			}
		}
	}
	return nil
}

// warnf prints one warning line on stderr.
func warnf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "mka-gguf: warning: %s\n", fmt.Sprintf(format, args...))
}

// modelFlag is llama.cpp's -m: the model, instead of the first argument.
var modelFlag = &cli.StringFlag{Name: "model", Aliases: []string{"m"}, Usage: "the model `FILE`, instead of the first argument (llama.cpp's -m)"}

// posArgs returns the command's file arguments, with --model (-m) first
// when given.
func posArgs(c *cli.Context) []string {
	args := c.Args().Slice()
	if m := c.String("model"); m != "" {
		args = append([]string{m}, args...)
	}
	return args
}
