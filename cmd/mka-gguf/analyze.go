package main

import (
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/analysis"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/calib"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/files"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/plots"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/report"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/shrink"
)

func init() {
	commands = append(commands, &cli.Command{
		Name:      "analyze",
		Usage:     "measure how similar the decoder blocks are (NPIB, Block Influence, CKA, angular distance)",
		ArgsUsage: "MODEL.gguf",
		Flags: append([]cli.Flag{
			jsonFlag(),
			&cli.StringFlag{Name: "json-file", Usage: "write every matrix and vector, with the settings, to this JSON `FILE`"},
			&cli.StringFlag{Name: "heatmap", Usage: "write a PNG heatmap of the NPIB matrix to this `FILE`"},
			forceFlag(),
			modelFlag,
		}, calibFlags("analyze")...),
		Action: runAnalyze,
	})
}

// analyzeReport is the --json output of analyze (docs/json.md).
type analyzeReport struct {
	report.Head
	report.In
	Calibration *report.Calibration `json:"calibration"`
	Arch        string              `json:"arch"`
	Blocks      int                 `json:"blocks"`
	Embd        int                 `json:"embd"`
	Analysis    *analysis.Analysis  `json:"analysis"`
	HeatmapSHA  string              `json:"heatmap_sha256,omitempty"` // of the --heatmap PNG
}

func runAnalyze(c *cli.Context) error {
	args := posArgs(c)
	if len(args) != 1 {
		return usageError(c, "want one MODEL.gguf, got %s", argumentCount(len(args)))
	}
	path := args[0]
	outs := files.New(c.Bool("force"), files.Input{What: "MODEL", Path: path}, files.Input{What: typedName(c, "calib"), Path: c.String("calib")})
	jsonF := outs.File(c.String("json-file"), typedName(c, "json-file"))
	heatF := outs.File(c.String("heatmap"), "--heatmap")
	if err := outs.Begin(); err != nil {
		return err
	}
	defer outs.Cleanup()
	if err := shrink.CheckModel(path, true); err != nil {
		return err
	}
	spec := calibSpec(c)
	texts, source, err := spec.Texts()
	if err != nil {
		return err
	}
	aopt, err := analysisOptions(c)
	if err != nil {
		return err
	}
	m, err := cgo.LoadModel(path, modelParams())
	if err != nil {
		return err
	}
	defer m.Close()
	res, _, err := spec.Pass(c.Context, m, texts, source, threads(c), nil)
	if err != nil {
		return err
	}
	a, err := analysis.Compute(res, aopt)
	if err != nil {
		return err
	}
	printAnalysis(textOut(c), a, res)

	var heatSHA string
	if heatF != nil {
		if err := plots.Heatmap(heatF.Tmp, a, filepath.Base(path)); err != nil {
			return err
		}
		if heatSHA, err = files.SHA256(heatF.Tmp); err != nil {
			return err
		}
	}
	if jsonF != nil || c.Bool("json") {
		sum, err := files.SHA256(path)
		if err != nil {
			return err
		}
		cal := report.FromCalib(source, res)
		cal.Seconds, cal.TokPerSec = 0, 0 // wall-clock: keep the report reproducible
		rep := analyzeReport{Head: head("analyze"), In: report.In{Input: path, InputSHA256: sum}, Calibration: cal,
			Arch: res.Arch, Blocks: res.Blocks, Embd: res.Embd, Analysis: a, HeatmapSHA: heatSHA}
		if err := outs.CommitJSON(c.Context, jsonF, rep); err != nil {
			return err
		}
		return printJSONIf(c, rep)
	}
	return outs.Commit(c.Context)
}

func printAnalysis(out io.Writer, a *analysis.Analysis, res *calib.Result) {
	fmt.Fprintf(out, "%s, %d blocks, %d samples × %d tokens (%.0f tok/s)\n\n", res.Arch, res.Blocks, res.Samples, res.Ctx, res.TokPerSec)
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "block\tBI\tNPIB next\tCKA next\tangular next\t")
	for i := range a.Blocks {
		np, ck, an := "-", "-", "-"
		if i+1 < a.Blocks {
			np = fmt.Sprintf("%.3f", a.NPIB[i+1][i+2])
			ck = fmt.Sprintf("%.3f", a.CKA[i+1][i+2])
			an = fmt.Sprintf("%.3f", a.Angular[i+1][i+2])
		}
		fmt.Fprintf(w, "%d\t%.4f\t%s\t%s\t%s\t\n", i, a.BI[i], np, ck, an)
	}
	w.Flush()
	fmt.Fprintln(out, "\nadjacent pairs, most similar first (NPIB of block outputs):")
	for k, p := range a.RankedPairs() {
		fmt.Fprintf(out, "  %2d. blk.%d + blk.%d  NPIB %.3f  CKA %.3f\n", k+1, p.A, p.B, p.NPIB, p.CKA)
	}
}
