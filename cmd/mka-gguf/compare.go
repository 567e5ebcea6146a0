package main

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/compare"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/files"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/plots"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/shrink"
)

func init() {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "text", Required: true, Usage: "held-out text `FILE` for perplexity (never the calibration text)"},
		&cli.StringFlag{Name: "remove", Value: "1,2", Usage: "comma-separated block counts to remove, each 1 to blocks−1"},
		&cli.StringFlag{Name: "methods", Value: strings.Join(methodNames(), ","), Usage: "comma-separated methods"},
		&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Value: "mka-compare", Usage: "output `FOLDER` for the merged models, results.json, ppl.png, kld.png and, with --choices, accuracy.png (made when missing, removed again if compare fails)"},
		&cli.IntFlag{Name: "eval-ctx", Value: 512, Usage: "perplexity window, ≥ 8 (capped at the model's training context)"},
		&cli.IntFlag{Name: "windows", Aliases: []string{"chunks"}, Usage: "score at most this many perplexity windows per model, ≥ 1", DefaultText: "all"},
		jsonFlag(),
		jsonFileFlag(),
		&cli.StringFlag{Name: "base", Usage: "model the KL divergence is measured against (default: IN)"},
		&cli.IntFlag{Name: "base-top", Value: 1024, Usage: "keep the N most probable tokens of each base distribution and their tail mass (0: all; vocabularies of up to 4096 tokens are always kept whole)"},
		&cli.StringFlag{Name: "choices", Usage: "multiple-choice tasks (see eval --choices) scored for every model"},
		&cli.IntFlag{Name: "tasks", Usage: "with --choices: score at most the first N tasks", DefaultText: "all"},
	}
	// merge's flags but those of one merge's output (compare writes every
	// merged model unquantized, verifies and measures each) and of the
	// blocks to remove.
	for _, f := range mergeFlags {
		switch f.Names()[0] {
		case "remove", "ratio", "blocks", "target-size", "plan", "dry-run", "json-file", "method", "json",
			"quant", "imatrix-from", "imatrix", "allow-requantize", "no-check-quality", "no-verify", "max-kld":
			continue
		}
		flags = append(flags, f)
	}
	commands = append(commands, &cli.Command{
		Name:      "compare",
		Usage:     "merge with every method at every removal count from one calibration pass, and compare perplexities",
		ArgsUsage: "IN.gguf",
		Flags:     flags,
		Action:    runCompare,
	})
}

// compareOptions turns compare's flags into compare.Options.
func compareOptions(c *cli.Context) (*compare.Options, error) {
	mo, err := shrinkOptions(c)
	if err != nil {
		return nil, err
	}
	if args := posArgs(c); len(args) > 0 {
		mo.In = args[0]
	}
	delete(mo.Given, "remove") // compare's --remove is the list Counts, not merge's
	o := &compare.Options{Merge: *mo, Text: c.String("text"), EvalCtx: c.Int("eval-ctx"), Windows: c.Int("windows"),
		Base: c.String("base"), BaseTop: c.Int("base-top"), Choices: c.String("choices"), Tasks: c.Int("tasks"), Dir: c.String("out")}
	if o.Methods, err = shrink.ParseMethods(c.String("methods")); err != nil {
		return nil, err
	}
	if o.Aligns, err = compare.ParseAligns(c.String("align")); err != nil {
		return nil, err
	}
	o.Counts, err = compare.ParseCounts(c.String("remove"))
	return o, err
}

func runCompare(c *cli.Context) error {
	args := posArgs(c)
	if len(args) != 1 {
		return usageError(c, "want one IN.gguf, got %s", argumentCount(len(args)))
	}
	o, err := compareOptions(c)
	if err != nil {
		return err
	}
	in, dir := args[0], o.Dir
	base := strings.TrimSuffix(filepath.Base(in), ".gguf")
	vs := o.Variants()
	outs, fs := compareOutputs(c, in, dir, base, vs, o.Counts)
	if err := outs.Begin(); err != nil {
		return err
	}
	defer outs.Cleanup()
	res, err := compare.Run(c.Context, *o, func(v compare.Variant, n int) *files.File { return fs[compareKey{v.Name, n}] })
	if err != nil {
		return err
	}
	res.Head, res.Output = head("compare"), dir
	var labels []string
	for _, v := range vs {
		labels = append(labels, v.Label)
	}
	pictures := map[string]string{}
	for _, name := range plotFiles(c) {
		pictures[name] = fs[compareKey{name, 0}].Tmp
	}
	if err := plots.Compare(pictures, res, labels, base); err != nil {
		return err
	}
	for _, k := range []string{"results", "json-file"} {
		if err := files.WriteJSON(fs[compareKey{k, 0}], res); err != nil {
			return err
		}
	}
	if err := outs.Commit(c.Context); err != nil {
		return err
	}
	printCompareTable(textOut(c), res, o.Counts, labels)
	return printJSONIf(c, res)
}

// plotFiles are the pictures compare draws: ppl.png, kld.png and, with
// --choices, accuracy.png.
func plotFiles(c *cli.Context) []string {
	if c.String("choices") != "" {
		return []string{"ppl.png", "kld.png", "accuracy.png"}
	}
	return []string{"ppl.png", "kld.png"}
}

// compareKey names one output of compare: a variant and removal count, or
// ("results", 0), a plot's file name and ("json-file", 0).
type compareKey struct {
	name string
	n    int
}

// compareOutputs declares compare's folder and every file it writes there.
func compareOutputs(c *cli.Context, in, dir, base string, vs []compare.Variant, counts []int) (*files.Set, map[compareKey]*files.File) {
	outs := files.New(c.Bool("force"), files.Input{What: "IN", Path: in}, files.Input{What: typedName(c, "calib"), Path: c.String("calib")},
		files.Input{What: typedName(c, "text"), Path: c.String("text")}, files.Input{What: "--base", Path: c.String("base")},
		files.Input{What: "--choices", Path: c.String("choices")})
	outs.Dir(dir, "--out")
	fs := map[compareKey]*files.File{}
	for _, v := range vs {
		for _, n := range counts {
			name := fmt.Sprintf("%s-%s-%d.gguf", base, v.Name, n)
			fs[compareKey{v.Name, n}] = outs.File(filepath.Join(dir, name), "--out file "+name)
		}
	}
	fs[compareKey{"results", 0}] = outs.File(filepath.Join(dir, "results.json"), "--out file results.json")
	for _, name := range plotFiles(c) {
		fs[compareKey{name, 0}] = outs.File(filepath.Join(dir, name), "--out file "+name)
	}
	fs[compareKey{"json-file", 0}] = outs.File(c.String("json-file"), typedName(c, "json-file"))
	return outs, fs
}

func printCompareTable(w io.Writer, res *compare.Results, counts []int, ms []string) {
	o := res.Original
	fmt.Fprintf(w, "Quality on %s (n_ctx %d) against %s; original %d blocks, %s: PPL %.3f ± %.3f\n\n",
		filepath.Base(res.Text), res.EvalCtx, filepath.Base(res.Base), o.Blocks, files.Human(uint64(o.Bytes)), o.PPL, o.StdErr)
	acc := res.Choices != ""
	head, sep := "| method | removed | size | PPL | mean KLD | same top |", "|---|---:|---:|---:|---:|---:|"
	if acc {
		head, sep = head+" cloze acc (norm) |", sep+"---:|"
	}
	fmt.Fprintln(w, head)
	fmt.Fprintln(w, sep)
	line := func(r compare.Row) {
		l := fmt.Sprintf("| %s | %d | %s | %.2f | %.4f ± %.4f | %.2f %% |", r.Method, r.Removed, files.Human(uint64(r.Bytes)), r.PPL, r.KLD, r.KLDErr, r.SameTop)
		if acc {
			l += fmt.Sprintf(" %.1f ± %.1f %% |", r.AccNorm, r.AccNormErr)
		}
		fmt.Fprintln(w, l)
	}
	line(o)
	for _, m := range ms {
		for _, n := range counts {
			for _, r := range res.Rows {
				if r.Method == m && r.Removed == n {
					line(r)
				}
			}
		}
	}
}
