package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/calib"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/files"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/report"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/shrink"
)

func init() {
	flags := append(calibFlags("imatrix"),
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "importance matrix `FILE` to write (GGUF, llama.cpp's imatrix format)", Required: true},
		jsonFlag(),
		jsonFileFlag(),
		forceFlag(),
		modelFlag,
	)
	commands = append(commands, &cli.Command{
		Name:      "imatrix",
		Usage:     "compute an importance matrix on calibration text, as llama.cpp's imatrix tool does",
		ArgsUsage: "MODEL.gguf",
		Flags:     flags,
		Action:    runImatrix,
	})
}

func runImatrix(c *cli.Context) error {
	args := posArgs(c)
	if len(args) != 1 {
		return usageError(c, "want one MODEL.gguf, got %s", argumentCount(len(args)))
	}
	path, out := args[0], c.String("output")
	outs := files.New(c.Bool("force"), files.Input{What: "MODEL", Path: path}, files.Input{What: typedName(c, "calib"), Path: c.String("calib")})
	outF := outs.File(out, typedName(c, "output"))
	jsonF := outs.File(c.String("json-file"), typedName(c, "json-file"))
	if err := outs.Begin(); err != nil {
		return err
	}
	defer outs.Cleanup()
	if err := shrink.CheckModel(path, false); err != nil {
		return err
	}
	spec := calibSpec(c)
	texts, source, err := spec.Texts()
	if err != nil {
		return err
	}
	m, err := cgo.LoadModel(path, modelParams())
	if err != nil {
		return err
	}
	defer m.Close()
	chunks, err := spec.Chunks(m, texts, source, spec.Seed)
	if err != nil {
		return err
	}
	im, err := calib.Imatrix(c.Context, m, chunks, threads(c), spec.Batch)
	if err != nil {
		return err
	}
	im.Datasets = []string{source}
	if len(im.Sums) == 0 {
		return fmt.Errorf("%s: no weight multiplications were seen", path)
	}
	if err := im.Save(outF.Tmp); err != nil {
		return err
	}
	sum, err := files.SHA256(outF.Tmp)
	if err != nil {
		return err
	}
	inSum, err := files.SHA256(path)
	if err != nil {
		return err
	}
	res := imatrixResult{Head: head("imatrix"), In: report.In{Input: path, InputSHA256: inSum}, Out: report.Out{Output: out, OutputSHA256: sum},
		Calibration: &report.Calibration{Path: report.CalibPath(source), Samples: im.Chunks, Ctx: im.ChunkSize, Tokens: im.Chunks * im.ChunkSize, Seed: spec.Seed},
		Weights:     len(im.Sums)}
	if err := outs.CommitJSON(c.Context, jsonF, res); err != nil {
		return err
	}
	fmt.Fprintf(textOut(c), "wrote %s: %d weights, %d chunks × %d tokens\n", out, len(im.Sums), im.Chunks, im.ChunkSize)
	return printJSONIf(c, res)
}

// imatrixResult is what imatrix prints with --json (docs/json.md).
type imatrixResult struct {
	report.Head
	report.In
	report.Out
	Calibration *report.Calibration `json:"calibration"`
	Weights     int                 `json:"weights"` // weight matrices with an entry
}
