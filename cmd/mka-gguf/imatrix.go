package main

import (
	"context"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/calib"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/progress"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/runner"
	"github.com/mka-gguf/mka-gguf/quant"
)

func init() {
	// The calibration flags that mean something here (not --rep, --kernel).
	var flags []cli.Flag
	for _, f := range calibFlags {
		if n := f.Names()[0]; n != "rep" && n != "kernel" {
			flags = append(flags, f)
		}
	}
	flags = append(flags,
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "importance matrix `FILE` to write (GGUF, llama.cpp's imatrix format)", Required: true},
		jsonFlag(),
		jsonFileFlag(false),
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
	outs := newOutputs(c, namedPath{"MODEL", path}, namedPath{"--calib", c.String("calib")})
	outF := outs.file(out, "--output")
	jsonF := outs.file(c.String("json-file"), "--json-file")
	if err := outs.begin(); err != nil {
		return err
	}
	defer outs.cleanup()
	if err := checkModel(path, false); err != nil {
		return err
	}
	texts, source, err := calibTexts(c)
	if err != nil {
		return err
	}
	n := c.Int("samples")
	m, err := cgo.LoadModel(path, modelParams())
	if err != nil {
		return err
	}
	defer m.Close()
	t := min(c.Int("ctx"), m.NCtxTrain())
	chunks, err := calib.Tokens(m, texts, n, t, c.Uint64("seed"))
	if err != nil {
		return fmt.Errorf("%s: %w", source, err)
	}
	im, err := computeImatrix(c.Context, m, chunks, threads(c), c.Int("batch"))
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
	sum, err := fileSHA256(outF.Tmp)
	if err != nil {
		return err
	}
	res := imatrixResult{Model: path, Calibration: source, Output: out, OutputSHA256: sum,
		Weights: len(im.Sums), Chunks: im.Chunks, ChunkSize: im.ChunkSize}
	if err := outs.commitReport(c.Context, jsonF, res); err != nil {
		return err
	}
	fmt.Fprintf(textOut(c), "wrote %s: %d weights, %d chunks × %d tokens\n", out, len(im.Sums), im.Chunks, im.ChunkSize)
	return printJSONIf(c, res)
}

// imatrixResult is what imatrix prints with --json.
type imatrixResult struct {
	Model        string `json:"model"`
	Calibration  string `json:"calibration"`
	Output       string `json:"output"`
	OutputSHA256 string `json:"output_sha256"`
	Weights      int    `json:"weights"`
	Chunks       int    `json:"chunks"`
	ChunkSize    int    `json:"chunk_size"`
}

// computeImatrix decodes the chunks (all of one length, several per decode
// as separate sequences, every token asking for output so that output.weight
// sees all of them) and accumulates the inputs of every weight
// multiplication.
func computeImatrix(ctx context.Context, m *cgo.Model, chunks [][]int32, threads, batchTokens int) (*quant.Imatrix, error) {
	im := quant.NewImatrix()
	if len(chunks) == 0 {
		return im, nil
	}
	bar := progress.New("imatrix", len(chunks), "chunks")
	defer bar.Done()
	_, err := runner.Run(m, chunks, runner.Options{Ctx: ctx, Threads: threads, BatchTokens: batchTokens,
		MatMulInputs: func(w string, cols, rows int, data []float32) bool {
			im.Add(w, cols, rows, data)
			return true
		},
		Progress: func(done int, tps float64) { bar.Set(done, fmt.Sprintf("%.0f tok/s", tps)) },
	}, func(d *runner.Decoded) error {
		im.Chunks += d.Count
		return nil
	})
	if err != nil {
		return nil, err
	}
	im.ChunkSize = len(chunks[0])
	return im, nil
}
