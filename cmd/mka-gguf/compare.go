package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/corpus"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/progress"
)

func init() {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "text", Required: true, Usage: "held-out text `FILE` for perplexity (never the calibration text)"},
		&cli.StringFlag{Name: "remove", Value: "1,2", Usage: "comma-separated block counts to remove, each 1 to blocks−1"},
		&cli.StringFlag{Name: "methods", Value: strings.Join(methods, ","), Usage: "comma-separated methods"},
		&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Value: "mka-compare", Usage: "`FOLDER` for the merged models, results.json and ppl.png (made when missing, removed again if compare fails)"},
		&cli.IntFlag{Name: "eval-ctx", Value: 512, Usage: "perplexity window, ≥ 8 (capped at the model's training context)"},
		&cli.IntFlag{Name: "windows", Aliases: []string{"chunks"}, Usage: "score at most this many perplexity windows per model, ≥ 1", DefaultText: "all"},
		jsonFlag(),
		jsonFileFlag(false),
	}
	flags = append(flags, compareQualityFlags...)
	for _, f := range mergeFlags {
		switch f.Names()[0] {
		case "remove", "ratio", "dry-run", "report", "method", "json":
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

// compareRow is one (method, removed) result.
type compareRow struct {
	Method  string  `json:"method"`
	Removed int     `json:"removed"`
	Blocks  int     `json:"blocks"`
	File    string  `json:"file"`
	Bytes   int64   `json:"bytes"`
	SHA256  string  `json:"sha256"`
	PPL     float64 `json:"ppl"`
	StdErr  float64 `json:"ppl_stderr"`
	Plan    string  `json:"plan"`
	Align   string  `json:"align,omitempty"`
	// SearchSeconds is the search and alignment time after calibration.
	SearchSeconds float64 `json:"search_seconds,omitempty"`
	qualityFigures
}

// compareResults is results.json.
type compareResults struct {
	Input       string       `json:"input"`
	Text        string       `json:"text"`
	EvalCtx     int          `json:"eval_ctx"`
	Original    compareRow   `json:"original"`
	Rows        []compareRow `json:"results"`
	Base        string       `json:"base"`              // the KLD's reference model
	Choices     string       `json:"choices,omitempty"` // multiple-choice tasks
	Calibration any          `json:"calibration"`
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v < 1 {
			return nil, fmt.Errorf("%q is not a positive block count", f)
		}
		out = append(out, v)
	}
	return out, nil
}

func runCompare(c *cli.Context) error {
	args := posArgs(c)
	if len(args) != 1 {
		return usageError(c, "want one IN.gguf, got %s", argumentCount(len(args)))
	}
	in := args[0]
	counts, err := parseInts(c.String("remove"))
	if err != nil {
		return usageError(c, "--remove: %v", err)
	}
	ms := strings.Split(c.String("methods"), ",")
	text, err := corpus.ReadText(c.String("text"))
	if err != nil {
		return err
	}
	vs, err := compareVariants(c, ms)
	if err != nil {
		return err
	}
	dir := c.String("out")
	base := strings.TrimSuffix(filepath.Base(in), ".gguf")
	var names []string
	for _, v := range vs {
		names = append(names, v.name)
	}
	outs, files := compareOutputs(c, in, dir, base, names, counts)
	if err := outs.begin(); err != nil {
		return err
	}
	defer outs.cleanup()
	norms, err := normRule(c)
	if err != nil {
		return err
	}
	opt, err := mkaOptions(c)
	if err != nil {
		return err
	}
	search := slices.Contains(ms, "mka") && c.String("lambda") == "search"
	edit := false
	for _, v := range vs {
		edit = edit || needsEdit(c, v.method, v.align)
	}
	j, err := prepare(c, in, true, search, edit, false)
	if err != nil {
		return err
	}
	defer j.close()
	for _, n := range counts {
		if n >= j.blocks.Count {
			return usageError(c, "cannot remove %d of %d blocks", n, j.blocks.Count)
		}
	}
	sum, err := fileSHA256(in)
	if err != nil {
		return err
	}
	evalCtx := min(c.Int("eval-ctx"), j.model.NCtxTrain())
	q, err := newQuality(c, in, dir, text, evalCtx, c.Int("windows"), j.threads, j.batch)
	if err != nil {
		return fmt.Errorf("%s: %w", c.String("text"), err)
	}
	defer q.close()
	orig, err := q.original(in)
	if err != nil {
		return fmt.Errorf("%s: %w", c.String("text"), err)
	}
	res := compareResults{Input: in, Text: c.String("text"), EvalCtx: evalCtx, Calibration: j.res, Base: q.basePath, Choices: c.String("choices"),
		Original: compareRow{Method: "original", Blocks: j.blocks.Count, File: in, Bytes: j.file.Size, SHA256: sum, PPL: orig.PPL, StdErr: orig.StdErr,
			qualityFigures: orig.qualityFigures}}
	var labels []string
	for _, v := range vs {
		{
			labels = append(labels, v.label)
			for _, n := range counts {
				sr, err := j.shrink(c, v.method, v.align, n, opt)
				if err != nil {
					return fmt.Errorf("%s at %d removed: %w", v.label, n, err)
				}
				p := sr.plan
				f := files[compareKey{v.name, n}]
				if err := j.write(c.Context, sr, f.Tmp, norms, provenance(sr, sum), true); err != nil {
					return err
				}
				r, err := q.measure(f.Tmp)
				if err != nil {
					return fmt.Errorf("%s: %w", f.Path, err)
				}
				st, err := os.Stat(f.Tmp)
				if err != nil {
					return err
				}
				fsum, err := fileSHA256(f.Tmp)
				if err != nil {
					return err
				}
				row := compareRow{Method: v.label, Removed: n, Blocks: len(p.Layout), File: f.Path, Bytes: st.Size(), SHA256: fsum, PPL: r.PPL, StdErr: r.StdErr,
					Plan: strings.TrimSpace(p.String()), Align: sr.alignMethod, SearchSeconds: sr.seconds, qualityFigures: r.qualityFigures}
				res.Rows = append(res.Rows, row)
				progress.Printf("compare: %s, %d removed: PPL %.3f, KLD %.4f, same top %.2f %%\n", v.label, n, r.PPL, r.KLD, r.SameTop)
			}
		}
	}
	ms = labels
	plots := map[string]string{}
	for _, name := range plotFiles(c) {
		plots[name] = files[compareKey{name, 0}].Tmp
	}
	if err := writeComparePlots(plots, res, ms, base); err != nil {
		return err
	}
	for _, k := range []string{"results", "json-file"} {
		if err := writeJSONTo(files[compareKey{k, 0}], res); err != nil {
			return err
		}
	}
	if err := outs.commit(c.Context); err != nil {
		return err
	}
	printCompareTable(textOut(c), res, counts, ms)
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

// compareVariant is one row of compare: a method with or without
// alignment, its label in the table and its name in file names.
type compareVariant struct {
	method, label, name string
	align               bool
}

// compareVariants crosses --methods with --align (ls, none or both).
func compareVariants(c *cli.Context, ms []string) ([]compareVariant, error) {
	var vs []compareVariant
	for _, m := range ms {
		for _, a := range strings.Split(c.String("align"), ",") {
			switch a {
			case "ls":
				vs = append(vs, compareVariant{method: m, label: m + " --align ls", name: m + "-ls", align: true})
			case "none":
				vs = append(vs, compareVariant{method: m, label: m, name: m})
			default:
				return nil, usageError(c, "unknown --align %q (want ls, none or ls,none)", a)
			}
		}
	}
	return vs, nil
}

// compareKey names one output of compare: a method and removal count, or
// ("results", 0), a plot's file name and ("json-file", 0).
type compareKey struct {
	method string
	n      int
}

// compareOutputs declares compare's folder and every file it writes there.
func compareOutputs(c *cli.Context, in, dir, base string, ms []string, counts []int) (*outputSet, map[compareKey]*outFile) {
	outs := newOutputs(c, namedPath{"IN", in}, namedPath{"--calib", c.String("calib")}, namedPath{"--text", c.String("text")},
		namedPath{"--base", c.String("base")}, namedPath{"--choices", c.String("choices")})
	outs.dir(dir, "--out")
	files := map[compareKey]*outFile{}
	for _, m := range ms {
		for _, n := range counts {
			name := fmt.Sprintf("%s-%s-%d.gguf", base, m, n)
			files[compareKey{m, n}] = outs.file(filepath.Join(dir, name), "--out file "+name)
		}
	}
	files[compareKey{"results", 0}] = outs.file(filepath.Join(dir, "results.json"), "--out file results.json")
	for _, name := range plotFiles(c) {
		files[compareKey{name, 0}] = outs.file(filepath.Join(dir, name), "--out file "+name)
	}
	files[compareKey{"json-file", 0}] = outs.file(c.String("json-file"), "--json-file")
	return outs, files
}
