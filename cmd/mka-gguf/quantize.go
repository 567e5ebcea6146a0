package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/files"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/shrink"
	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/quant"
)

func init() {
	commands = append(commands, &cli.Command{
		Name:      "quantize",
		Usage:     "quantize a GGUF model with llama.cpp's quantizer (" + strings.Join(quant.Names()[:8], ", ") + ", ...)",
		ArgsUsage: "IN.gguf OUT.gguf TYPE",
		Flags: []cli.Flag{
			newThreadsFlag(),
			&cli.BoolFlag{Name: "allow-requantize", Usage: "allow requantizing already quantized tensors"},
			&cli.BoolFlag{Name: "leave-output", Usage: "keep output.weight unquantized"},
			&cli.BoolFlag{Name: "pure", Usage: "quantize every tensor to TYPE (no per-tensor mixture rules)"},
			forceFlag(),
			&cli.BoolFlag{Name: "no-verify", Usage: "skip the llama.cpp load-and-decode check of OUT"},
			&cli.StringFlag{Name: "imatrix", Usage: "importance matrix `FILE` (GGUF, from mka-gguf imatrix or llama.cpp's imatrix tool)"},
			jsonFlag(),
			jsonFileFlag(),
			modelFlag,
		},
		Action: runQuantize,
	})
}

func runQuantize(c *cli.Context) error {
	args := posArgs(c)
	if len(args) != 3 {
		return usageError(c, "want IN.gguf OUT.gguf TYPE, got %s", argumentCount(len(args)))
	}
	in, out := args[0], args[1]
	ft, err := quant.Parse(args[2])
	if err != nil {
		return usageError(c, "%v", err)
	}
	if ft.NeedsImatrix && c.String("imatrix") == "" {
		return usageError(c, "%s needs an importance matrix: give --imatrix FILE (make one with mka-gguf imatrix)", ft.Name)
	}
	outs := files.New(c.Bool("force"), files.Input{What: "IN", Path: in}, files.Input{What: "--imatrix", Path: c.String("imatrix")})
	outF := outs.File(out, "OUT")
	jsonF := outs.File(c.String("json-file"), typedName(c, "json-file"))
	if err := outs.Begin(); err != nil {
		return err
	}
	defer outs.Cleanup()
	f, err := gguf.Open(in)
	if err != nil {
		return err
	}
	blocks, _ := f.Uint(f.Arch() + ".block_count")
	f.Close()
	var imat map[string][]float32
	if p := c.String("imatrix"); p != "" {
		im, err := quant.LoadImatrix(p)
		if err != nil {
			return err
		}
		imat = im.Values()
	}
	if err := shrink.WriteVerified(c.Context, outF.Tmp, "quantized", int(blocks), !c.Bool("no-verify"), modelParams(), func(tmp string) error {
		return quant.File(in, tmp, ft, quant.Options{Threads: threads(c), AllowRequantize: c.Bool("allow-requantize"),
			LeaveOutput: c.Bool("leave-output"), Pure: c.Bool("pure"), Imatrix: imat})
	}); err != nil {
		return err
	}
	si, err := os.Stat(in)
	if err != nil {
		return err
	}
	so, err := os.Stat(outF.Tmp)
	if err != nil {
		return err
	}
	sum, err := files.SHA256(outF.Tmp)
	if err != nil {
		return err
	}
	res := quantizeResult{Input: in, Output: out, OutputSHA256: sum, Type: ft.Name, BytesBefore: si.Size(), BytesAfter: so.Size()}
	if err := outs.CommitJSON(c.Context, jsonF, res); err != nil {
		return err
	}
	fmt.Fprintf(textOut(c), "wrote %s: %s, %s -> %s\n", out, ft.Name, files.Human(uint64(si.Size())), files.Human(uint64(so.Size())))
	return printJSONIf(c, res)
}

// quantizeResult is what quantize prints with --json.
type quantizeResult struct {
	Input        string `json:"input"`
	Output       string `json:"output"`
	OutputSHA256 string `json:"output_sha256"`
	Type         string `json:"type"`
	BytesBefore  int64  `json:"bytes_before"`
	BytesAfter   int64  `json:"bytes_after"`
}
