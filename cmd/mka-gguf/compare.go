package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/corpus"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/ppl"
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
}

// compareResults is results.json.
type compareResults struct {
	Input       string       `json:"input"`
	Text        string       `json:"text"`
	EvalCtx     int          `json:"eval_ctx"`
	Original    compareRow   `json:"original"`
	Rows        []compareRow `json:"results"`
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
		return usageError(c, "want one IN.gguf, got %d arguments", len(args))
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
	j, err := prepare(c, in, true, search, edit)
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
	measure := func(path string) (ppl.Result, error) {
		m, err := cgo.LoadModel(path, modelParams())
		if err != nil {
			return ppl.Result{}, err
		}
		defer m.Close()
		return ppl.Measure(m, text, ppl.Options{Context: c.Context, Ctx: evalCtx, MaxWindows: c.Int("windows"), Threads: j.threads, BatchTokens: j.batch})
	}
	orig, err := measure(in)
	if err != nil {
		return fmt.Errorf("%s: %w", c.String("text"), err)
	}
	res := compareResults{Input: in, Text: c.String("text"), EvalCtx: evalCtx, Calibration: j.res,
		Original: compareRow{Method: "original", Blocks: j.blocks.Count, File: in, Bytes: j.file.Size, SHA256: sum, PPL: orig.PPL, StdErr: orig.StdErr}}
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
				if err := j.write(c.Context, p, sr.align, f.Tmp, norms, provenance(sr, sum), true); err != nil {
					return err
				}
				r, err := measure(f.Tmp)
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
					Plan: strings.TrimSpace(p.String()), Align: sr.alignMethod, SearchSeconds: sr.seconds}
				res.Rows = append(res.Rows, row)
				progress.Printf("compare: %s, %d removed: PPL %.3f\n", v.label, n, r.PPL)
			}
		}
	}
	ms = labels
	if err := writeComparePlot(files[compareKey{"plot", 0}].Tmp, res, ms, base); err != nil {
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
// ("results", 0), ("plot", 0) and ("json-file", 0).
type compareKey struct {
	method string
	n      int
}

// compareOutputs declares compare's folder and every file it writes there.
func compareOutputs(c *cli.Context, in, dir, base string, ms []string, counts []int) (*outputSet, map[compareKey]*outFile) {
	outs := newOutputs(c, namedPath{"IN", in}, namedPath{"--calib", c.String("calib")}, namedPath{"--text", c.String("text")})
	outs.dir(dir, "--out")
	files := map[compareKey]*outFile{}
	for _, m := range ms {
		for _, n := range counts {
			name := fmt.Sprintf("%s-%s-%d.gguf", base, m, n)
			files[compareKey{m, n}] = outs.file(filepath.Join(dir, name), "--out file "+name)
		}
	}
	files[compareKey{"results", 0}] = outs.file(filepath.Join(dir, "results.json"), "--out file results.json")
	files[compareKey{"plot", 0}] = outs.file(filepath.Join(dir, "ppl.png"), "--out file ppl.png")
	files[compareKey{"json-file", 0}] = outs.file(c.String("json-file"), "--json-file")
	return outs, files
}

func printCompareTable(w io.Writer, res compareResults, counts []int, ms []string) {
	fmt.Fprintf(w, "Perplexity on %s (n_ctx %d); original %d blocks: PPL %.3f ± %.3f, %s\n\n",
		filepath.Base(res.Text), res.EvalCtx, res.Original.Blocks, res.Original.PPL, res.Original.StdErr, human(uint64(res.Original.Bytes)))
	head := "| method |"
	sep := "|---|"
	for _, n := range counts {
		head += fmt.Sprintf(" −%d blocks |", n)
		sep += "---:|"
	}
	fmt.Fprintln(w, head)
	fmt.Fprintln(w, sep)
	for _, m := range ms {
		line := "| " + m + " |"
		for _, n := range counts {
			for _, r := range res.Rows {
				if r.Method == m && r.Removed == n {
					line += fmt.Sprintf(" %.2f (%s) |", r.PPL, human(uint64(r.Bytes)))
				}
			}
		}
		fmt.Fprintln(w, line)
	}
}

func writeComparePlot(path string, res compareResults, ms []string, title string) error {
	p := plot.New()
	p.Title.Text = "Perplexity after removing blocks — " + title
	p.X.Label.Text = "blocks removed"
	p.Y.Label.Text = "perplexity (held-out text)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	var lines []any
	for _, m := range ms {
		pts := plotter.XYs{{X: 0, Y: res.Original.PPL}}
		for _, r := range res.Rows {
			if r.Method == m {
				pts = append(pts, plotter.XY{X: float64(r.Removed), Y: r.PPL})
			}
		}
		lines = append(lines, m, pts)
	}
	if err := plotutil.AddLinePoints(p, lines...); err != nil {
		return err
	}
	p.Legend.Top = true
	p.Legend.Left = true
	af, err := createAtomic(path)
	if err != nil {
		return err
	}
	defer af.Abort()
	wt, err := p.WriterTo(7*vg.Inch, 4.5*vg.Inch, "png")
	if err != nil {
		return err
	}
	if _, err := wt.WriteTo(af); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return af.Commit()
}
