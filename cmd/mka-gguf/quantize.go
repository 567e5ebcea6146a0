package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/files"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/report"
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
			&cli.BoolFlag{Name: "allow-requantize", Usage: "quantize an already quantized IN again (the quality suffers more than quantizing its F16 or F32 original)"},
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
	has := shrink.QuantizedAs(f)
	need := shrink.QuantizedSize(f, ft, c.String("imatrix") != "")
	f.Close()
	if has != "" {
		if !c.Bool("allow-requantize") {
			return shrink.RequantizeError(in, has, ft.Name)
		}
		warnf("requantizing %s's %s weights to %s (--allow-requantize): the quality suffers more than quantizing its F16 or F32 original", in, has, ft.Name)
	}
	if err := files.CheckSpace(outF.Tmp, need); err != nil {
		return err
	}
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
	res, err := quantizeReport(in, out, outF.Tmp, ft.Name, c.String("imatrix"))
	if err != nil {
		return err
	}
	if err := outs.CommitJSON(c.Context, jsonF, res); err != nil {
		return err
	}
	fmt.Fprintf(textOut(c), "wrote %s: %s, %s -> %s\n", out, ft.Name, files.Human(uint64(res.BytesBefore)), files.Human(uint64(res.BytesAfter)))
	return printJSONIf(c, res)
}

// quantizeResult is what quantize prints with --json (docs/json.md).
type quantizeResult struct {
	report.Head
	report.In
	report.Out
	Quant       string `json:"quant"`
	Imatrix     string `json:"imatrix,omitempty"`
	BytesBefore int64  `json:"bytes_before"`
	BytesAfter  int64  `json:"bytes_after"`
}

// quantizeReport describes the quantization of in into tmp (OUT's
// temporary file, named out in the report).
func quantizeReport(in, out, tmp, quant, imatrix string) (*quantizeResult, error) {
	si, err := os.Stat(in)
	if err != nil {
		return nil, err
	}
	so, err := os.Stat(tmp)
	if err != nil {
		return nil, err
	}
	inSum, err := files.SHA256(in)
	if err != nil {
		return nil, err
	}
	outSum, err := files.SHA256(tmp)
	if err != nil {
		return nil, err
	}
	return &quantizeResult{Head: head("quantize"), In: report.In{Input: in, InputSHA256: inSum}, Out: report.Out{Output: out, OutputSHA256: outSum},
		Quant: quant, Imatrix: imatrix, BytesBefore: si.Size(), BytesAfter: so.Size()}, nil
}
