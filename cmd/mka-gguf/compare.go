package main

import (
	"fmt"
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
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/ppl"
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
	var aligns []bool
	for _, a := range strings.Split(c.String("align"), ",") {
		switch a {
		case "ls":
			aligns = append(aligns, true)
		case "none":
			aligns = append(aligns, false)
		default:
			return usageError(c, "unknown --align %q (want ls, none or ls,none)", a)
		}
	}
	search := slices.Contains(ms, "mka") && c.String("lambda") == "search"
	edit := false
	for _, m := range ms {
		for _, a := range aligns {
			edit = edit || needsEdit(c, m, a)
		}
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
		return ppl.Measure(m, string(text), ppl.Options{Context: c.Context, Ctx: evalCtx, MaxWindows: c.Int("windows"), Threads: j.threads, BatchTokens: j.batch})
	}
	orig, err := measure(in)
	if err != nil {
		return fmt.Errorf("%s: %w", c.String("text"), err)
	}
	res := compareResults{Input: in, Text: c.String("text"), EvalCtx: evalCtx, Calibration: j.res,
		Original: compareRow{Method: "original", Blocks: j.blocks.Count, File: in, Bytes: j.file.Size, PPL: orig.PPL, StdErr: orig.StdErr}}
	base := strings.TrimSuffix(filepath.Base(in), ".gguf")
	var labels []string
	for _, method := range ms {
		for _, al := range aligns {
			label := method
			if al {
				label += " --align ls"
			}
			labels = append(labels, label)
			for _, n := range counts {
				sr, err := j.shrink(c, method, al, n, opt)
				if err != nil {
					return fmt.Errorf("%s at %d removed: %w", label, n, err)
				}
				p := sr.plan
				name := method
				if al {
					name += "-ls"
				}
				out := filepath.Join(dir, fmt.Sprintf("%s-%s-%d.gguf", base, name, n))
				if err := j.write(c.Context, p, sr.align, out, norms, provenance(sr, sum), true); err != nil {
					return err
				}
				r, err := measure(out)
				if err != nil {
					return fmt.Errorf("%s: %w", out, err)
				}
				st, _ := os.Stat(out)
				row := compareRow{Method: label, Removed: n, Blocks: len(p.Layout), File: out, Bytes: st.Size(), PPL: r.PPL, StdErr: r.StdErr,
					Plan: strings.TrimSpace(p.String()), Align: sr.alignMethod, SearchSeconds: sr.seconds}
				res.Rows = append(res.Rows, row)
				progress.Printf("compare: %s, %d removed: PPL %.3f\n", label, n, r.PPL)
			}
		}
	}
	ms = labels
	printCompareTable(res, counts, ms)
	if err := writeJSON(filepath.Join(dir, "results.json"), res); err != nil {
		return err
	}
	return writeComparePlot(filepath.Join(dir, "ppl.png"), res, ms, base)
}

func printCompareTable(res compareResults, counts []int, ms []string) {
	fmt.Printf("Perplexity on %s (n_ctx %d); original %d blocks: PPL %.3f ± %.3f, %s\n\n",
		filepath.Base(res.Text), res.EvalCtx, res.Original.Blocks, res.Original.PPL, res.Original.StdErr, human(uint64(res.Original.Bytes)))
	head := "| method |"
	sep := "|---|"
	for _, n := range counts {
		head += fmt.Sprintf(" −%d blocks |", n)
		sep += "---:|"
	}
	fmt.Println(head)
	fmt.Println(sep)
	for _, m := range ms {
		line := "| " + m + " |"
		for _, n := range counts {
			for _, r := range res.Rows {
				if r.Method == m && r.Removed == n {
					line += fmt.Sprintf(" %.2f (%s) |", r.PPL, human(uint64(r.Bytes)))
				}
			}
		}
		fmt.Println(line)
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
