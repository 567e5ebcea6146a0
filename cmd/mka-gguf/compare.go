package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/progress"
)

func init() {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "text", Required: true, Usage: "held-out text for perplexity (never the calibration text)"},
		&cli.StringFlag{Name: "remove", Value: "1,2", Usage: "comma-separated block counts to remove"},
		&cli.StringFlag{Name: "methods", Value: strings.Join(methods, ","), Usage: "comma-separated methods"},
		&cli.StringFlag{Name: "out", Value: "mka-compare", Usage: "folder for the merged models, results.json and ppl.png"},
		&cli.IntFlag{Name: "eval-ctx", Value: 512, Usage: "perplexity window (capped at the model's context)"},
		&cli.IntFlag{Name: "windows", Usage: "score at most this many perplexity windows per model (default: all)"},
	}
	flags = append(flags, compareQualityFlags...)
	for _, f := range mergeFlags {
		switch f.Names()[0] {
		case "remove", "ratio", "dry-run", "report", "force", "method":
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
	PPL     float64 `json:"ppl"`
	StdErr  float64 `json:"ppl_stderr"`
	Plan    string  `json:"plan"`
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
	if c.NArg() != 1 {
		return usageError(c, "want one IN.gguf, got %d arguments", c.NArg())
	}
	in := c.Args().First()
	counts, err := parseInts(c.String("remove"))
	if err != nil {
		return usageError(c, "--remove: %v", err)
	}
	ms := strings.Split(c.String("methods"), ",")
	for _, m := range ms {
		if !slices.Contains(methods, m) {
			return usageError(c, "unknown method %q (want %s)", m, strings.Join(methods, ", "))
		}
	}
	text, err := os.ReadFile(c.String("text"))
	if err != nil {
		return fmt.Errorf("read text: %w", err)
	}
	norms, err := normRule(c)
	if err != nil {
		return err
	}
	opt, err := mkaOptions(c)
	if err != nil {
		return err
	}
	dir := c.String("out")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	search := slices.Contains(ms, "mka") && c.String("lambda") == "search"
	j, err := prepare(c, in, true, search)
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
	q, err := newQuality(c, in, dir, string(text), evalCtx, c.Int("windows"), j.threads, j.batch)
	if err != nil {
		return fmt.Errorf("%s: %w", c.String("text"), err)
	}
	defer q.close()
	orig, err := q.original(in)
	if err != nil {
		return fmt.Errorf("%s: %w", c.String("text"), err)
	}
	res := compareResults{Input: in, Text: c.String("text"), EvalCtx: evalCtx, Calibration: j.res, Base: q.basePath, Choices: c.String("choices"),
		Original: compareRow{Method: "original", Blocks: j.blocks.Count, File: in, Bytes: j.file.Size, PPL: orig.PPL, StdErr: orig.StdErr,
			qualityFigures: orig.qualityFigures}}
	base := strings.TrimSuffix(filepath.Base(in), ".gguf")
	for _, method := range ms {
		for _, n := range counts {
			o := opt
			var trials []lambdaTrial
			var cleanup func()
			if method == "mka" && search {
				if o.Choose, cleanup, err = j.searchChooser(c.Context, c.Int("candidates"), dir, norms, &trials); err != nil {
					return err
				}
			}
			p, err := j.plan(method, n, o)
			if cleanup != nil {
				cleanup()
			}
			if err != nil {
				return fmt.Errorf("%s at %d removed: %w", method, n, err)
			}
			out := filepath.Join(dir, fmt.Sprintf("%s-%s-%d.gguf", base, method, n))
			if err := j.write(c.Context, p, out, norms, provenance(method, p, sum), true); err != nil {
				return err
			}
			r, err := q.measure(out)
			if err != nil {
				return fmt.Errorf("%s: %w", out, err)
			}
			st, _ := os.Stat(out)
			row := compareRow{Method: method, Removed: n, Blocks: len(p.Layout), File: out, Bytes: st.Size(), PPL: r.PPL, StdErr: r.StdErr,
				Plan: strings.TrimSpace(p.String()), qualityFigures: r.qualityFigures}
			res.Rows = append(res.Rows, row)
			progress.Printf("compare: %s, %d removed: PPL %.3f, KLD %.4f, same top %.2f %%\n", method, n, r.PPL, r.KLD, r.SameTop)
		}
	}
	printCompareTable(res, counts, ms)
	if err := writeJSON(filepath.Join(dir, "results.json"), res); err != nil {
		return err
	}
	return writeComparePlots(dir, res, ms, base)
}
